"""Soak benchmark (loopback only, bounded) against `python app.py`: first each attack of bench/attacks.py alone (its
memory cost) and a flood's delay to another client's caption; then many clients mixing captions, chats that
disconnect mid-stream, bad uploads, decompression bombs and the attacks; prints requests served, errors, p95
latency and memory."""

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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_startup import DEFAULT, free_port, stop, wait_for_client  # noqa: E402
from bench.attacks import ATTACKS, Attacker  # noqa: E402

PHOTO = ROOT / "assets" / "examples" / "chelsea.jpg"
GOALS = {"peak_gb": 2.0, "settle": 0.10, "attack_mb": 400}  # peak memory; settling; one attack's cost at most
MIX = {"caption": 5, "chat_then_leave": 3, "bad_upload": 1, "bomb": 1, "attack": 2}  # weights of request kinds
REQUEST_TIMEOUT = 180.0


def address(number: int) -> str:
    """Visitor `number`'s own address, as the trusted proxy in front of the app reports it."""
    return f"10.{number // 250 + 1}.{number % 250}.1"


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
        self.client = Client(url, verbose=False, headers={"X-Forwarded-For": address(number)})
        self.attacks = 0
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

    def upload_refused(self, path: Path) -> None:
        """A file that is not an image is refused by the upload route itself."""
        status = Attacker(self.url, address(self.number)).upload_status([(path.name, path.read_bytes())])
        if status != 415:
            raise RuntimeError(f"{path.name} was answered {status} at upload, not refused")

    def chat_then_leave(self, seed: int) -> None:
        """Upload, join the chat queue like a browser, read two streamed pieces, then drop the connection."""
        import httpx

        session = f"soak-{self.number}-{seed}"
        with httpx.Client(base_url=self.url.rstrip("/"), timeout=REQUEST_TIMEOUT,
                          headers={"X-Forwarded-For": address(self.number)}) as http:
            with PHOTO.open("rb") as handle:
                uploaded = http.post("/gradio_api/upload", files={"files": ("chelsea.jpg", handle)}).json()[0]
            image = {"path": uploaded, "orig_name": "chelsea.jpg", "meta": {"_type": "gradio.FileData"}}
            data = [image, {"text": "What is in the picture? Answer at length.", "files": []}, [], *DEFAULT, 200, 0.0,
                    0.9, seed]
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


def attacks_alone(url: str, pid: int) -> list[str]:
    """Each attack once on the idle app: its peak memory above the resident memory before it (VmHWM reset through
    /proc/<pid>/clear_refs), and whether it was refused as it should be."""
    lines = []
    for number, (name, run) in enumerate(ATTACKS.items()):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = rss_mb(pid)
        try:
            run(Attacker(url, address(1000 + number)))
            outcome = "refused"
        except Exception as error:  # noqa: BLE001 - reported in the table
            outcome = f"NOT REFUSED: {str(error).splitlines()[0][:120]}"
        time.sleep(1)
        lines.append(f"    {name:<22}{rss_mb(pid, 'VmHWM') - before:>7.0f} MB  {outcome}")
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = rss_mb(pid)
    tokens = longest_chat(Attacker(url, address(1999)))
    lines.append(f"    {'longest allowed chat':<22}{rss_mb(pid, 'VmHWM') - before:>7.0f} MB  answered ({tokens})")
    return lines


def longest_chat(visitor: Attacker) -> str:
    """A valid conversation at the caps: the most turns, and as many prompt tokens as allowed (text that costs a
    token every few characters), within the character cap, one image."""
    from vlm_demo.llms import load_llm
    from vlm_demo.pipeline import MAX_CONVERSATION_CHARS, MAX_PROMPT_TOKENS, MAX_TURNS, build_prompt

    llm = load_llm(DEFAULT[2])

    def history(repeats: int) -> list[tuple[str, str]]:
        return [("3.7 9,1 " * repeats, "ok")] * MAX_TURNS

    def tokens(repeats: int) -> int:
        text = build_prompt(llm, "And now?", history(repeats), [1] + [0] * MAX_TURNS)
        return len(llm.tokenizer(text, add_special_tokens=False)["input_ids"])

    repeats = max(r for r in range(1, 200) if tokens(r) <= MAX_PROMPT_TOKENS
                  and sum(len(u) + len(a) for u, a in history(r)) < MAX_CONVERSATION_CHARS)
    messages = [{"role": role, "content": [{"type": "text", "text": text}]} for user, answer in history(repeats)
                for role, text in (("user", user), ("assistant", answer))]
    messages[0]["content"].insert(0, {"type": "file", "file": visitor.upload("chelsea.jpg", PHOTO.read_bytes())})
    answer = visitor.call("chat", [None, {"text": "And now?", "files": []}, messages, *DEFAULT, 8, 0.0, 0.9, 0])
    if "event: complete" not in answer:
        raise RuntimeError(f"the longest allowed chat was not answered: {answer[-300:]}")
    return f"{MAX_TURNS} turns, {tokens(repeats):,} prompt tokens"


def flood_delay(url: str) -> tuple[float, float]:
    """A victim's caption latency on the idle app (median of 3), and right after another client posted 72 captions
    it never reads."""
    victim = Visitor(url, 2000)
    idle = sorted(timed(victim.caption, seed) for seed in range(3))[1]
    flooder = Attacker(url, address(2001))
    photo = flooder.upload("chelsea.jpg", PHOTO.read_bytes())
    for seed in range(72):
        flooder.post("caption", [photo, "Describe the image at length.", *DEFAULT, 200, 0.0, 0.9, seed])
    return idle, timed(victim.caption, 99)


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


@dataclass
class Traffic:
    """What the mixed phase served: requests by kind, failures, caption latencies."""

    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0


def one_request(client: Visitor, kind: str, rng: random.Random, files: dict[str, Path]) -> None:
    """One request of `kind` from a visitor; attacks come from an address of their own, as a botnet's would."""
    if kind == "caption":
        client.caption(rng.randrange(1000))
    elif kind == "chat_then_leave":
        client.chat_then_leave(rng.randrange(1000))
    elif kind == "attack":
        client.attacks += 1
        rng.choice(list(ATTACKS.values()))(Attacker(client.url, address(1000 * client.attacks + client.number)))
    elif kind == "bad_upload" and rng.random() < 0.5:
        client.refused(files["truncated"], "This upload cannot be used")
    elif kind == "bad_upload":
        client.upload_refused(files["text"])
    else:
        client.refused(files["bomb"], "too many pixels")


def mixed_traffic(url: str, clients: int, seconds: float, files: dict[str, Path]) -> Traffic:
    """`clients` visitors sending MIX's kinds of request one after another for `seconds`."""
    traffic, lock, stop_at = Traffic(), threading.Lock(), time.perf_counter() + seconds

    def visitor(number: int) -> None:
        rng, client = random.Random(number), Visitor(url, number)
        kinds, weights = zip(*MIX.items())
        while time.perf_counter() < stop_at:
            kind, begin = rng.choices(kinds, weights)[0], time.perf_counter()
            try:
                one_request(client, kind, rng, files)
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    traffic.failures.append(f"{kind}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
                continue
            with lock:
                traffic.outcomes[kind] += 1
                if kind == "caption":
                    traffic.latencies.append(time.perf_counter() - begin)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(visitor, range(clients), timeout=seconds + REQUEST_TIMEOUT + 60))
    traffic.elapsed = time.perf_counter() - started
    return traffic


def print_traffic(traffic: Traffic, clients: int, memory: dict[str, float], settle: float) -> None:
    latencies = sorted(traffic.latencies)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    median = latencies[len(latencies) // 2] if latencies else float("nan")
    drift = (memory["end"] - memory["start"]) / memory["start"]
    print(f"soak benchmark: {clients} clients for {traffic.elapsed:.0f} s on loopback ({os.cpu_count()} cores)")
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(traffic.outcomes.items()))
    print(f"  requests served            {sum(traffic.outcomes.values())}  ({kinds})")
    print(f"  failed requests            {len(traffic.failures)}")
    for failure in traffic.failures[:10]:
        print(f"    {failure}")
    print(f"  caption latency p95        {p95:.1f} s  (median {median:.1f} s)")
    print(f"  server memory              start {memory['start']:.0f} MB, peak {memory['peak']:.0f} MB (goal < "
          f"{GOALS['peak_gb'] * 1024:.0f} MB), after {settle:.0f} s settle {memory['end']:.0f} MB "
          f"({drift:+.1%}, goal within {GOALS['settle']:.0%})")
    print(f"  sampled RSS max            {memory['sampled']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long clients keep sending requests")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after the run before measuring")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "VLM_DEMO_TRUST_PROXY": "1"}
    scratch = tempfile.TemporaryDirectory()
    files = bad_files(Path(scratch.name))
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    samples: list[float] = []
    running = threading.Event()
    try:
        wait_for_client(url, server, time.perf_counter() + 300)
        warm = Visitor(url, -1)
        warm.caption(0)
        warm.chat_then_leave(0)
        alone = attacks_alone(url, server.pid)
        idle_s, flooded_s = flood_delay(url)
        time.sleep(15)  # the flood's two accepted captions are cancelled unread
        memory = {"start": rss_mb(server.pid)}
        running.set()

        def sample() -> None:
            while running.is_set():
                samples.append(rss_mb(server.pid))
                time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()
        traffic = mixed_traffic(url, args.clients, args.seconds, files)
        time.sleep(args.settle)
        running.clear()
        memory.update(end=rss_mb(server.pid), peak=rss_mb(server.pid, "VmHWM"), sampled=max(samples, default=0))
    finally:
        stop(server)
        scratch.cleanup()
    print(f"attacks alone on the idle app (peak memory above resident; goal < {GOALS['attack_mb']} MB):")
    print("\n".join(alone))
    print(f"flood: another client's caption took {idle_s:.1f} s idle and {flooded_s:.1f} s right after one client "
          "posted 72 captions it never reads")
    print_traffic(traffic, args.clients, memory, args.settle)


if __name__ == "__main__":
    main()
