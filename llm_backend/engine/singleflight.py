"""Collapse concurrent identical work into one call (two identical tasks -> one paid request)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[T]] = {}

    def do(self, key: str, work: Callable[[], T]) -> tuple[T, bool]:
        """Run `work` unless the same key is already running; return (result, shared)."""
        with self._lock:
            future = self._inflight.get(key)
            leader = future is None
            if leader:
                future = Future()
                self._inflight[key] = future
        assert future is not None
        if not leader:
            return future.result(), True
        try:
            result = work()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            with self._lock:
                self._inflight.pop(key, None)
