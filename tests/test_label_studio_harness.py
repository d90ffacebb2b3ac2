"""Smoke test of testkit/label_studio.py against a real Label Studio 1.23.2.

The ML backend here is a throwaway stand-in, so a failure points at the harness (or at
Label Studio's behaviour changing), never at llm_backend.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.label_studio import LabelStudio, LabelStudioError, start_label_studio

pytestmark = pytest.mark.label_studio

LABEL_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text" choice="single">'
    '<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>'
    "</Choices></View>"
)
POSITIVE = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]


class StubBackend:
    """The least an ML backend must answer, recording every request LS makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stub.calls.append(("GET", self.path, None))
                self._answer({"status": "UP"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                stub.calls.append(("POST", self.path, body))
                if self.path == "/setup":
                    self._answer({"model_version": "t1"})
                elif self.path == "/predict":
                    item = {"result": POSITIVE, "score": 0.5, "model_version": "t1"}
                    self._answer({"results": [item for _ in body["tasks"]]})
                else:
                    self._answer({})

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's captured output for assertions that fail

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posts(self, path: str) -> list[Any]:
        return [body for method, call_path, body in self.calls if method == "POST" and call_path == path]

    def __enter__(self) -> StubBackend:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def ls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    with start_label_studio(tmp_path_factory.mktemp("ls")) as server:
        print(f"Label Studio up in {server.startup_seconds:.1f} s at {server.url}")
        yield server


@pytest.fixture
def backend() -> Iterator[StubBackend]:
    with StubBackend() as stub:
        yield stub


def test_import_connect_predict_annotate(ls: LabelStudio, backend: StubBackend) -> None:
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[step] = now - clock
        clock = now

    project = ls.create_project("harness smoke", LABEL_CONFIG)
    lap("create_project")
    task_ids = ls.import_tasks(project, [{"text": "great"}, {"text": "awful"}, {"text": "fine"}])
    lap("import_tasks")
    assert len(task_ids) == 3
    listed = ls.list_tasks(project, page_size=2)  # 2 pages: exercises pagination
    lap("list_tasks")
    assert [task["id"] for task in listed] == task_ids
    assert [task["data"]["text"] for task in listed] == ["great", "awful", "fine"]

    ml = ls.connect_ml_backend(project, backend.url, is_interactive=True)
    lap("connect_ml_backend")
    assert ("GET", "/health", None) in backend.calls
    setup = backend.posts("/setup")
    assert setup and setup[0]["schema"] == LABEL_CONFIG
    assert ls.get_ml_backend(ml)["model_version"] == "t1"

    answer = ls.retrieve_predictions(project, task_ids)
    lap("retrieve_predictions")
    assert answer["processed_items"] == 3
    # Synchronous: the predictions are there without waiting.
    predictions = ls.predictions(project)
    lap("predictions")
    assert sorted(p["task"] for p in predictions) == task_ids
    assert {p["model_version"] for p in predictions} == {"t1"}
    assert all(p["result"] == POSITIVE and p["score"] == 0.5 for p in predictions)
    [batch] = backend.posts("/predict")
    assert [task["id"] for task in batch["tasks"]] == task_ids
    assert batch["params"]["context"] is None
    assert ls.get_task(task_ids[0])["predictions"][0]["model_version"] == "t1"

    # Same model version: LS must not ask again.
    ls.retrieve_predictions(project, task_ids)
    assert len(backend.posts("/predict")) == 1

    interactive = ls.interactive_annotating(ml, task_ids[0], {"result": []})
    lap("interactive_annotating")
    assert interactive["data"]["result"] == POSITIVE
    assert backend.posts("/predict")[-1]["params"]["context"] == {"result": []}

    annotation = ls.create_annotation(task_ids[1], POSITIVE)
    lap("create_annotation")
    assert annotation["task"] == task_ids[1]
    deadline = time.monotonic() + 10
    while not backend.posts("/webhook") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend.posts("/webhook")[0]["action"] == "ANNOTATION_CREATED"
    print("step timings (s):", {step: round(seconds, 2) for step, seconds in timings.items()})


def test_unreachable_backend_is_refused(ls: LabelStudio, backend: StubBackend) -> None:
    project = ls.create_project("unreachable", LABEL_CONFIG)
    backend.server.server_close()  # the port is now refused
    with pytest.raises(LabelStudioError) as caught:
        ls.connect_ml_backend(project, backend.url)
    assert caught.value.status_code == 400
    assert "Can't connect to ML backend" in caught.value.json()["validation_errors"]["non_field_errors"][0]


def test_legacy_token_toggle(ls: LabelStudio) -> None:
    try:
        assert ls.set_legacy_tokens(False)["legacy_api_tokens_enabled"] is False
        denied = requests.get(f"{ls.url}/api/projects", headers={"Authorization": f"Token {ls.token}"}, timeout=30)
        assert denied.status_code == 401
        assert ls.jwt_settings()["legacy_api_tokens_enabled"] is False  # the client moved to its session
    finally:
        ls.set_legacy_tokens(True)
    allowed = requests.get(f"{ls.url}/api/projects", headers={"Authorization": f"Token {ls.token}"}, timeout=30)
    assert allowed.status_code == 200


def test_personal_access_tokens_only(tmp_path: Path) -> None:
    with start_label_studio(tmp_path, legacy_tokens=False) as pat_ls:
        print(f"second Label Studio up in {pat_ls.startup_seconds:.1f} s")
        assert pat_ls.jwt_settings() == {"api_tokens_enabled": True, "legacy_api_tokens_enabled": False}
        first = pat_ls.create_personal_access_token()
        pat = pat_ls.create_personal_access_token()  # the 409 path: revokes `first`
        access = pat_ls.exchange_personal_access_token(pat)
        projects = f"{pat_ls.url}/api/projects"

        bearer = requests.get(projects, headers={"Authorization": f"Bearer {access}"}, timeout=30)
        assert bearer.status_code == 200, bearer.text

        legacy = requests.get(projects, headers={"Authorization": f"Token {pat_ls.token}"}, timeout=30)
        assert legacy.status_code == 401
        assert "legacy token authentication has been disabled" in legacy.json()["detail"]

        # The PAT itself is no bearer token, and a revoked one no longer refreshes.
        raw = requests.get(projects, headers={"Authorization": f"Bearer {pat}"}, timeout=30)
        assert raw.status_code == 401
        with pytest.raises(LabelStudioError) as caught:
            pat_ls.exchange_personal_access_token(first)
        assert caught.value.status_code == 401
        process = pat_ls.process
    assert process is not None and process.poll() is not None
