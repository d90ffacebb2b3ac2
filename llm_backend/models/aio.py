"""One event loop per process, in a thread of its own, that runs LiteLLM's async calls for every thread that asks.

The engine is threads (request threads, the batch pool, job consumers); the model calls they make go through
`litellm.acompletion` on this loop and its aiohttp transport instead of `litellm.completion`. LiteLLM's sync
path shares one httpx connection pool between all threads: with 64 of them a worker spent a third of its samples
waiting on that pool's lock, and a socket could be read after another thread had closed it (`[Errno 9] Bad file
descriptor`, reported to LiteLLM users as "Connection error", then paid again as a retry). On the 2-core
development machine, 64 calling threads against a 200 ms test server cost 8.4 ms of CPU per call that way and
7.3 ms through the loop (interleaved runs); LiteLLM's own floor there is about 6 ms a call.

The loop is built on first use in each process (never before gunicorn forks) and lives as long as the process;
uvloop's where it is installed. The fast path's aiohttp session lives on it too (`sessions`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "llm-aio") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = new_event_loop()
                threading.Thread(target=loop.run_forever, name=self.name, daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and wait for it in the calling thread; `timeout` is a safety net over the
        call's own timeout: past it the call is cancelled and TimeoutError raised."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the model call did not return within {timeout:.0f} s") from None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (not on Windows): the same calls cost less of its CPU around each one
    (bench/CPU.md); asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# Shared by every client of the process: one loop, one aiohttp session on it (the fast path's).
LOOP = LoopThread()


class Sessions:
    """One aiohttp session per event loop (there is one loop per process, LOOP): keep-alive, at most
    `limit` connections (LLM_CONCURRENCY bounds the calls in flight well below it), closed when the process exits."""

    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self._by_loop: dict[asyncio.AbstractEventLoop, Any] = {}
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The running loop's session (called on that loop)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=60)
            session = aiohttp.ClientSession(connector=connector)  # the proxy, if any, is each route's (Route._proxy)
            with self._lock:
                if not self._by_loop:
                    atexit.register(self.close)
                self._by_loop[loop] = session
        return session

    def close(self) -> None:
        """Close every session on its own loop: left to the garbage collector, each logs an error at exit."""
        with self._lock:
            owned, self._by_loop = list(self._by_loop.items()), {}
        for loop, session in owned:
            if loop.is_running() and not session.closed:
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(session.close(), loop).result(2)


sessions = Sessions()
