"""Durable background jobs: the tasks of a selection, queued in the job ledger and predicted by consumers.

A /predict (or `label-project`) *submits* its tasks to the job of its project and model_version:
each task gets a record in the job store (`engine/jobstore.py`), in state `queued`; the ledger is the
queue. SQLite in CACHE_DIR by default (no extra service), Redis when CACHE_URL is set so that replicas
share the work. Consumers (`engine/consumers.py`: threads inside `serve`, or `llm-backend worker`) claim
queued tasks (`run_next`: an atomic move to `running` under the consumer's id) and predict them with the
service's predictor: the response cache makes a task that was answered before a crash free.

/predict then waits until its deadline and *collects*: a finished task whose outcome it wins
(`done -> returned`, a compare-and-set) goes into its response; the rest carry on as the job, and
are written back to Label Studio (`engine/writeback.py`) or collected by the next click.

A job whose tasks fail one after another for the same systemic cause (wrong key, unreachable or
unknown model) is *halted*: its queued tasks fail at once with that cause instead of each paying
for retries, and the next submission resumes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.causes import BY_KEY, SETTINGS_CHANGED, Cause, classify_failure
from ..core.config import parse_label_config
from ..settings import Settings
from .jobstore import ACTIVE, DELIVERED, WORKING, Claim, JobInfo, JobStore, TaskRecord
from .outcome import TaskOutcome
from .predictor import PredictionJob, TaskPredictor
from .prompts import PromptLibrary

log = logging.getLogger(__name__)

BOUNCE_PATIENCE = 30.0  # seconds a task waits for a consumer with its submitter's settings before it fails
HALT_AFTER = 3  # consecutive failures of one systemic cause, with no success in between, halt a job
POLL_EVERY = 0.2  # seconds between a waiting /predict's ledger reads while many of its tasks are unsettled
POLL_GAP = 0.02  # and between two reads once at most POLL_GAP_BELOW are (as far as this process knows)
POLL_GAP_BELOW = 32


@dataclass
class Submission:
    job: JobInfo
    task_ids: list[int]
    received: float  # wall-clock time the request arrived: what was delivered before it is not delivered again
    queued: int = 0


@dataclass
class Collected:
    items: dict[int, dict[str, Any]] = field(default_factory=dict)  # task id -> result item for Label Studio
    records: dict[int, TaskRecord] = field(default_factory=dict)  # task id -> the record of each of `items`
    failed: dict[int, TaskRecord] = field(default_factory=dict)  # failed during this request
    pending: list[int] = field(default_factory=list)  # still in the job
    delivered: list[int] = field(default_factory=list)  # delivered by someone else while this request ran


@dataclass(eq=False)
class _Waiter:
    """A /predict waiting for its tasks: those the ledger last said were unsettled, and which of them have settled
    in this process since."""

    pending: set[int]
    settled_here: set[int] = field(default_factory=set)
    news: bool = False  # a task settled here since the last read


@dataclass(frozen=True)
class Finished:
    """A claimed task's outcome, not yet written: its record moved to `done` or `failed`."""

    job_id: str
    record: TaskRecord
    job: JobInfo | None = None
    cause: Cause | None = None

    def record_of(self) -> tuple[str, TaskRecord]:
        return self.job_id, self.record


class Jobs:
    """Submits tasks to jobs, executes queued tasks, and collects outcomes for /predict."""

    def __init__(self, settings: Settings, store: JobStore, predictor: TaskPredictor, *, writeback: bool,
                 prompts: PromptLibrary | None = None) -> None:
        self.settings = settings
        self.store = store
        self.predictor = predictor
        self.writeback = writeback  # whether this process can post to Label Studio
        self._changed = threading.Condition()
        self._waiters: dict[str, list[_Waiter]] = {}  # job id -> the /predicts of this process waiting on it
        self._awaited: dict[tuple[str, int], float] = {}  # (job, task) -> deadline (time.time()) of a waiting /predict
        self.wake = threading.Event()  # set on submit: this process's idle workers look at the queue at once
        self.prompts = prompts
        # Seconds after a /predict answered a task during which a new submission of it is not answered again: Label
        # Studio stores a /predict's answer only after receiving it, so a second click in that moment still sends it.
        self.save_grace = settings.second_click_grace
        self.settings_fingerprint = settings.prediction_fingerprint()

    def fingerprint(self, project: str) -> str:
        """What shapes this project's answers in this process: the settings that can change an answer and the
        contents of the templates in effect for it (never their paths). Only a process with the submitter's runs a
        job's tasks; templates are re-read when edited, so this follows an edit as `model_version` does."""
        templates = self.prompts.fingerprint(project) if self.prompts is not None else ""
        return hashlib.sha256(f"{self.settings_fingerprint}|{templates}".encode()).hexdigest()[:12]

    # -- submitting -------------------------------------------------------------------------------

    def job(self, project: str, model_version: str, label_config: str, model: str | None,
            params: dict[str, Any], *, writeback: bool | None = None) -> JobInfo:
        """The job of this project and version, created or refreshed; a new submission lifts a halt."""
        now = time.time()
        job_id = JobInfo.key(project, model_version)
        current = self.store.get_job(job_id)
        job = JobInfo(job_id, project, model_version, label_config, model, dict(params),
                      writeback=self.writeback if writeback is None else writeback,
                      created=current.created if current else now, updated=now, fingerprint=self.fingerprint(project))
        self.store.put_job(job)
        if current is not None and current.halted:
            log.info("job %s resumed (it was halted: %s)", job_id, current.halted_message)
        return job

    def submit(self, job: JobInfo, tasks: list[dict[str, Any]], *, received: float | None = None,
               await_until: float | None = None) -> Submission:
        """Queue every task that is not already queued, running or delivered since the request arrived."""
        submission = Submission(job, [int(task["id"]) for task in tasks], received or time.time())
        now = time.time()
        # In the records too: a consumer in another process (WORKERS > 1, a replica) runs them as well.
        awaited_until = await_until
        if await_until is not None:
            for task_id in submission.task_ids:
                self._awaited[(job.id, task_id)] = await_until
        data: dict[int, dict[str, Any]] = {}
        for task in tasks:  # a task sent twice in one request is queued once, with its first data
            data.setdefault(int(task["id"]), {"id": int(task["id"]), "data": task.get("data")})
        # One transaction: from its commit on, the new records are in the queue.
        added = self.store.add_tasks(job.id, [(TaskRecord(task_id, "queued", submitted=now, updated=now,
                                                          awaited_until=awaited_until), task)
                                              for task_id, task in data.items()])
        again = [task_id for task_id in data if task_id not in added]
        if again:  # tasks this job has seen before: each decides by its record
            records = {record.task_id: record for record in self.store.records(job.id, again)}
            again = [task_id for task_id in again
                     if self._submit_again(job, records.get(task_id), data[task_id], submission.received,
                                           awaited_until)]
        queued = sorted(added) + again
        if queued:
            self.wake.set()
            submission.queued = len(queued)
            log.info("job %s: %d tasks queued (%d submitted)", job.id, submission.queued, len(tasks))
        return submission

    def _submit_again(self, job: JobInfo, record: TaskRecord | None, data: dict[str, Any], received: float,
                      awaited_until: float | None) -> bool:
        """Whether a task the job already has is queued again (moved back to `queued` here)."""
        if record is None or record.state in ACTIVE:
            return False  # queued, running, or finished and about to be delivered: this request waits for it
        if record.state in DELIVERED and record.updated >= received:
            return False  # delivered while this request was on its way: Label Studio has it or is storing it
        if record.state == "returned" and time.time() - record.updated < self.save_grace:
            return False  # answered to a /predict a moment ago: Label Studio is storing it (a second click)
        # Failed, or delivered before this request arrived and asked for again, so Label Studio no longer
        # holds it (deleted): predict again, through the cache, so settings changed since are honoured, with
        # the task's data as sent now (it may have been edited).
        now = time.time()
        self.store.set_task_data(job.id, record.task_id, data)
        return self.store.move(job.id, TaskRecord(record.task_id, "queued", submitted=now, updated=now,
                                                  awaited_until=awaited_until), {"failed", *DELIVERED})

    # -- executing (in a consumer thread) ---------------------------------------------------------

    def work(self, consumer: str, stop: threading.Event) -> int:
        """Claim and run queued tasks until none is left or `stop` is set; the number run. Each task's outcome is
        written in the transaction that claims the next task (one ledger write a task, not two)."""
        ran = 0
        claim = self.store.claim(consumer)
        while claim is not None:
            ran += 1
            finished = self._run(claim, consumer)
            if stop.is_set():
                self._record(finished, consumer)
                break
            claim = self.store.claim(consumer, finish=finished.record_of() if finished else None)
            self._finished(finished)
        return ran

    def run_next(self, consumer: str | None = None) -> bool:
        """Claim the oldest queued task, run it and record its outcome; False when none is queued."""
        consumer = consumer or current_consumer()
        claim = self.store.claim(consumer)
        if claim is None:
            return False
        self._record(self._run(claim, consumer), consumer)
        return True

    def _run(self, claim: Claim, consumer: str) -> Finished | None:
        try:
            return self.execute(claim, consumer)
        except Exception as exc:  # a bug, not a model failure (those are outcomes): fail this task, not the worker
            log.exception("job %s: task %d failed", claim.job_id, claim.record.task_id)
            failed = claim.record.moved("failed", owner=None, finished=time.time(), status="failed",
                                        error=f"internal error: {type(exc).__name__}: {exc}"[:500])
            return Finished(claim.job_id, failed)

    def _record(self, finished: Finished | None, consumer: str) -> None:
        """Write an outcome on its own (no next claim to write it with)."""
        if finished is not None:
            self.store.move(finished.job_id, finished.record, {"running"}, owner=consumer)
        self._finished(finished)

    def _finished(self, finished: Finished | None) -> None:
        """Once an outcome is written: wake the waiting /predicts; halt the job after a streak of one cause."""
        if finished is None:
            return
        with self._changed:
            if finished.record.state not in WORKING:
                for waiter in self._waiters.get(finished.job_id, ()):
                    if finished.record.task_id in waiter.pending:
                        waiter.settled_here.add(finished.record.task_id)
                        waiter.news = True
            self._changed.notify_all()
        if finished.job is not None and finished.cause is not None and finished.cause.systemic:
            self._maybe_halt(finished.job, finished.cause, finished.record.error or "")

    def execute(self, claim: Claim, consumer: str) -> Finished | None:
        """Predict a task this consumer claimed (its record is `running` under `consumer`): its outcome, to be
        written by the caller, or None when the task went back to the queue."""
        job_id, running = claim.job_id, claim.record
        job = self.store.get_job(job_id)
        if job is None:  # cannot happen while the job has a task (pruning removes only empty jobs)
            return Finished(job_id, running.moved("failed", owner=None, finished=time.time(), error="job not found"))
        if job.halted:
            cause = BY_KEY.get(job.halted)
            message = f"not sent to the model: this job stopped because {job.halted_message}"
            return self._outcome(job, running, TaskOutcome("failed", error=message), cause, None)
        mine = self.fingerprint(job.project)
        if job.fingerprint and job.fingerprint != mine:
            return self._bounce(job, running, mine, consumer)
        data = claim.data or {"id": running.task_id, "data": {}}
        # While a /predict waits for the task (in this process, or in another: its record says until when),
        # transient failures are retried until its deadline (then LLM_MAX_RETRIES more at most); otherwise
        # LLM_MAX_RETRIES times, as offline.
        deadline = self._awaited.get((job_id, running.task_id))
        if deadline is None and running.awaited_until is not None and running.awaited_until > time.time():
            deadline = running.awaited_until
        # parse_label_config keeps the parsed configs (an LRU cache): a job's XML is parsed once per process.
        prediction = PredictionJob(parse_label_config(job.label_config), job.project, data, None, job.model,
                                   dict(job.params), deadline=deadline)
        outcome = self.predictor.predict(prediction)
        cause = classify_failure(outcome.error_code, outcome.error) if outcome.regions is None else None
        return self._outcome(job, running, outcome, cause, consumer)

    def _bounce(self, job: JobInfo, record: TaskRecord, mine: str, consumer: str) -> Finished | None:
        """A task submitted under other settings (another model, prompts, few-shot...): its model_version is not
        what this process would produce, so it goes back to the end of the queue for a consumer that has them."""
        now = time.time()
        since = record.bounced_since or now
        if now - since > BOUNCE_PATIENCE:
            message = (f"{SETTINGS_CHANGED.title} (job {job.id}, settings {job.fingerprint}; this backend's are "
                       f"{mine}) and none with those settings took it in {BOUNCE_PATIENCE:.0f} s")
            return self._outcome(job, record, TaskOutcome("failed", error=message), SETTINGS_CHANGED, None)
        back = record.moved("queued", owner=None, bounces=record.bounces + 1, bounced_since=since)
        if self.store.move(job.id, back, {"running"}, owner=consumer):
            time.sleep(0.2)  # not straight back to this worker: a consumer with the right settings gets its turn
        return None

    @staticmethod
    def _outcome(job: JobInfo, record: TaskRecord, outcome: TaskOutcome, cause: Cause | None,
                 ran_by: str | None) -> Finished:
        """The running record moved to `done` or `failed`; `ran_by`: the consumer that sent it to the model."""
        item = outcome.to_result(job.model_version) if outcome.regions is not None else None
        finished = record.moved("done" if item is not None else "failed", owner=None, finished=time.time(),
                                item=item, status=outcome.status, error=outcome.error, error_code=outcome.error_code,
                                cause=cause.key if cause else None, usage=outcome.usage.to_dict(),
                                ran_by=ran_by or record.ran_by, facts=outcome.facts())
        return Finished(job.id, finished, job, cause)

    def _maybe_halt(self, job: JobInfo, cause: Cause, message: str) -> None:
        records = self.store.records(job.id)
        finished = sorted((r for r in records if r.finished is not None), key=lambda r: r.finished or 0.0,
                          reverse=True)
        streak = 0
        for record in finished:
            if record.cause != cause.key:
                break
            streak += 1
        pending = any(r.state in ("queued", "running") for r in records)
        if streak < HALT_AFTER or not pending:
            return
        current = self.store.get_job(job.id) or job
        if current.halted:
            return
        text = f"{streak} tasks in a row failed: {cause.title} ({message[:200]}); fix: {cause.fix}"
        self.store.put_job(replace(current, halted=cause.key, halted_message=text))
        log.error("job %s halted: %s", job.id, text)

    # -- collecting (in a /predict) ---------------------------------------------------------------

    def wait(self, submission: Submission, deadline: float) -> list[TaskRecord]:
        """Block until every submitted task is settled or the `deadline` (time.time()) passes, then read them once.

        Only the ledger says that a task settled (one whose consumer lost its lease is done again elsewhere); the
        tasks that settle in this process say when to ask it: at once when one leaves none unsettled (the last of
        a batch, a long text's one task), every POLL_GAP seconds once at most POLL_GAP_BELOW may be unsettled,
        every POLL_EVERY before (tasks finishing in other processes, another worker or `llm-backend worker`, are
        seen then). A read costs a row per pending task: reading every POLL_GAP through a 2,000-task /predict
        cost about a tenth of a millisecond of CPU a task. A finish written while the ledger is read is not
        missed: its task stays pending, and settled here, after that read."""
        job_id = submission.job.id
        waiter = _Waiter(set(submission.task_ids))
        with self._changed:
            self._waiters.setdefault(job_id, []).append(waiter)
        try:
            polled = 0.0
            while waiter.pending:
                now = time.time()
                if now >= deadline:
                    break
                with self._changed:
                    unsettled = len(waiter.pending) - len(waiter.settled_here)
                    last = unsettled == 0 and waiter.news
                    waiter.news = False
                gap = POLL_GAP if unsettled <= POLL_GAP_BELOW else POLL_EVERY
                if last or now - polled >= gap:
                    pending = self.store.working(job_id, waiter.pending)
                    polled = now
                    with self._changed:
                        waiter.pending = pending
                        waiter.settled_here &= pending
                    continue
                with self._changed:
                    if not waiter.news:  # (one that came since the top of the loop is looked at now)
                        self._changed.wait(timeout=min(polled + gap - now, deadline - now))
        finally:
            with self._changed:
                waiters = self._waiters[job_id]
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[job_id]
        return self.store.records(job_id, submission.task_ids)

    def collect(self, submission: Submission, records: list[TaskRecord]) -> Collected:
        """Take what finished for this response; release the rest to the write-back."""
        collected = Collected()
        done = [record for record in records if record.state == "done" and record.item is not None]
        won = self.store.move_many(submission.job.id, [record.moved("returned") for record in done], {"done"})
        for record in records:
            if record.task_id in won and record.item is not None:
                collected.items[record.task_id] = record.item
                collected.records[record.task_id] = record
            elif record.state == "done" and record.item is not None:
                collected.pending.append(record.task_id)  # taken by the write-back meanwhile: it delivers it
            elif record.state == "failed" and (record.finished or 0) >= submission.received:
                collected.failed[record.task_id] = record
            elif record.state in DELIVERED:
                collected.delivered.append(record.task_id)
            else:
                collected.pending.append(record.task_id)
        for task_id in submission.task_ids:
            self._awaited.pop((submission.job.id, task_id), None)
        return collected

    def awaited(self, job_id: str, record: TaskRecord) -> bool:
        """Whether a /predict, in this process or another, is still waiting for this task (the write-back leaves
        it to that /predict)."""
        until = self._awaited.get((job_id, record.task_id))
        if until is not None:
            return time.time() < until
        return record.awaited_until is not None and time.time() < record.awaited_until


_consumer_lock = threading.Lock()
_consumer: tuple[int, str] | None = None


def current_consumer() -> str:
    """This process's consumer id (host, pid and a random part: a restarted pid is a new consumer)."""
    global _consumer
    import socket
    import uuid

    with _consumer_lock:
        if _consumer is None or _consumer[0] != os.getpid():
            _consumer = (os.getpid(), f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        return _consumer[1]
