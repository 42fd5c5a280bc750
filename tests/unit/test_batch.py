"""A batch's outcomes: concurrency bounded, order kept, and what a retry carries forward."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pixcrawler.builder.batch import carry, restore, run_batch
from pixcrawler.celery_core.errors import InvalidPayload

URLS = [f"http://u{i}:pw-{i}@example.org/{i}.png" for i in range(6)]


def test_at_most_the_bound_run_at_once_and_every_position_is_answered() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    both_in = threading.Barrier(2, timeout=10)

    def fetch(url: str) -> dict[str, Any]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        both_in.wait()  # proves two really overlap; a third would never be let in
        with lock:
            running -= 1
        return {"url": url, "status": "ok", "path": url[-5:]}

    out = run_batch(URLS, [0, 1, 2, 3], fetch, concurrency=2)
    assert sorted(out) == [0, 1, 2, 3]
    assert out[3]["url"] == URLS[3]
    assert peak == 2


def test_one_url_runs_in_the_calling_thread() -> None:
    seen: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        return {}

    run_batch(URLS, [4], fetch, 8)
    assert seen == [threading.current_thread().name]


def test_a_retry_carries_final_outcomes_without_urls() -> None:
    outcomes: dict[int, dict[str, Any]] = {
        0: {"url": "x", "status": "ok", "path": "/s/ab/ab.png", "sha256": "ab"},
        1: {"url": "x", "status": "error", "error": "http_error", "retryable": False},
        2: {"url": "x", "status": "error", "error": "http_error", "retryable": True},
    }
    carried = carry(outcomes)
    assert set(carried) == {"0", "1"}
    assert all("url" not in o for o in carried.values())
    back = restore(URLS, carried)
    assert back[0]["url"] == "http://example.org/0.png"  # masked, from the arguments
    assert back[0]["path"] == "/s/ab/ab.png"
    assert restore(URLS, None) == {}


@pytest.mark.parametrize(
    "carried",
    [
        ["not", "a", "dict"],
        {"9": {"status": "ok", "path": "p"}},
        {"-1": {"status": "ok", "path": "p"}},
        {"x": {"status": "ok", "path": "p"}},
        {"0": {"status": "ok"}},
        {"0": {"status": "error", "retryable": True}},
        {"0": "ok"},
    ],
)
def test_forged_or_broken_carried_outcomes_are_refused(carried: Any) -> None:
    with pytest.raises(InvalidPayload):
        restore(URLS, carried)
