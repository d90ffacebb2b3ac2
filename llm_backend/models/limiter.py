"""At most LLM_CONCURRENCY model calls in flight per process, whoever makes them.

The batch runner's pool bounds tasks, one call each at a time. A long text's parts are asked from
a pool of their own (a task that waited for its parts on the task pool could fill it with waiters
and deadlock), so the bound on calls lives here, around the client, where every call passes:
task calls, part calls, repairs and reduce calls share the same slots. A call holds its slot
through its retries, as a task thread did before.
"""

from __future__ import annotations

import threading

from .client import Completion, CompletionClient, LLMRequest


class LimitedClient:
    def __init__(self, inner: CompletionClient, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        with self._slots:
            return self.inner.complete(request, deadline)
