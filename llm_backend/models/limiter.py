"""At most LLM_CONCURRENCY model calls in flight per `serve` (all its worker processes) or per `worker`.

The batch runner's pool bounds tasks, one call each at a time. A long text's parts are asked from
a pool of their own (a task that waited for its parts on the task pool could fill it with waiters
and deadlock), so the bound on calls lives here, around the client, where every call passes:
task calls, part calls, repairs and reduce calls share the same slots. A call holds its slot
through its retries, as a task thread did before.

With several gunicorn workers the slots are shared between them (`SharedSlots`): a process semaphore made
before the fork, so one /predict may use every slot whichever worker answers it, and the provider never sees
more than LLM_CONCURRENCY calls from one `serve`.
"""

from __future__ import annotations

import multiprocessing
import threading
from types import TracebackType
from typing import Protocol

from .client import Completion, CompletionClient, LLMRequest


class Slots(Protocol):
    def __enter__(self) -> object: ...
    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class SharedSlots:
    """`limit` slots shared by the processes forked from the one that built this (gunicorn's workers).

    A worker killed while it holds slots (kill -9, out of memory, gunicorn's timeout) cannot give them back, so
    each worker counts what it holds in shared memory under an index the master gave it (`assign` before the
    fork, `attach` after it), and the master returns a dead worker's slots (`reclaim`, from gunicorn's
    child_exit hook). Index 0 is any process that was not given one (a test, `llm-backend worker`)."""

    MAX_PROCESSES = 128

    def __init__(self, limit: int) -> None:
        context = multiprocessing.get_context("fork")
        self.limit = limit
        self._free = context.BoundedSemaphore(limit)
        self._held = context.Array("i", self.MAX_PROCESSES, lock=False)  # each entry written by one process only
        self._index = 0
        self._lock = threading.Lock()  # this process's threads, around its own entry
        self._assigned: set[int] = set()  # (in the master) indexes of live workers

    def assign(self) -> int:
        """(Master, before a fork.) A free index for the new worker."""
        index = next(i for i in range(1, self.MAX_PROCESSES) if i not in self._assigned)
        self._assigned.add(index)
        return index

    def attach(self, index: int) -> None:
        """(Worker, after the fork.) Count this process's slots under `index`."""
        self._index = index

    def reclaim(self, index: int) -> int:
        """(Master, once the worker has exited.) Free the slots it still held; how many."""
        held = max(0, self._held[index])
        self._held[index] = 0
        for _ in range(held):
            self._free.release()
        self._assigned.discard(index)
        return held

    def held(self, index: int | None = None) -> int:
        return int(self._held[self._index if index is None else index])

    def __enter__(self) -> SharedSlots:
        self._free.acquire()
        with self._lock:
            self._held[self._index] += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            self._held[self._index] -= 1
        self._free.release()


class LimitedClient:
    def __init__(self, inner: CompletionClient, limit: int, *, shared: bool = False) -> None:
        self.inner = inner
        self.limit = limit
        self.slots: Slots = SharedSlots(limit) if shared else threading.BoundedSemaphore(limit)

    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        with self.slots:
            return self.inner.complete(request, deadline)
