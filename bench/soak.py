"""Soak benchmark (loopback only, bounded): many clients mixing captions, chats that disconnect mid-stream, bad
uploads and decompression bombs against `python app.py`; prints requests served, errors, p95 latency and memory."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_startup import DEFAULT, free_port, stop, wait_for_client  # noqa: E402

PHOTO = ROOT / "assets" / "examples" / "chelsea.jpg"
GOALS = {"peak_gb": 2.0, "settle": 0.10}  # peak resident memory; memory after the run within 10% of the start
MIX = {"caption": 5, "chat_then_leave": 3, "bad_upload": 1, "bomb": 1}  # relative weights of the request kinds
REQUEST_TIMEOUT = 180.0


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def bad_files(folder: Path) -> dict[str, Path]:
    """A truncated JPEG, a text file named .png, and the issue's bomb: 7999 x 7999 at 16 bits in 124 KB."""
    from PIL import Image

    truncated, text, bomb = folder / "truncated.jpg", folder / "text.png", folder / "bomb.png"
    truncated.write_bytes(PHOTO.read_bytes()[: PHOTO.stat().st_size // 3])
    text.write_text("not an image at all")
    Image.new("I;16", (7999, 7999)).save(bomb)
    return {"truncated": truncated, "text": text, "bomb": bomb}


class Visitor:
    """One client: a gradio_client for captions and uploads, raw HTTP for a browser-like chat that leaves."""

    def __init__(self, url: str, number: int) -> None:
        from gradio_client import Client

        self.url, self.number = url, number
        self.client = Client(url, verbose=False)
        chat = next(d for d in self.client.config["dependencies"] if d.get("api_name") == "chat")
        self.chat_index = chat["id"]

    def caption(self, seed: int) -> None:
        from gradio_client import handle_file

        result = self.client.predict(image=handle_file(str(PHOTO)), prompt=f"Visitor {self.number}.",
                                     max_new_tokens=8, seed=seed, api_name="/caption")
        if not result["caption"].strip():
            raise RuntimeError("empty caption")

    def refused(self, path: Path, reason: str) -> None:
        """A bad file must come back as a clear error, never a caption or a crash."""
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        try:
            self.client.predict(image=handle_file(str(path)), max_new_tokens=4, api_name="/caption")
        except AppError as error:
            if reason not in str(error):
                raise RuntimeError(f"unexpected refusal: {error}") from None
            return
        raise RuntimeError(f"{path.name} was captioned instead of refused")

    def chat_then_leave(self, seed: int) -> None:
        """Upload, join the chat queue like a browser, read two streamed pieces, then drop the connection."""
        import httpx

        session = f"soak-{self.number}-{seed}"
        with httpx.Client(base_url=self.url.rstrip("/"), timeout=REQUEST_TIMEOUT) as http:
            with PHOTO.open("rb") as handle:
                uploaded = http.post("/gradio_api/upload", files={"files": ("chelsea.jpg", handle)}).json()[0]
            image = {"path": uploaded, "orig_name": "chelsea.jpg", "meta": {"_type": "gradio.FileData"}}
            data = [image, "What is in the picture? Answer at length.", [], *DEFAULT, 200, 0.0, 0.9, seed]
            joined = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": self.chat_index,
                                                               "session_hash": session, "trigger_id": None,
                                                               "event_data": None})
            joined.raise_for_status()
            pieces = 0
            with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
                for line in events.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_generating":
                        pieces += 1
                        if pieces == 2:
                            return  # leaving mid-answer
                    elif message.get("msg") == "process_completed":
                        if not message.get("success"):
                            raise RuntimeError(f"chat failed: {str(message.get('output'))[:200]}")
                        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long clients keep sending requests")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after the run before measuring")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    scratch = tempfile.TemporaryDirectory()
    files = bad_files(Path(scratch.name))
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    latencies: list[float] = []
    samples: list[float] = []
    lock = threading.Lock()
    try:
        wait_for_client(url, server, time.perf_counter() + 300)
        warm = Visitor(url, -1)
        warm.caption(0)
        warm.chat_then_leave(0)
        time.sleep(2)
        start_mb = rss_mb(server.pid)
        stop_at = time.perf_counter() + args.seconds
        running = threading.Event()
        running.set()

        def sample() -> None:
            while running.is_set():
                samples.append(rss_mb(server.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def visitor(number: int) -> None:
            rng = random.Random(number)
            client = Visitor(url, number)
            kinds, weights = zip(*MIX.items())
            while time.perf_counter() < stop_at:
                kind = rng.choices(kinds, weights)[0]
                begin = time.perf_counter()
                try:
                    if kind == "caption":
                        client.caption(rng.randrange(1000))
                    elif kind == "chat_then_leave":
                        client.chat_then_leave(rng.randrange(1000))
                    elif kind == "bad_upload":
                        name = rng.choice(["truncated", "text"])
                        client.refused(files[name], "This upload cannot be used")
                    else:
                        client.refused(files["bomb"], "too many pixels")
                except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        failures.append(f"{kind}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
                    continue
                with lock:
                    outcomes[kind] += 1
                    if kind == "caption":
                        latencies.append(time.perf_counter() - begin)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(visitor, range(args.clients), timeout=args.seconds + REQUEST_TIMEOUT + 60))
        elapsed = time.perf_counter() - started
        time.sleep(args.settle)
        running.clear()
        end_mb, peak_mb = rss_mb(server.pid), rss_mb(server.pid, "VmHWM")
    finally:
        stop(server)
        scratch.cleanup()

    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    drift = (end_mb - start_mb) / start_mb
    print(f"soak benchmark: {args.clients} clients for {elapsed:.0f} s on loopback ({os.cpu_count()} cores)")
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(outcomes.items()))
    print(f"  requests served            {sum(outcomes.values())}  ({kinds})")
    print(f"  failed requests            {len(failures)}")
    for failure in failures[:10]:
        print(f"    {failure}")
    median = latencies[len(latencies) // 2] if latencies else float("nan")
    print(f"  caption latency p95        {p95:.1f} s  (median {median:.1f} s)")
    print(f"  server memory              start {start_mb:.0f} MB, peak {peak_mb:.0f} MB (goal < "
          f"{GOALS['peak_gb'] * 1024:.0f} MB), after {args.settle:.0f} s settle {end_mb:.0f} MB "
          f"({drift:+.1%}, goal within {GOALS['settle']:.0%})")
    print(f"  sampled RSS max            {max(samples, default=0):.0f} MB")


if __name__ == "__main__":
    main()
