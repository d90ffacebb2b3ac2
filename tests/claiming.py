"""A process that claims tasks from a job ledger in rounds, for the contention test in `tests/test_jobs.py`.

Spawned (not forked) by the test, so it imports only the ledger. Every thread of every process waits at one
barrier before each round, then claims once: all of them reach for the queue at the same moment, round after
round, without any timing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from llm_backend.engine.jobstore import JobStore, RedisJobStore, SQLiteJobStore


def open_store(where: str) -> JobStore:
    return RedisJobStore(where) if where.startswith("redis://") else SQLiteJobStore(Path(where))


def claim_in_rounds(where: str, name: str, threads: int, rounds: int, barrier: Any, results: Any) -> None:
    """Claim once per round in each of `threads` threads; put (consumer, job, task) of every claim on `results`."""
    store = open_store(where)
    claimed: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        consumer = f"{name}-{index}"
        for _ in range(rounds):
            barrier.wait(timeout=60)
            claim = store.claim(consumer)
            if claim is not None:
                with lock:
                    claimed.append((consumer, claim.job_id, claim.record.task_id))

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(claimed)
    store.disconnect()
