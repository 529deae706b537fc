"""Rehearse a Space offline: build the deploy folder, install ONLY its requirements.txt into a fresh virtualenv, start
its app.py with HF_HUB_OFFLINE=1 on loopback and caption chelsea.jpg through gradio_client; prints the figures."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CAT = re.compile(r"\b(cat|cats|kitten|kitty|tabby|mau|feline)\b", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def install(space: Path, venv: Path) -> float:
    """A fresh virtualenv with the Space's requirements.txt from the package index; returns the seconds it took."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                    str(space / "requirements.txt")], check=True)
    return time.perf_counter() - start


def first_caption(space: Path, venv: Path, variables: dict[str, str], timeout: float) -> tuple[str, float, str]:
    """Start the Space's app.py as Spaces would (offline) and caption chelsea.jpg; returns the caption, the seconds
    from start to caption, and the server's log."""
    from gradio_client import Client, handle_file

    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLM_DEMO_", "GRADIO_"))}
    env.update(variables, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(space.parent / "hf-cache"), GRADIO_SERVER_PORT=str(port),
               GRADIO_SERVER_NAME="127.0.0.1", HOME=str(space.parent / "home"), PYTHONDONTWRITEBYTECODE="1")
    log = space.parent / "server.log"
    start = time.perf_counter()
    with log.open("w") as handle:
        server = subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=space, env=env, stdout=handle,
                                  stderr=subprocess.STDOUT)
        try:
            client = None
            while client is None:
                if server.poll() is not None or time.perf_counter() - start > timeout:
                    raise RuntimeError(f"the Space's app did not start:\n{log.read_text()[-3000:]}")
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                except Exception:  # noqa: BLE001 - not listening yet
                    time.sleep(0.5)
            result = client.predict(image=handle_file(str(ROOT / "assets" / "examples" / "chelsea.jpg")),
                                    api_name="/caption")
            seconds = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)
    return result["caption"], seconds, log.read_text()


def main(argv: list[str] | None = None) -> int:
    from vlm_demo.deploy.build import build_space, folder_size
    from vlm_demo.deploy.manifest import load_manifest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", help="build into this folder and keep it (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the app may take to its first caption")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vlm-demo-rehearsal-") as temporary:
        work = Path(args.keep or temporary)
        manifest = load_manifest()
        start = time.perf_counter()
        space = build_space(manifest, work / "space")
        size, largest = folder_size(space)
        print(f"space folder: {size / 2**20:.1f} MiB, largest file {largest.relative_to(space)} "
              f"({largest.stat().st_size / 2**20:.1f} MiB), built in {time.perf_counter() - start:.0f} s", flush=True)
        seconds = install(space, work / "venv")
        print(f"requirements.txt installed into a fresh virtualenv in {seconds:.0f} s", flush=True)
        caption, cold, log = first_caption(space, work / "venv", manifest.variables, args.timeout)
        print(f"cold start to the first caption: {cold:.1f} s")
        print(f"caption of chelsea.jpg: {caption!r}")
        if not CAT.search(caption):
            print(f"FAILED: the caption names no cat\n{log[-3000:]}", file=sys.stderr)
            return 1
    print("rehearsal passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
