"""The job machinery without Label Studio: the ledger's compare-and-set on SQLite and Redis, causes, pruning,
halting on a systemic failure, overlapping clicks, and who may run a task. The queue itself (claims, leases,
redelivery) is tested in `tests/test_job_queue.py`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_backend.core.causes import (
    AUTH,
    CUT_OFF,
    EMPTY,
    INVALID,
    MEDIA,
    OVERLOADED,
    RATE_LIMITED,
    REFUSED,
    REJECTED,
    TOO_LONG,
    UNKNOWN_MODEL,
    UNREACHABLE,
    classify_failure,
    common_systemic_cause,
)
from llm_backend.engine.jobstore import JobInfo, JobStore, RedisJobStore, SQLiteJobStore, TaskRecord
from llm_backend.services import Services, build_services
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, free_port, records_once_idle


@pytest.mark.parametrize(("code", "message", "cause"), [
    ("llm_rejected", "AuthenticationError (HTTP 401): Incorrect API key provided: ***", AUTH),
    ("llm_rejected", "PermissionDeniedError (HTTP 403): no access", AUTH),
    ("llm_unavailable", "InternalServerError (HTTP 500): litellm.InternalServerError: OpenAIException - "
                        "Connection error.", UNREACHABLE),
    ("llm_rejected", "NotFoundError (HTTP 404): The model `gpt-9` does not exist", UNKNOWN_MODEL),
    ("llm_rejected", "ContextWindowExceededError (HTTP 400): maximum context length is 8192", TOO_LONG),
    ("llm_rejected", "BadRequestError (HTTP 400): Invalid parameter", REJECTED),
    ("llm_unavailable", "RateLimitError (HTTP 429): slow down", RATE_LIMITED),
    ("llm_unavailable", "Timeout: Request timed out", OVERLOADED),
    ("invalid_answer", "invalid answer after one repair: the reply did not contain a JSON object", INVALID),
    ("llm_unreachable", "cannot connect to the model server at http://x:8000/v1 (connection refused): is it "
                        "running, and is LLM_API_BASE the address this machine reaches it at?", UNREACHABLE),
    ("answer_cut_off", "the answer was cut off at the model server's own token limit after 9 tokens", CUT_OFF),
    ("answer_refused", "the model refused to answer: \"I'm sorry\"", REFUSED),
    ("answer_empty", "the model returned an empty reply twice", EMPTY),
    ("context_window_exceeded", "BadRequestError (HTTP 400): This model's maximum context length is 8192", TOO_LONG),
    ("invalid_answer", "invalid answer after one repair: property \"sentiment\": 'x' is not one of", INVALID),
    ("task_error", "task text has 300001 characters, over MAX_TASK_CHARS=200000", TOO_LONG),
    ("task_error", "could not fetch http://files/a.txt: HTTP 403", MEDIA),
], ids=lambda value: value.key if hasattr(value, "key") else None)
def test_failures_are_grouped_by_the_cause_a_person_can_fix(code: str, message: str, cause: Any) -> None:
    assert classify_failure(code, message) == cause


def test_only_one_shared_systemic_cause_makes_a_whole_batch_failure() -> None:
    assert common_systemic_cause([AUTH, AUTH]) == AUTH
    assert common_systemic_cause([AUTH, UNREACHABLE]) is None
    assert common_systemic_cause([INVALID, INVALID]) is None
    assert common_systemic_cause([]) is None


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        yield SQLiteJobStore(tmp_path / "jobstate.sqlite3")
    else:
        yield RedisJobStore(request.getfixturevalue("redis_url"))


def test_the_ledger_moves_a_task_only_from_the_expected_state_and_owner(store: JobStore) -> None:
    job = JobInfo("7:v1", "7", "v1", CHOICES_CONFIG, created=1.0)
    store.put_job(job)
    queued = TaskRecord(5, "queued", submitted=1.0)
    assert store.add_tasks(job.id, [(queued, {"id": 5, "data": {"text": "a"}})]) == {5}
    assert store.add_tasks(job.id, [(queued, {"id": 5, "data": {"text": "b"}})]) == set()  # one record per task
    assert store.task_data(job.id, 5) == {"id": 5, "data": {"text": "a"}}

    first, second = queued.moved("running", owner="c1"), queued.moved("running", owner="c2")
    assert store.move(job.id, first, {"queued"})
    assert not store.move(job.id, second, {"queued"})  # the other consumer lost the race
    assert not store.move(job.id, first.moved("done", owner=None), {"running"}, owner="c2")  # not its task
    done = first.moved("done", owner=None, item={"result": []})
    assert store.move(job.id, done, {"running"}, owner="c1")
    assert store.move(job.id, done.moved("returned"), {"done"}, owner=None)
    [record] = store.records(job.id, [5])
    assert (record.state, record.owner, record.item) == ("returned", None, {"result": []})
    assert store.records(job.id, [5, 6]) == [record] and store.get_task(job.id, 6) is None
    assert [j.id for j in store.jobs()] == ["7:v1"]
    store.heartbeat("c1")
    assert time.time() - store.consumers()["c1"] < 5


def _services(make_settings: Callable[..., Settings], **overrides: Any) -> Services:
    return build_services(make_settings(**overrides))


def _tasks(ids: range, word: str = "text") -> list[dict[str, Any]]:
    return [{"id": i, "data": {"text": f"{word} {i}"}} for i in ids]


def _wait_idle(services: Services, job: JobInfo) -> list[TaskRecord]:
    return records_once_idle(services, job, timeout=30)


def test_the_ledger_prunes_finished_records_after_the_retention_and_keeps_the_rest(store: JobStore) -> None:
    now = time.time()
    old, fresh = now - 3600, now - 10
    busy = JobInfo("8:v1", "8", "v1", CHOICES_CONFIG, updated=old)
    done_job = JobInfo("8:v0", "8", "v0", CHOICES_CONFIG, updated=old)
    for job in (busy, done_job):
        store.put_job(job)
    states = {1: ("returned", old), 2: ("posted", old), 3: ("present", old), 4: ("failed", old), 5: ("queued", old),
              6: ("running", old), 7: ("done", old), 8: ("posting", old), 9: ("returned", fresh)}
    store.add_tasks(busy.id, [(TaskRecord(task_id, state, updated=updated), {"id": task_id, "data": {}})
                              for task_id, (state, updated) in states.items()])
    store.add_tasks(done_job.id, [(TaskRecord(1, "posted", updated=old), {"id": 1, "data": {}})])
    store.heartbeat("gone-1-abc")

    assert store.prune(now - 60) == 5
    assert [(r.task_id, r.state) for r in store.records(busy.id)] == [
        (5, "queued"), (6, "running"), (7, "done"), (8, "posting"), (9, "returned")]
    assert store.task_data(busy.id, 1) is None and store.task_data(busy.id, 5) == {"id": 5, "data": {}}
    assert [job.id for job in store.jobs()] == [busy.id]  # the job with nothing left is gone
    assert store.prune(now - 5) == 1 and store.prune(now - 5) == 0
    assert "gone-1-abc" in store.consumers() and store.prune(time.time() + 1) == 0
    assert "gone-1-abc" not in store.consumers()


def test_a_systemic_failure_halts_the_job_and_a_new_submission_resumes_it(
    make_settings: Callable[..., Settings], llm: FakeLLMServer
) -> None:
    services = _services(make_settings, llm_concurrency=1, llm_api_base=f"http://127.0.0.1:{free_port()}/v1",
                         llm_max_retries=0)
    try:
        job = services.jobs.job("8", "v-c", CHOICES_CONFIG, None, {})
        services.jobs.submit(job, _tasks(range(1, 21)))
        services.consumers.start()
        records = _wait_idle(services, job)
        assert [r.state for r in records] == ["failed"] * 20
        assert {r.cause for r in records} == {"unreachable"}
        halted = services.job_store.get_job(job.id)
        assert halted is not None and halted.halted == "unreachable" and "check LLM_API_BASE" in (
            halted.halted_message or "")
        tried = [r for r in records if r.usage and r.usage["calls"]]
        assert len(tried) == 3  # the rest were not sent to a model that cannot be reached
        assert all("not sent to the model" in (r.error or "") for r in records if r not in tried)
        resumed = services.jobs.job("8", "v-c", CHOICES_CONFIG, None, {})
        assert resumed.halted is None
        assert services.jobs.submit(resumed, _tasks(range(1, 21))).queued == 20
    finally:
        services.consumers.stop(timeout=30)
    assert llm.calls == 0


def test_two_overlapping_clicks_never_answer_one_task_twice(make_client: Callable[..., Any],
                                                            llm: FakeLLMServer) -> None:
    """A second "Retrieve predictions" while the first still runs sends the same tasks: each task's prediction
    goes into one answer only, or Label Studio would store it twice."""
    import threading

    llm.set_default(Reply(json={"sentiment": "Neutral"}, delay=0.2))
    client = make_client(llm_concurrency=2, predict_deadline=30)
    body = {"label_config": CHOICES_CONFIG, "project": "12.1", "tasks": _tasks(range(1, 9))}
    answers: list[list[dict[str, Any]]] = []

    def click() -> None:
        answers.append(client.post("/predict", json=body).get_json()["results"])

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
        time.sleep(0.1)
    for thread in clicks:
        thread.join()
    answered = [task["id"] for results in answers for task, item in zip(body["tasks"], results, strict=True)
                if "result" in item]
    assert sorted(answered) == list(range(1, 9))  # every task once, in one of the two answers
    assert llm.calls == 8


def test_a_consumer_with_other_settings_leaves_the_task_to_one_that_has_the_submitters(
    make_settings: Callable[..., Settings], llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes on one queue, one switched to another model: neither answers under the other's
    model_version. Alone, the other one returns the task to the queue and, after BOUNCE_PATIENCE, fails it saying
    why."""
    import llm_backend.engine.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "BOUNCE_PATIENCE", 1.0)
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    shared = tmp_path / "shared"
    submitter = _services(make_settings, cache_dir=shared, llm_model="openai/model-a", llm_concurrency=2)
    other = _services(make_settings, cache_dir=shared, llm_model="openai/model-b", llm_concurrency=2)
    try:
        job = submitter.jobs.job("21", "model-a-v", CHOICES_CONFIG, None, {})
        submitter.jobs.submit(job, _tasks(range(1, 5)))
        other.consumers.start()
        records = _wait_idle(other, job)
        assert [(r.state, r.cause) for r in records] == [("failed", "settings_changed")] * 4
        assert all(r.bounces >= 2 for r in records)
        assert "queued by a backend with other settings" in (records[0].error or "") and llm.calls == 0

        monkeypatch.setattr(jobs_module, "BOUNCE_PATIENCE", 30.0)
        submitter.jobs.submit(job, _tasks(range(1, 5)))  # both now: the submitter's consumers answer
        submitter.consumers.start()
        records = _wait_idle(submitter, job)
        assert [r.state for r in records] == ["done"] * 4
        assert {request["model"] for request in llm.requests} == {"model-a"}
    finally:
        other.consumers.stop(timeout=30)
        submitter.consumers.stop(timeout=30)


def test_a_second_click_before_label_studio_saved_the_first_answer_gets_no_second_prediction(
    make_client: Callable[..., Any], llm: FakeLLMServer
) -> None:
    """Label Studio stores a /predict's answer after receiving it: a click in that moment sends the same tasks
    again. They are not answered twice; after SECOND_CLICK_GRACE (the predictions were deleted, or never stored)
    they are."""
    from llm_backend.web.app import services_of

    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    client = make_client(llm_concurrency=2, predict_deadline=30, second_click_grace=30)
    body = {"label_config": CHOICES_CONFIG, "project": "12.2", "tasks": _tasks(range(1, 5))}
    first = client.post("/predict", json=body).get_json()["results"]
    assert all("result" in item for item in first)
    second = client.post("/predict", json=body).get_json()["results"]
    assert [("result" in item, "already delivered" in item.get("error", "")) for item in second] == [(False, True)] * 4

    services_of(client.application).jobs.save_grace = 0.0  # later: Label Studio asks again, so it holds none
    third = client.post("/predict", json=body).get_json()["results"]
    assert all("result" in item for item in third)
    assert llm.calls == 4  # the answers again came from the cache


def test_who_may_run_a_task_is_decided_by_template_contents_never_by_their_path(
    make_settings: Callable[..., Settings], llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes on one queue, each with its own PROMPTS_DIR (as replicas started from two directories): with
    the same edited template they run each other's tasks; once one's template says something else, they do not."""
    import llm_backend.engine.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "BOUNCE_PATIENCE", 1.0)
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    shared = tmp_path / "shared"
    homes = [tmp_path / "host-a" / "prompts", tmp_path / "host-b" / "prompts"]
    for home in homes:
        home.mkdir(parents=True)
        (home / "repair.j2").write_text("Fix it: {{ error }}\n")
    submitter = _services(make_settings, cache_dir=shared, prompts_dir=homes[0], llm_concurrency=2)
    other = _services(make_settings, cache_dir=shared, prompts_dir=homes[1], llm_concurrency=2)
    assert submitter.settings.prediction_fingerprint() == other.settings.prediction_fingerprint()
    try:
        job = submitter.jobs.job("22", "v-same", CHOICES_CONFIG, None, {})
        submitter.jobs.submit(job, _tasks(range(1, 5)))
        other.consumers.start()
        records = _wait_idle(other, job)
        assert [r.state for r in records] == ["done"] * 4 and {r.bounces for r in records} == {0}

        (homes[1] / "repair.j2").write_text("Repair it: {{ error }}\n")  # only the other's copy changes
        job = submitter.jobs.job("23", "v-edited", CHOICES_CONFIG, None, {})
        submitter.jobs.submit(job, _tasks(range(1, 5)))
        records = _wait_idle(other, job)
        assert [(r.state, r.cause) for r in records] == [("failed", "settings_changed")] * 4
        assert llm.calls == 4
    finally:
        other.consumers.stop(timeout=30)


def test_a_task_a_predict_waits_for_is_retried_until_its_deadline_by_a_consumer_in_another_process(
    make_settings: Callable[..., Settings], llm: FakeLLMServer, tmp_path: Path
) -> None:
    """With several workers (WORKERS=auto), a /predict's tasks are run by every worker's consumers. A consumer in
    another process than the waiting /predict still retries a rate-limited task until that /predict's deadline
    (not only LLM_MAX_RETRIES times), and its write-back leaves the task to that /predict."""
    limited = Reply(status=429, headers={"Retry-After": "0"}, error_message="Rate limit reached")
    llm.add_rule("busy", [limited, limited, limited, Reply(json={"sentiment": "Neutral"})])
    shared = tmp_path / "shared"
    waiting = _services(make_settings, cache_dir=shared, llm_max_retries=1, llm_retry_max_wait=0.05)
    other = _services(make_settings, cache_dir=shared, llm_max_retries=1, llm_retry_max_wait=0.05)
    job = waiting.jobs.job("31", "v-wait", CHOICES_CONFIG, None, {})
    waiting.jobs.submit(job, [{"id": 1, "data": {"text": "busy"}}], await_until=time.time() + 30)
    record = other.job_store.get_task(job.id, 1)
    assert record is not None and other.jobs.awaited(job.id, record)  # another process's write-back leaves it

    assert other.jobs.run_next("other-1")
    [done] = other.job_store.records(job.id)
    assert (done.state, done.item is not None) == ("done", True)
    assert llm.calls == 4  # three 429s retried: LLM_MAX_RETRIES=1 alone would have failed it after two calls

    # No /predict waits: as offline, LLM_MAX_RETRIES retries.
    llm.add_rule("later", [limited, limited, limited, Reply(json={"sentiment": "Neutral"})])
    waiting.jobs.submit(job, [{"id": 2, "data": {"text": "later"}}])
    assert other.jobs.run_next("other-1")
    failed = other.job_store.get_task(job.id, 2)
    assert failed is not None and failed.state == "failed" and not other.jobs.awaited(job.id, failed)
