"""App benchmarks: cold start to first caption, switching to a loaded combination, peak resident memory."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vlm_demo.combos import COMBOS, DEFAULT_COMBO  # noqa: E402

PHOTO = ROOT / "assets" / "examples" / "chelsea.jpg"
GOALS = {"cold": 30.0, "switch": 1.0, "memory": 1.5}  # seconds, seconds, GB
DEFAULT = (COMBOS[DEFAULT_COMBO].encoder, COMBOS[DEFAULT_COMBO].adapter, COMBOS[DEFAULT_COMBO].llm)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_gb(pid: int) -> float:
    """VmHWM (peak resident set size) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc status")


def stop(server: subprocess.Popen) -> None:
    """Terminate the app server, killing it if it has not ended after 20 s."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_for_client(url: str, server: subprocess.Popen, deadline: float):
    from gradio_client import Client

    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with status {server.returncode}")
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    raise TimeoutError("the app did not start in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fresh-cache", action="store_true",
                        help="use an empty VLM_DEMO_CACHE, so the first-ever GGUF conversion is included")
    parser.add_argument("--switches", type=int, default=5)
    args = parser.parse_args()
    from gradio_client import handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    scratch = tempfile.TemporaryDirectory() if args.fresh_cache else None
    if scratch is not None:
        env["VLM_DEMO_CACHE"] = scratch.name
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        client = wait_for_client(f"http://127.0.0.1:{port}/", server, start + 300)
        listening = time.perf_counter() - start
        image = handle_file(str(PHOTO))
        client.predict(image=image, max_new_tokens=8, api_name="/caption")
        cold = time.perf_counter() - start

        client.predict(*DEFAULT, api_name="/load_combination")
        client.predict(DEFAULT[0], "linear", DEFAULT[2], api_name="/load_combination")  # load a second one
        switches = []
        for index in range(args.switches):
            adapter = "mlp" if index % 2 == 0 else "linear"
            begin = time.perf_counter()
            client.predict(DEFAULT[0], adapter, DEFAULT[2], api_name="/load_combination")
            switches.append(time.perf_counter() - begin)

        client.predict(image, {"text": "What is in the picture?", "files": []}, [], *DEFAULT, 24, 0.0, 0.9, 0,
                       api_name="/chat")
        client.predict(image, "the vocabulary", *DEFAULT, 16, 0.0, 0.9, 0, api_name="/alignment")
        memory = peak_rss_gb(server.pid)
    finally:
        stop(server)
        if scratch is not None:
            scratch.cleanup()

    switch = sorted(switches)[len(switches) // 2]
    cache = "empty model cache (includes the GGUF conversion)" if args.fresh_cache else "warm ~/.cache/vlm_demo"
    print(f"app startup benchmark ({os.cpu_count()} cores, {cache})")
    print(f"  listening after                        {listening:6.2f} s")
    print(f"  cold start to first caption            {cold:6.2f} s   (goal < {GOALS['cold']:.0f} s)")
    print(f"  switch to a loaded combination, median {switch:6.3f} s   (goal < {GOALS['switch']:.0f} s; "
          f"max {max(switches):.3f} s over {len(switches)})")
    print(f"  peak resident memory, default combo    {memory:6.2f} GB  (goal < {GOALS['memory']} GB; "
          "after caption, chat and alignment)")


if __name__ == "__main__":
    main()
