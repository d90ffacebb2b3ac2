"""LLM_CONCURRENCY slots: per process, or shared by the processes forked from one `serve` (gunicorn's workers)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import requests

from llm_backend.models.limiter import SharedSlots
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, BackendProcess

FORK = multiprocessing.get_context("fork")


def _hold(slots: SharedSlots, index: int, in_flight: Any, peak: Any, together: Any) -> None:
    slots.attach(index)
    with slots:
        with in_flight.get_lock():
            in_flight.value += 1
            peak.value = max(peak.value, in_flight.value)
        # Three holders meet here before any lets go: passes only if three slots can be held at once
        # (it would time out with fewer), while the peak shows a fourth never got in.
        together.wait(timeout=20)
        with in_flight.get_lock():
            in_flight.value -= 1


def test_forked_processes_share_the_limit() -> None:
    slots = SharedSlots(3)
    in_flight, peak = FORK.Value("i", 0), FORK.Value("i", 0)
    together = FORK.Barrier(3)  # six processes, one hold each: two meetings of three, whichever come first
    workers = [FORK.Process(target=_hold, args=(slots, slots.assign(), in_flight, peak, together)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert peak.value <= 3  # six processes, each wanting a slot at once: never more than the three there are
    assert [slots.held(index) for index in range(1, 7)] == [0] * 6


def _die_holding(slots: SharedSlots, index: int, count: int) -> None:
    slots.attach(index)
    for _ in range(count):
        slots.__enter__()
    os._exit(1)  # as kill -9 or the OOM killer would: no __exit__, no cleanup


def test_a_dead_workers_slots_are_reclaimed() -> None:
    slots = SharedSlots(2)
    index = slots.assign()
    worker = FORK.Process(target=_die_holding, args=(slots, index, 2))
    worker.start()
    worker.join(timeout=30)
    assert slots.held(index) == 2
    assert not slots._free.acquire(block=False)  # all taken by the dead process
    assert slots.reclaim(index) == 2
    with slots, slots:  # both usable again
        assert slots.held() == 2
    assert slots.assign() == index  # its index is free for the worker that replaces it


def test_one_serve_never_sends_more_than_llm_concurrency_calls(start_backend: Callable[..., BackendProcess],
                                                               llm: FakeLLMServer) -> None:
    """Two workers, requests answered in the request (no background jobs), several /predict at once so that both
    workers run tasks: the provider still sees at most LLM_CONCURRENCY calls from the whole `serve`."""
    from concurrent.futures import ThreadPoolExecutor

    # The first answers wait until three calls are in flight: the limit is reached for sure, and never passed.
    llm.add_rule("slow", Reply(json={"sentiment": "Neutral"}, delay=0.1, gate=3))
    backend = start_backend(WORKERS="2", LLM_CONCURRENCY="3", JOBS_ENABLED="false", THREADS="8")

    def predict(batch: int) -> int:
        body = {"label_config": CHOICES_CONFIG,
                "tasks": [{"id": batch * 100 + i, "data": {"text": f"slow {batch} {i}"}} for i in range(6)]}
        with requests.Session() as session:  # a new connection each: gunicorn spreads them over the workers
            results = session.post(f"{backend.url}/predict", json=body, timeout=60).json()["results"]
        return sum("result" in result for result in results)

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(predict, range(6))) == [6] * 6
    assert llm.calls == 36
    assert llm.max_in_flight_seen <= 3  # the bound under test; the gate makes the limit itself reached

