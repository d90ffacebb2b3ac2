"""The threads that work the job queue in one process: workers, a heartbeat with recovery, and the write-back to
Label Studio.

`serve` starts them in each gunicorn worker after the fork (`post_worker_init`), `llm-backend
worker` in its own process, `label-project --wait` for as long as its job runs, and an app built
in-process (`create_app`) when it is built; never a request.
`LLM_CONCURRENCY` worker threads per process, like the request path: the provider sees at most
processes x LLM_CONCURRENCY calls.

The ledger is the queue (`engine/jobstore.py`): a worker claims a queued task, which moves it to `running`
under this process's consumer id. That claim is a lease held by the process's heartbeat (every `heartbeat`
seconds): a task `running` under a consumer whose heartbeat is older than `lease` seconds (killed, OOM, power)
is moved back to `queued` by whichever process's recovery sees it first, and claimed again; its answer, if
the model had given it, is in the response cache. A slow consumer whose task was taken from it cannot finish
it: its last move is a compare-and-set on its own ownership.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from .jobs import Jobs, current_consumer
from .jobstore import JobStore
from .writeback import WriteBack

log = logging.getLogger(__name__)

# An idle process polls SQLite (which cannot notify) after 20 ms, then ever longer pauses up to 100 ms: another
# process's submission waits at most that long for this one's workers; 10 short reads a second when idle.
IDLE_POLL = (0.02, 0.1)
PRUNE_EVERY = 600.0  # seconds between two prunings of the ledger by one process

_started: weakref.WeakSet[Consumers] = weakref.WeakSet()  # for stop_all: tests build many apps in one process


def stop_all(timeout: float | None = None) -> None:
    """Stop the consumers of every app of this process (a test's teardown; `serve` stops its own at exit)."""
    for consumers in list(_started):
        consumers.stop(timeout)


class Consumers:
    def __init__(self, jobs: Jobs, store: JobStore, threads: int, *,
                 writeback: Callable[[Consumers], WriteBack] | None = None,
                 heartbeat: float = 2.0, lease: float = 10.0, retention: float | None = None) -> None:
        self.jobs = jobs
        self.store = store
        self.threads = threads
        self._writeback_factory = writeback
        self.heartbeat_every = heartbeat
        self.lease = lease
        self.retention = retention  # seconds a finished task record stays in the ledger; None: forever
        self._lock = threading.Lock()
        self._pid = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poller = threading.Lock()  # held by the one idle worker that polls the queue

    @property
    def running(self) -> bool:
        with self._lock:
            return self._pid == os.getpid() and any(thread.is_alive() for thread in self._threads)

    def start(self, *, threads: int | None = None) -> bool:
        """Start this process's threads (once per process); False when they already run. `threads`: the worker
        threads of this process (default: `self.threads`), e.g. a gunicorn worker's share of LLM_CONCURRENCY."""
        with self._lock:
            if self._pid == os.getpid() and any(thread.is_alive() for thread in self._threads):
                return False
            if threads is not None:
                self.threads = threads
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._threads = [threading.Thread(target=self._work, name=f"llm-job-{i + 1}", daemon=True)
                             for i in range(self.threads)]
            self._threads.append(threading.Thread(target=self._maintain, name="llm-job-heartbeat", daemon=True))
            if self._writeback_factory is not None:
                writeback = self._writeback_factory(self)
                self._threads.append(threading.Thread(target=self._write, args=(writeback,), name="llm-writeback",
                                                      daemon=True))
            # This process's heartbeat is in the store before any worker can claim a task: another process's recovery
            # would otherwise see a task running under an owner with no heartbeat yet, count that owner as dead and
            # queue the task again, and a fresh worker still importing LiteLLM would meet its duplicate at the model
            # (an extra paid call; seen as 9 calls for 8 tasks when two `serve` share one CACHE_DIR on a busy host).
            self._beat(current_consumer())
            for thread in self._threads:
                thread.start()
            _started.add(self)
        log.info("job consumers started: %d threads, consumer %s, queue %s", self.threads, current_consumer(),
                 type(self.store).__name__)
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Finish the tasks in progress (their answers reach the cache and the ledger), then stop."""
        self._stop.set()
        self.jobs.wake.set()  # idle workers look up
        with self._lock:
            threads = list(self._threads) if self._pid == os.getpid() else []
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def live(self) -> set[str]:
        """Consumers whose heartbeat is fresh, this one included."""
        now = time.time()
        return {name for name, seen in self.store.consumers().items() if now - seen < self.lease} | {
            current_consumer()}

    # -- threads ----------------------------------------------------------------------------------

    def _work(self) -> None:
        me = current_consumer()
        delay = 0.0
        while not self._stop.is_set():
            try:
                if delay and not self.store.blocking and not self.store.queued():
                    delay = self._idle(delay)  # idle on SQLite: poll with a read, claim only when a task waits
                    continue
                ran = self.jobs.work(me, self._stop)
            except Exception as exc:  # the store is unreachable, or one bad task: the worker carries on
                log.warning("working the job queue failed (%s: %s); trying again in 1 s", type(exc).__name__, exc)
                self._stop.wait(1.0)
                continue
            if ran:
                if delay:  # the queue had work after a pause: wake the others to share it
                    self.jobs.wake.set()
                delay = 0.0
            elif self.store.blocking:
                self._wait_for_work()
            else:
                delay = self._idle(delay)

    def _wait_for_work(self) -> None:
        """Redis: block until a task is queued (at most a second, to see `stop`)."""
        try:
            self.store.wait_for_work(1.0)
        except Exception as exc:
            log.warning("waiting on the job queue failed (%s); trying again in 1 s", type(exc).__name__)
            self._stop.wait(1.0)

    def _idle(self, delay: float) -> float:
        """Wait for work on SQLite, which cannot notify; returns the next pause. One idle thread per process polls
        the queue, with a growing pause (IDLE_POLL); the others wait until it finds work, or a submission in this
        process arrives, and wakes them (or half a second passes)."""
        self.jobs.wake.clear()  # the queue was empty just now
        if self._poller.acquire(blocking=False):
            try:
                delay = min(max(delay * 1.5, IDLE_POLL[0]), IDLE_POLL[1])
                self.jobs.wake.wait(delay)
            finally:
                self._poller.release()
            return delay
        self.jobs.wake.wait(0.5)
        return IDLE_POLL[0]

    def _beat(self, me: str) -> None:
        try:
            self.store.heartbeat(me)
        except Exception:  # the heartbeat thread tries again; a store that is down must not stop the start
            log.exception("job heartbeat failed")

    def _maintain(self) -> None:
        me = current_consumer()
        first = True
        last_recovery = last_prune = 0.0
        while not self._stop.is_set():
            try:
                self.store.heartbeat(me)
                if first and self.store.relist():  # queued records of a ledger from before the upgrade
                    log.warning("job queue: queued tasks of an older ledger listed for the consumers")
                if first or time.monotonic() - last_recovery >= self.lease / 2:
                    self.recover()
                    last_recovery = time.monotonic()
                if self.retention is not None and (first or time.monotonic() - last_prune >= PRUNE_EVERY):
                    last_prune = time.monotonic()
                    self.prune()
                first = False
            except Exception:
                log.exception("job heartbeat, recovery or pruning failed")
            self._stop.wait(self.heartbeat_every)

    def _write(self, writeback: WriteBack) -> None:
        while not self._stop.is_set():
            try:
                writeback.run_once()
            except Exception:
                log.exception("write-back to Label Studio failed")
            # One import a second at most: batches of what finished meanwhile, not one request per task.
            self._stop.wait(1.0)
        writeback.run_once()  # what finished while stopping

    def prune(self) -> int:
        """Remove the ledger's records that finished more than `retention` seconds ago."""
        if self.retention is None:
            return 0
        removed = self.store.prune(time.time() - self.retention)
        if removed:
            log.info("job ledger: %d finished task records older than %.0f h removed", removed, self.retention / 3600)
        return removed

    def recover(self) -> int:
        """Queue again the tasks whose consumer's lease ran out (its heartbeat is older than `lease`)."""
        live = self.live()
        requeued = 0
        for job in self.store.jobs():
            for record in self.store.records(job.id, states=frozenset({"running"})):
                if record.owner not in live and self.store.move(job.id, record.moved("queued", owner=None),
                                                                {"running"}, owner=record.owner):
                    requeued += 1
        if requeued:
            self.jobs.wake.set()
            log.warning("job recovery: %d tasks queued again (their consumer stopped, e.g. killed)", requeued)
        return requeued
