"""LLM_CONCURRENCY slots: per process, or shared by the processes forked from one `serve` (gunicorn's workers; a
whole `serve` held to its limit is in test_serve.py)."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from llm_backend.models.limiter import SharedSlots

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
