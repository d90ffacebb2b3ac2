"""Batch predict under failure: retries, deadline, cache, concurrency. All over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_backend.models.loader import load_litellm
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, free_port


def _batch(n: int, prefix: str = "task", first_id: int = 0) -> dict[str, Any]:
    # Task ids are unique in a Label Studio instance: another prefix is other tasks, so other ids.
    return {"label_config": CHOICES_CONFIG, "project": "5.1",
            "tasks": [{"id": first_id + i, "data": {"text": f"{prefix} number {i}"}} for i in range(n)]}


def _choices(results: list[dict[str, Any]]) -> list[Any]:
    return [r["result"][0]["value"]["choices"] if "result" in r else None for r in results]


def test_rate_limits_and_server_errors_lose_no_task_and_bill_each_answer_once(
    make_client: Any, llm: FakeLLMServer
) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.inject_failures(rate_429=0.3, rate_500=0.1, retry_after=0.05, seed=7)
    retries = 10
    client = make_client(llm_max_retries=retries, llm_retry_max_wait=0.2, llm_concurrency=8)
    results = client.post("/predict", json=_batch(50)).get_json()["results"]
    assert _choices(results) == [["Positive"]] * 50
    assert llm.count(429) > 0 and llm.count(500) > 0
    assert llm.count(200) == 50  # every answer was paid for exactly once
    assert llm.calls == 50 + llm.count(429) + llm.count(500)
    assert llm.calls <= 50 * (1 + retries)


def test_retry_after_is_honoured(make_client: Any, llm: FakeLLMServer) -> None:
    llm.add_rule("wait", [Reply(status=429, headers={"Retry-After": "1"}), Reply(json={"sentiment": "Neutral"})])
    client = make_client(llm_retry_max_wait=5)
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "wait"}}]}
    assert "result" in client.post("/predict", json=body).get_json()["results"][0]
    first, second = llm.requests
    assert second["_received_at"] - first["_received_at"] >= 1.0


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(status=401, error_message="Incorrect API key provided"), "AuthenticationError"),
        (Reply(status=400, error_message="This model's maximum context length is 8192 tokens"), "ContextWindow"),
        (Reply(status=400, error_message="Invalid parameter"), "BadRequestError"),
    ],
    ids=["auth", "context-window", "bad-request"],
)
def test_permanent_failures_are_not_retried(make_client: Any, llm: FakeLLMServer, reply: Reply, message: str) -> None:
    llm.set_default(reply)
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "x"}}]}
    response = make_client(llm_max_retries=5).post("/predict", json=body)
    if message == "AuthenticationError":  # a cause outside the task: the whole batch fails, as one 502 with the fix
        assert response.status_code == 502 and message in response.get_json()["error"]["message"]
    else:
        result = response.get_json()["results"][0]
        assert "result" not in result and message in result["error"]
    assert llm.calls == 1


def test_refused_connection_is_transient_and_reported(make_client: Any) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    client = make_client(llm_api_base=base, llm_retry_max_wait=0.1, predict_deadline=60)
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "x"}}]}
    started = time.monotonic()
    response = client.post("/predict", json=body)
    # LLM_MAX_RETRIES times (not until the deadline: a server that is down fails every task), then named
    # for what it is: no "HTTP 500". Five refused connections and 0.1 s waits take far less than the deadline.
    # Every task of the request failed for it: one 502 says so, with the fix.
    assert time.monotonic() - started < 30
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["code"] == "model_unreachable"
    assert error["message"].startswith("the model server cannot be reached: all 1 tasks failed")
    assert (f"first error: cannot connect to the model server at {base} (connection refused): is it running, and is "
            "LLM_API_BASE the address") in error["message"]
    assert "HTTP 500" not in error["message"]
    assert "(gave up after 5 attempts: LLM_MAX_RETRIES=4)" in error["message"]


def test_deadline_returns_finished_tasks_and_the_next_request_pays_nothing_twice(
    make_client: Any, llm: FakeLLMServer
) -> None:
    # One task answered at once, the others 2 s after they are asked, past the 1.5 s deadline whatever the load
    # (was: all answered after 1 s, against a deadline of 1.6 s, which a busy machine missed for every task).
    load_litellm()  # not in the first task's time: a `serve` worker's warm-up imports it before any request
    llm.add_rule("task number 0", Reply(json={"sentiment": "Negative"}))
    llm.set_default(Reply(json={"sentiment": "Negative"}, delay=2.0))
    client = make_client(llm_concurrency=2, predict_deadline=1.5)
    first = client.post("/predict", json=_batch(6)).get_json()["results"]
    assert [i for i, r in enumerate(first) if "result" in r] == [0]  # results come in the tasks' order
    assert all("deadline" in r["error"] for r in first if "result" not in r)
    second = client.post("/predict", json={**_batch(6)}).get_json()["results"]
    deadline = time.monotonic() + 60
    while len([r for r in second if "result" in r]) < 6:
        assert time.monotonic() < deadline, second
        time.sleep(0.5)
        second = client.post("/predict", json=_batch(6)).get_json()["results"]
    assert _choices(second) == [["Negative"]] * 6
    assert llm.count(200) == 6  # nothing answered before was asked again


def test_same_batch_twice_makes_no_new_calls(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client = make_client()
    first = client.post("/predict", json=_batch(10)).get_json()
    calls = llm.calls
    second = client.post("/predict", json=_batch(10)).get_json()
    assert calls == 10 and llm.calls == 10
    assert second == first


def test_failed_validation_is_not_cached(make_client: Any, llm: FakeLLMServer) -> None:
    llm.add_rule("hard", Reply(json={"sentiment": "Wonderful"}), times=2)
    llm.add_rule("hard", Reply(json={"sentiment": "Positive"}))
    client = make_client()
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "hard"}}]}
    assert "result" not in client.post("/predict", json=body).get_json()["results"][0]
    assert "result" in client.post("/predict", json=body).get_json()["results"][0]
    assert llm.calls == 3


def test_identical_concurrent_tasks_make_one_call(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}, delay=0.3))
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": i, "data": {"text": "same text"}} for i in range(4)]}
    results = make_client().post("/predict", json=body).get_json()["results"]
    assert _choices(results) == [["Neutral"]] * 4
    assert llm.calls == 1


def test_concurrent_requests_share_the_process_wide_limit(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}, delay=0.1, gate=3))  # held until 3 are in flight
    client = make_client(llm_concurrency=3)
    outputs: list[Any] = []
    def post(prefix: str, first: int) -> None:
        outputs.append(client.post("/predict", json=_batch(6, prefix, first)))

    threads = [threading.Thread(target=post, args=args) for args in (("alpha", 0), ("beta", 100))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(_choices(o.get_json()["results"]) == [["Neutral"]] * 6 for o in outputs)
    assert llm.max_in_flight_seen <= 3  # the bound under test; the gate makes the limit itself reached


def test_a_consumers_heartbeat_is_stored_before_its_workers_can_claim_a_task(
    make_settings: Callable[..., Any]
) -> None:
    """Another process's recovery queues again a task running under an owner without a fresh heartbeat: a consumer
    whose workers claimed tasks before its first heartbeat was written had them run twice (the model paid twice;
    9 calls for 8 tasks in a test of processes sharing one cache, now and then, on a busy machine)."""
    from llm_backend.engine.jobs import current_consumer
    from llm_backend.services import build_services

    services = build_services(make_settings())
    store, beat = services.job_store, services.job_store.heartbeat
    thread_may_beat = threading.Event()

    def heartbeat(consumer: str) -> None:  # the heartbeat thread has not had its turn yet (a busy host)
        if threading.current_thread().name == "llm-job-heartbeat":
            thread_may_beat.wait(30)
        beat(consumer)

    store.heartbeat = heartbeat  # type: ignore[method-assign]
    try:
        assert services.consumers.start()
        assert current_consumer() in store.consumers()  # written before start() returned and a worker ran
    finally:
        thread_may_beat.set()
        services.close()


@pytest.mark.redis
def test_cache_is_shared_by_replicas_through_redis(make_client: Any, llm: FakeLLMServer, redis_url: str,
                                                   tmp_path: Path) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    replica_a = make_client(cache_url=redis_url, cache_dir=tmp_path / "a")
    replica_b = make_client(cache_url=redis_url, cache_dir=tmp_path / "b")
    first = replica_a.post("/predict", json=_batch(6)).get_json()
    assert replica_b.post("/predict", json=_batch(6)).get_json() == first
    assert llm.calls == 6


def test_cache_can_be_turned_off(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client = make_client(cache_enabled=False)
    client.post("/predict", json=_batch(3))
    client.post("/predict", json=_batch(3))
    assert llm.calls == 6


def test_a_twin_that_finished_between_the_cache_read_and_the_flight_is_not_paid_twice(
    make_settings: Callable[..., Any], llm: FakeLLMServer
) -> None:
    """Task B reads the cache (a miss) while its identical twin A is still asking; A ends and caches its answer
    before B joins A's flight. B must take A's answer from the cache, not pay for the same request again."""
    from llm_backend.core.config import parse_label_config
    from llm_backend.engine.job import PredictionJob
    from llm_backend.services import build_services

    llm.set_default(Reply(json={"sentiment": "Positive"}))
    predictor = build_services(make_settings()).predictor
    config = parse_label_config(CHOICES_CONFIG)
    twin = {"id": 1, "data": {"text": "the same words"}}
    read = predictor.cache.get
    b_missed, a_done = threading.Event(), threading.Event()

    def get(key: str) -> Any:
        value = read(key)
        if threading.current_thread().name == "b" and not b_missed.is_set():
            b_missed.set()  # B's first read: a miss, A still asking
            assert a_done.wait(10)  # ...and A finishes before B goes on
        return value

    predictor.cache.get = get  # type: ignore[method-assign]
    outcomes: dict[str, Any] = {}

    def run(name: str) -> None:
        outcomes[name] = predictor.predict(PredictionJob(config, None, twin))

    b = threading.Thread(target=run, args=("b",), name="b")
    b.start()
    assert b_missed.wait(10)
    run("a")
    a_done.set()
    b.join(10)
    assert (outcomes["a"].status, outcomes["b"].status) == ("ok", "cached")
    assert outcomes["b"].usage.calls == 0
    assert llm.calls == 1
