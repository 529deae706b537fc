"""A bounded load test on loopback: 8 concurrent clients x 3 caption requests each, all answered, no errors."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from app_helpers import PHOTO, serve_app

pytestmark = pytest.mark.slow
CLIENTS, REQUESTS, DEADLINE_S = 8, 3, 240


def test_eight_clients_three_requests_each(monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setenv("VLM_DEMO_TRUST_PROXY", "1")  # each client is its own visitor, as behind a Space's proxy

    with serve_app() as url:
        Client(url, verbose=False).predict(image=handle_file(str(PHOTO)), max_new_tokens=2, api_name="/caption")

        def user(number: int) -> list[tuple[float, str]]:
            client = Client(url, verbose=False, headers={"X-Forwarded-For": f"192.0.2.{number + 1}"})
            answers = []
            for request in range(REQUESTS):
                start = time.perf_counter()
                result = client.predict(image=handle_file(str(PHOTO)), prompt=f"User {number}, question {request}.",
                                        max_new_tokens=4, seed=number, api_name="/caption")
                answers.append((time.perf_counter() - start, result["caption"]))
            return answers

        start = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(user, number) for number in range(CLIENTS)]
            results = [future.result(timeout=DEADLINE_S) for future in futures]
        elapsed = time.perf_counter() - start
    latencies = [seconds for answers in results for seconds, _ in answers]
    assert len(latencies) == CLIENTS * REQUESTS
    assert all(caption.strip() for answers in results for _, caption in answers)
    assert elapsed < DEADLINE_S
    print(f"\n{len(latencies)} requests in {elapsed:.1f} s; latency max {max(latencies):.1f} s, "
          f"median {sorted(latencies)[len(latencies) // 2]:.1f} s")
