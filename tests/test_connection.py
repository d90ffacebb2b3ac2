"""Label Studio connection: both token kinds, task media behind Label Studio auth, the SSRF guard,
basic auth and the webhook secret, and `doctor`. Real Label Studio where it matters."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llm_backend.engine.fetch import MediaFetcher
from llm_backend.errors import TaskError
from llm_backend.label_studio import LabelStudioAPIError, LabelStudioClient, token_kind
from llm_backend.models.client import load_litellm
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, REPO, BackendProcess, cli, free_port

URL_CONFIG = """<View><Text name="text" value="$text" valueType="url"/>
<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("token", "kind"),
    [("0123456789abcdef0123456789abcdef01234567", "legacy"), (_jwt({"token_type": "refresh", "exp": 9}),
                                                              "personal_access_token"),
     ("not.a.jwt", "legacy")],
    ids=["legacy", "pat", "dotted-garbage"],
)
def test_token_kind(token: str, kind: str) -> None:
    assert token_kind(token) == kind


@pytest.fixture
def file_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A plain web server with a text file, a redirect to a metadata address, and a big file."""
    seen: dict[str, Any] = {"headers": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen["headers"].append(dict(self.headers))
            if self.path == "/doc.txt":
                body = b"Plain web text about a lovely day."
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                body = b""
            elif self.path == "/big.txt":
                body = b"x" * 5000
                self.send_response(200)
            else:
                body = b"missing"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def _fetcher(**kwargs: Any) -> MediaFetcher:
    values: dict[str, Any] = {"label_studio": None, "label_studio_url": None, "allowed_hosts": ("127.0.0.1",),
                              "max_bytes": 1000, "timeout": 5}
    values.update(kwargs)
    return MediaFetcher(**values)


def test_fetch_from_an_allowed_host_sends_no_credentials(file_server: tuple[str, dict[str, Any]]) -> None:
    url, seen = file_server
    assert _fetcher().fetch_text(f"{url}/doc.txt", 1) == "Plain web text about a lovely day."
    assert "Authorization" not in seen["headers"][0]


@pytest.mark.parametrize(
    ("value", "allowed", "message"),
    [
        ("http://169.254.169.254/latest/meta-data/", ("*",), "link-local"),
        ("http://[fe80::1]/x", ("*",), "link-local"),
        ("http://example.invalid/x.txt", (), "neither Label Studio's host nor in ALLOWED_MEDIA_HOSTS"),
        ("file:///etc/passwd", ("*",), "only http"),
        ("/data/upload/1/x.txt", (), "set LABEL_STUDIO_URL"),
        ("s3://bucket/key.txt", (), "cloud storage URI"),
    ],
    ids=["metadata-ip", "ipv6-link-local", "not-allowed", "file-scheme", "ls-path-without-url", "cloud-without-url"],
)
def test_ssrf_guard(value: str, allowed: tuple[str, ...], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        _fetcher(allowed_hosts=allowed).fetch(value, 1)


def test_redirect_to_metadata_is_refused_and_size_is_bounded(file_server: tuple[str, dict[str, Any]]) -> None:
    url, _ = file_server
    with pytest.raises(TaskError, match="link-local"):
        _fetcher(allowed_hosts=("127.0.0.1", "169.254.169.254")).fetch(f"{url}/redirect", 1)
    with pytest.raises(TaskError, match="MEDIA_MAX_BYTES=1000"):
        _fetcher().fetch(f"{url}/big.txt", 1)
    with pytest.raises(TaskError, match=r"HTTP 404"):
        _fetcher().fetch(f"{url}/nope.txt", 1)


def test_cloud_uri_goes_through_label_studio_resolve() -> None:
    fetcher = _fetcher(label_studio_url="http://ls.example:8080")
    resolved = fetcher.resolve("s3://bucket/dir/a.txt", 42)
    encoded = base64.urlsafe_b64encode(b"s3://bucket/dir/a.txt").decode()
    assert resolved == f"http://ls.example:8080/tasks/42/resolve/?fileuri={encoded}"
    assert fetcher.resolve("/data/upload/3/a.txt", 1) == "http://ls.example:8080/data/upload/3/a.txt"


def test_credentials_are_never_sent_elsewhere() -> None:
    client = LabelStudioClient("http://127.0.0.1:1", "0" * 40)
    with pytest.raises(LabelStudioAPIError, match="refusing to send"):
        client.request("GET", "http://127.0.0.2:1/api/projects")


def test_basic_auth_and_webhook_secret(make_client: Any, llm: FakeLLMServer) -> None:
    client = make_client(basic_auth_user="ls", basic_auth_pass="s3cret-pass", webhook_secret="hook-secret")
    assert client.get("/health").status_code == 200
    setup = {"schema": CHOICES_CONFIG, "project": "1.1"}
    assert client.post("/setup", json=setup).status_code == 401
    wrong = base64.b64encode(b"ls:nope").decode()
    assert client.post("/setup", json=setup, headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    good = base64.b64encode(b"ls:s3cret-pass").decode()
    assert client.post("/setup", json=setup, headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 401
    hooked = client.post("/webhook", json={"action": "X"}, headers={"X-Webhook-Secret": "hook-secret"})
    assert hooked.status_code == 200


def test_doctor_passes_against_the_test_server(llm: FakeLLMServer, tmp_path: Path) -> None:
    config = tmp_path / "config.xml"
    config.write_text(CHOICES_CONFIG)
    env = {"LLM_MODEL": "openai/test-model", "LLM_API_BASE": llm.base_url, "LLM_API_KEY": "sk-doctor-secret",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = cli(["doctor", "--config", str(config)], env)
    assert out.exit_code == 0, out.stdout + out.stderr
    assert "[PASS] model reachable" in out.stdout
    # The test server enforces a schema sent as response_format and answers {} otherwise.
    assert "[PASS] output mode schema: followed: a valid answer, read as sent" in out.stdout
    assert "[WARN] output mode json: not followed: the JSON object is not valid: " in out.stdout
    assert "[WARN] output mode prompt: not followed: " in out.stdout
    assert "[PASS] LLM_OUTPUT_MODE: LLM_OUTPUT_MODE=schema suits this model" in out.stdout
    assert "[WARN] context window: unknown for openai/test-model" in out.stdout and "LLM_CONTEXT_TOKENS" in out.stdout
    assert "sentiment <choices> -> text (data.text)" in out.stdout
    assert "sk-doctor-secret" not in out.stdout + out.stderr
    assert llm.requests[0]["max_tokens"] == 1


def test_doctor_fails_with_fixes(llm: FakeLLMServer, tmp_path: Path) -> None:
    llm.set_default(Reply(content="I cannot do JSON, sorry"))
    config = tmp_path / "config.xml"
    config.write_text('<View><Text name="t" value="$t"/><Choices name="c" toName="body"><Choice value="A"/>'
                      "</Choices></View>")
    env = {"LLM_MODEL": "openai/test-model", "LLM_API_BASE": llm.base_url, "LLM_API_KEY": "sk-x",
           "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}", "LABEL_STUDIO_API_KEY": "tok-secret-123",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = cli(["doctor", "--config", str(config)], env)
    assert out.exit_code == 1
    assert "[FAIL] output mode schema: not followed: the reply did not contain a JSON object" in out.stdout
    assert "[FAIL] LLM_OUTPUT_MODE: openai/test-model followed no output mode" in out.stdout
    assert "[FAIL] Label Studio reachable" in out.stdout
    assert "[FAIL] label config" in out.stdout and "no object tag" in out.stdout
    assert "tok-secret-123" not in out.stdout + out.stderr


def test_doctor_times_the_model_call_not_the_litellm_import(
    llm: FakeLLMServer, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: "answered in 6 s", most of it `import litellm`. A slow first import no longer counts."""
    from llm_backend.offline import doctor

    def slow_import() -> Any:
        time.sleep(2.0)
        return load_litellm()

    monkeypatch.setattr(doctor, "load_litellm", slow_import)
    started = time.monotonic()
    reachable, *_output_modes = list(doctor.check_llm(make_settings()))
    whole = time.monotonic() - started
    answered = float(re.fullmatch(rf"openai/test-model at {re.escape(llm.base_url)} answered in (\d+\.\d+) s",
                                  reachable.detail).group(1))  # type: ignore[union-attr]
    assert reachable.status == "pass" and answered <= whole - 2.0


@pytest.mark.parametrize(("url", "kind", "in_container", "fix"), [
    ("http://localhost:8080", "refused", False,
     "start Label Studio (label-studio start), or set LABEL_STUDIO_URL to the address this machine reaches it at"),
    ("http://localhost:8080", "refused", True,
     "start Label Studio (label-studio start), or set LABEL_STUDIO_URL to the address this machine reaches it at. "
     "If Label Studio runs on the host or in another container: this backend runs in a container (/.dockerenv "
     "exists) and LABEL_STUDIO_URL points at localhost, which is this container itself; use the compose service "
     "name (http://label-studio:8080) or http://host.docker.internal:8080"),
    ("http://ls.internal:8080", "refused", True,
     "start Label Studio (label-studio start), or set LABEL_STUDIO_URL to the address this machine reaches it at"),
    ("http://label-studo:8080", "no_such_host", True,
     "check the host name in LABEL_STUDIO_URL; a docker compose service name (label-studio) resolves only inside "
     "that compose network"),
], ids=["down-on-the-host", "down-or-container", "remote-host-down", "typo"])
def test_doctor_says_which_checks_led_to_a_container_guess(url: str, kind: str, in_container: bool, fix: str) -> None:
    """Was: a Label Studio that was merely down got "use the Label Studio service name" inside any container."""
    from llm_backend.netcheck import Unreachable
    from llm_backend.offline.doctor import label_studio_hint

    assert label_studio_hint(url, Unreachable(kind, ""), in_container) == fix


def test_doctor_names_a_refused_label_studio(make_settings: Callable[..., Any]) -> None:
    from llm_backend.netcheck import Unreachable
    from llm_backend.offline.doctor import check_label_studio, label_studio_hint

    port = free_port()
    [check] = check_label_studio(make_settings(label_studio_url=f"http://127.0.0.1:{port}"))
    assert (check.status, check.detail) == ("fail", f"http://127.0.0.1:{port}: connection refused: nothing listens "
                                                    f"on 127.0.0.1:{port}")
    assert check.fix == label_studio_hint(f"http://127.0.0.1:{port}", Unreachable("refused", ""),
                                          Path("/.dockerenv").exists())


def test_doctor_lists_every_predictable_control_from_the_registry(tmp_path: Path) -> None:
    from llm_backend.core.controls import SPECS
    from llm_backend.offline.doctor import check_config

    config = tmp_path / "config.xml"
    config.write_text('<View><Image name="i" value="$image"/><PolygonLabels name="p" toName="i">'
                      '<Label value="Car"/></PolygonLabels></View>')
    checks = list(check_config(config))
    assert (checks[0].status, checks[0].detail) == ("fail", "predicts: nothing")
    assert checks[0].fix.startswith("add a control this backend predicts: on <Text>: "
                                    "Choices, Labels, TextArea, Rating, Number, DateTime, Taxonomy")
    assert "on <List>: Choices, TextArea, Rating, Number, DateTime, Taxonomy, Pairwise, Ranker" in checks[0].fix
    assert "on <Image>: Choices, TextArea, Rating, Number, DateTime, Taxonomy, RectangleLabels" in checks[0].fix
    assert "on <Chat>: Choices, TextArea, Rating, Number, DateTime, Taxonomy, Pairwise, Chat (toName naming " \
        "itself: the conversation written), perRegion Choices, Rating, TextArea... (each message)" in checks[0].fix
    for spec in SPECS.values():  # a new control appears in the hint by being registered
        assert spec.listed_as in checks[0].fix


def test_doctor_on_the_demo_model_says_it_is_one(make_settings: Callable[..., Any]) -> None:
    from llm_backend.offline.doctor import check_llm

    [check] = check_llm(make_settings(llm_model="demo"))
    assert check.status == "warn" and check.detail.startswith("LLM_MODEL=demo answers from simple rules, not a "
                                                              "language model")


# --- real Label Studio ---------------------------------------------------------------------------


@pytest.fixture
def local_file_project(label_studio: Any) -> tuple[int, list[int]]:
    docs = label_studio.files_root / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "review.txt").write_text("A file-backed review: what a lovely, lovely product.")
    project = label_studio.create_project("media e2e", URL_CONFIG)
    label_studio.request("POST", "/api/storages/localfiles",
                         json={"project": project, "path": str(docs), "use_blob_urls": True, "title": "docs"})
    tasks = label_studio.import_tasks(project, [{"text": "/data/local-files/?d=docs/review.txt"}])
    return project, tasks


@pytest.mark.label_studio
def test_task_text_behind_label_studio_auth(label_studio: Any, local_file_project: tuple[int, list[int]],
                                            start_backend: Callable[..., BackendProcess],
                                            llm: FakeLLMServer) -> None:
    llm.add_rule("lovely, lovely product", Reply(json={"sentiment": "Positive"}))
    project, tasks = local_file_project
    backend = start_backend(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, tasks)
    [prediction] = label_studio.predictions(project)
    assert prediction["result"][0]["value"] == {"choices": ["Positive"]}
    assert "A file-backed review" in llm.requests[0]["messages"][-1]["content"]


@pytest.mark.label_studio
def test_missing_token_is_a_per_task_error_with_the_fix(label_studio: Any, make_client: Any,
                                                        local_file_project: tuple[int, list[int]],
                                                        llm: FakeLLMServer) -> None:
    _project, tasks = local_file_project
    client = make_client(label_studio_url=label_studio.url)
    body = {"label_config": URL_CONFIG,
            "tasks": [{"id": tasks[0], "data": {"text": "/data/local-files/?d=docs/review.txt"}}]}
    [result] = client.post("/predict", json=body).get_json()["results"]
    assert "result" not in result
    assert "/data/local-files/?d=docs/review.txt" in result["error"] and "HTTP 401" in result["error"]
    assert "LABEL_STUDIO_API_KEY" in result["error"]
    assert llm.calls == 0


@pytest.mark.label_studio
def test_personal_access_token_with_legacy_tokens_disabled(label_studio: Any, make_client: Any,
                                                           local_file_project: tuple[int, list[int]],
                                                           llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    _project, tasks = local_file_project
    pat = label_studio.create_personal_access_token()
    label_studio.set_legacy_tokens(False)
    try:
        legacy = LabelStudioClient(label_studio.url, label_studio.token)
        with pytest.raises(LabelStudioAPIError, match="401"):
            legacy.whoami()
        client = LabelStudioClient(label_studio.url, pat)
        assert client.kind == "personal_access_token"
        assert client.whoami()["email"] == label_studio.username
        client._access = "expired-or-garbage"  # the next call gets a 401, refreshes once and succeeds
        assert client.whoami()["email"] == label_studio.username
        app = make_client(label_studio_url=label_studio.url, label_studio_api_key=pat)
        body = {"label_config": URL_CONFIG,
                "tasks": [{"id": tasks[0], "data": {"text": "/data/local-files/?d=docs/review.txt"}}]}
        [result] = app.post("/predict", json=body).get_json()["results"]
        assert result["result"][0]["value"] == {"choices": ["Positive"]}
    finally:
        label_studio.set_legacy_tokens(True)


@pytest.mark.label_studio
def test_doctor_against_real_label_studio_names_the_token_kind(label_studio: Any, llm: FakeLLMServer) -> None:
    from llm_backend.offline.doctor import check_label_studio
    from llm_backend.settings import Settings

    def run(key: str) -> list[Any]:
        settings = Settings(llm_model="openai/test-model", label_studio_url=label_studio.url,
                            label_studio_api_key=key)
        return list(check_label_studio(settings))

    reachable, legacy = run(label_studio.token)
    assert reachable.status == "pass" and legacy.status == "pass"
    assert legacy.detail == f"Legacy Token valid for {label_studio.username}"
    pat = label_studio.create_personal_access_token()
    _reachable, personal = run(pat)
    assert personal.status == "pass" and personal.detail.startswith("Personal Access Token valid")
    _reachable, wrong = run("0" * 40)
    assert wrong.status == "fail" and "401" in wrong.detail and "0" * 40 not in wrong.detail


def test_doctor_with_a_routing_file(llm: FakeLLMServer, tmp_path: Path) -> None:
    (tmp_path / "router.yaml").write_text(
        f"model_list:\n  - model_name: local\n    litellm_params:\n      model: openai/test-model\n"
        f"      api_base: {llm.base_url}\n      api_key: sk-route\n    model_info:\n      max_input_tokens: 16384\n")
    env = {"LLM_MODEL": "local", "LLM_ROUTER_CONFIG": str(tmp_path / "router.yaml"),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # A process of its own: LiteLLM's router writes the routing file's model_info into LiteLLM's global price map,
    # which would price test-model for the tests that run after it in this process.
    out = subprocess.run([sys.executable, "-m", "llm_backend", "doctor"], env={**os.environ, **env},
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "[PASS] model reachable: local (routing file)" in out.stdout, out.stdout + out.stderr
    assert "[PASS] output mode schema: followed" in out.stdout
    assert "[PASS] context window: local's context window (16,384 tokens, from model_info in LLM_ROUTER_CONFIG)" \
        in out.stdout
