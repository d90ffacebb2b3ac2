"""The ledger as the job queue, on SQLite and on Redis: a task is claimed once even when two processes reach for
the queue at the same moment, a claim takes the oldest queued task, a lease that ran out (the owner's heartbeat
stopped) gives the task to another consumer, and a job runs through consumers and the test LLM server with
each task predicted once."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_backend.engine.jobs import current_consumer
from llm_backend.engine.jobstore import JobInfo, JobStore, RedisJobStore, SQLiteJobStore, TaskRecord
from llm_backend.services import Services, build_services
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer, Reply
from tests.claiming import claim_in_rounds, open_store
from tests.conftest import CHOICES_CONFIG, records_once_idle

BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the ledger lives: a SQLite file, or a Redis URL."""
    if request.param == "sqlite":
        return str(tmp_path / "jobstate.sqlite3")
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def store(where: str) -> Iterator[JobStore]:
    opened = open_store(where)
    yield opened
    opened.disconnect()


def _queue(store: JobStore, job_id: str, task_ids: range, *, at: float | None = None) -> None:
    store.put_job(JobInfo(job_id, job_id.split(":")[0], "v1", CHOICES_CONFIG))
    now = time.time() if at is None else at
    store.add_tasks(job_id, [(TaskRecord(task_id, "queued", submitted=now, updated=now),
                              {"id": task_id, "data": {"text": f"text {task_id}"}}) for task_id in task_ids])


def test_two_processes_claiming_at_the_same_moment_take_each_task_once(store: JobStore, where: str) -> None:
    processes, threads, tasks = 2, 4, 120
    _queue(store, "1:v1", range(1, tasks // 2 + 1))
    _queue(store, "2:v1", range(1, tasks // 2 + 1))
    rounds = tasks // (processes * threads) + 1  # every claim of the last round finds the queue empty
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes * threads), context.Queue()
    claimers = [context.Process(target=claim_in_rounds, args=(where, f"p{n}", threads, rounds, barrier, results))
                for n in range(processes)]
    for claimer in claimers:
        claimer.start()
    claimed = [claim for _ in claimers for claim in results.get(timeout=120)]
    for claimer in claimers:
        claimer.join(timeout=30)
        assert claimer.exitcode == 0

    taken = Counter((job, task) for _consumer, job, task in claimed)
    assert len(taken) == tasks and set(taken.values()) == {1}  # every task, each once
    # Each thread claimed once a round while tasks lasted: both processes took their share.
    assert Counter(consumer.split("-")[0] for consumer, _job, _task in claimed) == {"p0": tasks // 2, "p1": tasks // 2}
    for consumer, job, task in claimed:  # and the ledger names the one that claimed it
        record = store.get_task(job, task)
        assert record is not None and (record.state, record.owner) == ("running", consumer)
    assert store.claim("late") is None and not store.queued()


def test_a_claim_takes_the_oldest_queued_task_with_its_data_and_record_intact(store: JobStore) -> None:
    big = 2**52 + 1  # an id that a round trip through 14-digit numbers (Lua's cjson) would change
    _queue(store, "3:v1", range(big, big + 1), at=1764800000.123456)
    _queue(store, "4:v1", range(7, 8), at=1764800001.5)
    assert store.queued()
    first = store.claim("c1")
    assert first is not None and (first.job_id, first.record.task_id) == ("3:v1", big)
    assert first.data == {"id": big, "data": {"text": f"text {big}"}}
    assert first.record.submitted == 1764800000.123456 and first.record.owner == "c1"
    assert store.get_task("3:v1", big) == first.record  # what the consumer holds is what the ledger says
    second = store.claim("c2")
    assert second is not None and (second.job_id, second.record.task_id, second.record.owner) == ("4:v1", 7, "c2")
    assert store.claim("c3") is None

    # Moved back to queued (a bounce, a redelivery): claimable again, once.
    assert store.move("4:v1", second.record.moved("queued", owner=None), {"running"}, owner="c2")
    again = store.claim("c3")
    assert again is not None and (again.record.task_id, again.record.owner) == (7, "c3")
    assert store.claim("c4") is None


def test_a_task_that_left_the_queue_another_way_is_not_claimed(store: JobStore) -> None:
    _queue(store, "5:v1", range(1, 3))
    record = store.get_task("5:v1", 1)
    assert record is not None  # failed by a halted job's sweep, say: no longer queued
    assert store.move("5:v1", record.moved("failed", error="halted"), {"queued"})
    claim = store.claim("c1")
    assert claim is not None and claim.record.task_id == 2
    assert store.claim("c1") is None
    [failed, running] = store.records("5:v1")
    assert (failed.state, running.state) == ("failed", "running")


def _services(make_settings: Callable[..., Settings], where: str, **overrides: Any) -> Services:
    backend = {"cache_url": where} if where.startswith("redis://") else {"cache_dir": Path(where).parent}
    return build_services(make_settings(**backend, **overrides))


def _tasks(ids: range) -> list[dict[str, Any]]:
    return [{"id": i, "data": {"text": f"text {i}"}} for i in ids]


def _wait_idle(services: Services, job: JobInfo) -> list[TaskRecord]:
    # 120 s: the first model call of a test process imports LiteLLM, which on a loaded 2-core machine has taken
    # over 30 s.
    return records_once_idle(services, job, timeout=120)


def test_a_job_runs_through_the_queue_and_each_task_is_predicted_once(
    make_settings: Callable[..., Settings], where: str, llm: FakeLLMServer
) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    services = _services(make_settings, where, llm_concurrency=2)
    try:
        job = services.jobs.job("3", "v-a", CHOICES_CONFIG, None, {})
        submission = services.jobs.submit(job, _tasks(range(1, 11)))
        assert submission.queued == 10 and services.job_store.queued()
        assert services.jobs.submit(job, _tasks(range(1, 11))).queued == 0  # already queued: not twice
        services.consumers.start()
        records = _wait_idle(services, job)
        assert [(r.state, r.status) for r in records] == [("done", "ok")] * 10
        assert records[0].item is not None and records[0].item["result"][0]["value"] == {"choices": ["Positive"]}
        assert {r.ran_by for r in records} == {current_consumer()}
        services.consumers.stop(timeout=30)  # once stopped, nothing more can run: each task was one call
        assert llm.calls == 10 and not services.job_store.queued()
    finally:
        services.close()


def test_a_task_whose_lease_ran_out_is_redelivered_and_finished_by_another_consumer(
    make_settings: Callable[..., Settings], where: str, llm: FakeLLMServer
) -> None:
    """A consumer killed with `kill -9` holds its claims until its heartbeat is older than the lease; then any
    consumer's recovery puts them back in the queue, and they are predicted (once each)."""
    llm.set_default(Reply(json={"sentiment": "Negative"}))
    services = _services(make_settings, where, llm_concurrency=2)
    store = services.job_store
    try:
        job = services.jobs.job("3", "v-b", CHOICES_CONFIG, None, {})
        services.jobs.submit(job, _tasks(range(1, 5)))
        dead = "dead-host-1-abc"
        store.heartbeat(dead)
        taken = [store.claim(dead), store.claim(dead)]  # claimed, then the process died mid-call
        assert all(claim is not None for claim in taken)
        assert services.consumers.recover() == 0  # its heartbeat is fresh: the lease holds
        store.heartbeat(dead, at=time.time() - 3600)
        assert services.consumers.recover() == 2 and services.consumers.recover() == 0
        services.consumers.start()
        records = _wait_idle(services, job)
        assert [r.state for r in records] == ["done"] * 4
        assert {r.ran_by for r in records} == {current_consumer()}
        services.consumers.stop(timeout=30)
        assert llm.calls == 4
    finally:
        services.close()


def test_a_consumer_whose_task_was_redelivered_cannot_finish_it(store: JobStore) -> None:
    """A consumer that was only slow (its heartbeat late) finds its claim gone: its finish is refused, and the
    task is the new owner's."""
    _queue(store, "6:v1", range(1, 2))
    slow = store.claim("slow")
    assert slow is not None
    assert store.move("6:v1", slow.record.moved("queued", owner=None), {"running"}, owner="slow")  # recovery
    fresh = store.claim("fresh")
    assert fresh is not None and fresh.record.task_id == 1
    assert not store.move("6:v1", slow.record.moved("done", owner=None, item={"result": []}), {"running"},
                          owner="slow")
    assert store.move("6:v1", fresh.record.moved("done", owner=None, item={"result": []}), {"running"},
                      owner="fresh")


def test_a_claim_writes_the_consumers_previous_outcome_in_the_same_step(store: JobStore) -> None:
    """A worker's next claim carries its last task's outcome: one write a task. An outcome whose task was
    redelivered meanwhile is refused there too, and the claim still happens."""
    _queue(store, "9:v1", range(1, 4))
    first = store.claim("c1")
    assert first is not None
    second = store.claim("c1", finish=("9:v1", first.record.moved("done", owner=None, item={"result": []})))
    assert second is not None and second.record.task_id == 2
    done = store.get_task("9:v1", 1)
    assert done is not None and (done.state, done.owner, done.item) == ("done", None, {"result": []})

    assert store.move("9:v1", second.record.moved("queued", owner=None), {"running"}, owner="c1")  # recovery
    third = store.claim("c2")
    assert third is not None and third.record.task_id == 3
    fourth = store.claim("c2")
    assert fourth is not None and (fourth.record.task_id, fourth.record.owner) == (2, "c2")
    late = second.record.moved("done", owner=None, item={"result": []})
    assert store.claim("c1", finish=("9:v1", late)) is None  # nothing queued, and the late outcome refused
    task = store.get_task("9:v1", 2)
    assert task is not None and (task.state, task.owner) == ("running", "c2")


def test_a_ledger_written_beside_the_old_queue_is_read_and_its_queued_tasks_claimed(tmp_path: Path) -> None:
    """jobstate.sqlite3 from before the ledger was the queue (no queued_at column) and before task data had a
    table of its own (it is in the record's row): opened as it is, each task claimed with its data."""
    import sqlite3

    path = tmp_path / "jobstate.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tasks (job TEXT NOT NULL, task INTEGER NOT NULL, state TEXT NOT NULL, owner TEXT, "
                   "body TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, task))")
        for task_id in (3, 4):
            db.execute("INSERT INTO tasks VALUES ('7:v1', ?, 'queued', NULL, ?, ?)",
                       (task_id, TaskRecord(task_id, "queued").to_json(),
                        json.dumps({"id": task_id, "data": {"text": f"old {task_id}"}})))
    db.close()
    store = SQLiteJobStore(path)
    claim = store.claim("c1")
    assert claim is not None and (claim.job_id, claim.record.task_id, claim.record.state) == ("7:v1", 3, "running")
    assert claim.data == {"id": 3, "data": {"text": "old 3"}}
    store.set_task_data("7:v1", 4, {"id": 4, "data": {"text": "edited"}})  # sent again with new data
    assert store.task_data("7:v1", 4) == {"id": 4, "data": {"text": "edited"}}
    claim = store.claim("c1")
    assert claim is not None and claim.data == {"id": 4, "data": {"text": "edited"}}
    store.set_task_data("7:v1", 99, {"id": 99, "data": {}})  # no such task: nothing is written
    assert store.task_data("7:v1", 99) is None
    store.disconnect()


@pytest.mark.redis
def test_redis_consumers_wait_for_work_without_taking_it(redis_url: str) -> None:
    """BLMOVE of the ready list onto itself: it returns once an entry is there, and leaves it for the claim."""
    store = RedisJobStore(redis_url)
    store.wait_for_work(1.0)  # nothing queued: returns after its timeout
    _queue(store, "8:v1", range(1, 2))
    store.wait_for_work(1.0)
    store.wait_for_work(1.0)  # the entry is still there: no wait
    assert store.queued()
    claim = store.claim("c1")
    assert claim is not None and claim.record.task_id == 1
    store.disconnect()


@pytest.mark.redis
def test_redis_lists_the_queued_records_of_a_ledger_from_before_the_ready_list(redis_url: str) -> None:
    """An upgrade from the huey queue leaves queued records with no ready entry: a consumer's start lists them
    once, and a ledger whose queued records have entries is left as it is."""
    import redis

    store = RedisJobStore(redis_url)
    store.put_job(JobInfo("10:v1", "10", "v1", CHOICES_CONFIG))
    old = redis.Redis.from_url(redis_url)  # written as the old ledger did: the record, and huey held the message
    old.hset("llm-backend:jobs:10:v1:tasks", "4", TaskRecord(4, "queued").to_json())
    old.hset("llm-backend:jobs:10:v1:data", "4", json.dumps({"id": 4, "data": {}}))
    assert store.claim("c1") is None  # not claimable yet
    assert store.relist() == 1 and store.relist() == 0
    claim = store.claim("c1")
    assert claim is not None and (claim.job_id, claim.record.task_id) == ("10:v1", 4)
    _queue(store, "11:v1", range(1, 2))
    assert store.relist() == 0  # its entry is there
    old.close()
    store.disconnect()
