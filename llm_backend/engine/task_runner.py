"""Run a request's tasks concurrently under one process-wide limit, and return by a deadline.

The executor is shared by every request in the process, so two users pressing "Retrieve
predictions" at once share LLM_CONCURRENCY rather than doubling the load on the provider.
Tasks still running at the deadline are reported as timed out (no `result`, so Label Studio asks
again) but keep running: their answers land in the cache and the next request gets them free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, as_completed, wait

from .outcome import BatchSummary, TaskOutcome
from .pools import LazyPool
from .predictor import PredictionJob, TaskPredictor

log = logging.getLogger(__name__)


class TaskRunner:
    def __init__(self, predictor: TaskPredictor, concurrency: int) -> None:
        self.predictor = predictor
        self.concurrency = concurrency
        self._pool = LazyPool(concurrency, "llm-task")

    def run(self, jobs: list[PredictionJob], deadline: float) -> tuple[list[TaskOutcome], BatchSummary]:
        """`outcomes`, summed up and logged (Train's evaluation, benchmarks)."""
        started = time.monotonic()
        outcomes = self.outcomes(jobs, deadline)
        summary = BatchSummary.of(outcomes, time.monotonic() - started)
        log.info(summary.log_line())
        return outcomes, summary

    def outcomes(self, jobs: list[PredictionJob], deadline: float) -> list[TaskOutcome]:
        """Each task's outcome, in order, within `deadline` seconds; those still running then are "timeout"."""
        pool = self._pool.get()
        futures: list[Future[TaskOutcome]] = [pool.submit(self.predictor.predict, job) for job in jobs]
        wait(futures, timeout=max(0.0, deadline))
        outcomes = []
        for job, future in zip(jobs, futures, strict=True):
            if future.done():
                outcomes.append(future.result())
            else:
                outcomes.append(TaskOutcome(
                    "timeout",
                    error="not finished before the deadline; it keeps running and the next request gets it",
                    project=job.project,
                ))
                self.predictor.metrics.tasks.labels("timeout").inc()
        return outcomes

    def as_completed(self, jobs: list[PredictionJob]) -> Iterator[tuple[int, TaskOutcome]]:
        """(index, outcome) as each task finishes: for progress bars in long offline runs."""
        pool = self._pool.get()
        futures = {pool.submit(self.predictor.predict, job): index for index, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # Interrupted (Ctrl-C): drop what has not started; what has finished is in the cache.
            for future in futures:
                future.cancel()

    def shutdown(self) -> None:
        self._pool.shutdown()
