"""Label Studio on the same machine as the backend, as the README's "Label Studio on this machine" has it: a real
Label Studio 1.23.2 started with its own defaults refuses `http://localhost:PORT` and `doctor` says why and which
two settings fix it; started with them, the model connects and its webhook is created. `doctor` names the
token's kind from Label Studio's own answer, and notices LABEL_STUDIO_URL pointing at the backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llm_backend.cli.main import main
from testkit.app_server import AppServer
from testkit.label_studio import LabelStudioError, start_label_studio
from testkit.llm_server import FakeLLMServer

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
BOTH = "ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false"
# The harness sets both to false for every other test; None leaves them unset: Label Studio's defaults.
DEFAULTS: dict[str, str | None] = {"LABEL_STUDIO_SSRF_PROTECTION_ENABLED": None, "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": None,
                                   "SSRF_PROTECTION_ENABLED": None, "ML_BLOCK_LOCAL_IP": None}


def doctor(label_studio_url: str, key: str, port: int, *args: str) -> tuple[int, str]:
    env = {"LLM_MODEL": "demo", "LABEL_STUDIO_URL": label_studio_url, "LABEL_STUDIO_API_KEY": key,
           "PORT": str(port), "LLM_API_KEY": "", "LLM_API_BASE": ""}
    result = CliRunner().invoke(main, ["doctor", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_doctor_notices_label_studio_url_pointing_at_the_backend(
    start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    backend = start_app()
    code, out = doctor(backend.url, "abc123", 9090)
    assert code == 1
    assert f"[FAIL] Label Studio reachable: {backend.url} is an ML backend (LLMBackend), not Label Studio" in out
    assert "fix: set LABEL_STUDIO_URL to Label Studio's address" in out


@pytest.mark.label_studio
def test_a_default_label_studio_refuses_localhost_and_doctor_says_which_settings(
    label_studio_executable: Path, start_app: Callable[..., AppServer], llm: FakeLLMServer, tmp_path: Path
) -> None:
    backend = start_app()
    url = f"http://localhost:{backend.port}"
    with start_label_studio(tmp_path, extra_env=DEFAULTS) as ls:
        project = ls.create_project("defaults", CONFIG)
        with pytest.raises(LabelStudioError) as refused:
            ls.connect_ml_backend(project, url)
        assert refused.value.status_code == 403 and "reserved network address" in refused.value.body
        assert ls.request("GET", f"/api/ml?project={project}") == []

        code, out = doctor(ls.url, ls.token, backend.port)
    assert code == 1
    assert f"[PASS] Label Studio reachable: {ls.url}" in out
    assert f"[PASS] Label Studio token: Legacy Token valid for {ls.username}" in out
    assert (f"[FAIL] Label Studio -> backend: Label Studio refuses {url} (POST /api/ml: HTTP 403 \"URL resolves to "
            "a reserved network address (block: 127.0.0.0/8)\"; POST /api/webhooks/: HTTP 403") in out
    assert f"fix: restart Label Studio with {BOTH} (both settings are needed" in out


@pytest.mark.label_studio
def test_with_only_ml_block_local_ip_off_doctor_names_the_other_setting(
    label_studio_executable: Path, start_app: Callable[..., AppServer], llm: FakeLLMServer, tmp_path: Path
) -> None:
    backend = start_app()
    # The bare name, as the README's command sets it (Label Studio also reads LABEL_STUDIO_<name>).
    with start_label_studio(tmp_path, extra_env={**DEFAULTS, "ML_BLOCK_LOCAL_IP": "false"}) as ls:
        code, out = doctor(ls.url, ls.token, backend.port)
    assert code == 1
    assert "POST /api/webhooks/: HTTP 403" in out and "POST /api/ml:" not in out
    assert "fix: restart Label Studio with SSRF_PROTECTION_ENABLED=false (both settings are needed" in out


@pytest.mark.label_studio
def test_with_both_settings_the_model_connects_with_its_webhook_and_doctor_passes(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    backend = start_app()
    url = f"http://localhost:{backend.port}"
    hooks_before = len(label_studio.request("GET", "/api/webhooks/"))
    code, out = doctor(label_studio.url, label_studio.token, backend.port)
    assert len(label_studio.request("GET", "/api/webhooks/")) == hooks_before  # doctor's probes created none
    assert f"[PASS] Label Studio -> backend: Label Studio accepts {url} as a model URL and for its webhook" in out
    assert code == 0, out
    project = label_studio.create_project("both settings", CONFIG)
    ml = label_studio.connect_ml_backend(project, url)
    assert label_studio.get_ml_backend(ml)["state"] == "CO"
    hooks = label_studio.request("GET", f"/api/webhooks/?project={project}")
    assert [hook["url"] for hook in hooks] == [f"{url}/webhook"]


@pytest.mark.label_studio
def test_the_status_page_shows_project_titles_from_label_studio(label_studio: Any, make_client: Callable[..., Any],
                                                                llm: FakeLLMServer) -> None:
    project = label_studio.create_project("Reviews ✓ 评论", CONFIG)
    client = make_client(llm_model="demo", label_studio_url=label_studio.url,
                         label_studio_api_key=label_studio.create_personal_access_token())
    body = {"label_config": CONFIG, "project": f"{project}.1", "tasks": [{"id": 1, "data": {"text": "good"}}]}
    assert client.post("/predict", json=body).status_code == 200
    [shown] = client.get("/jobs").get_json()["projects"]
    assert (shown["project"], shown["title"]) == (str(project), "Reviews ✓ 评论")
    assert f'<h2>Project {project}: <span data-metric="title">Reviews ✓ 评论</span></h2>' in \
        client.get("/").get_data(as_text=True)


@pytest.mark.label_studio
def test_doctor_names_the_token_kind_from_label_studios_answer(label_studio: Any, llm: FakeLLMServer) -> None:
    code, out = doctor(label_studio.url, "abc123", 9)
    assert code == 1
    assert "[FAIL] Label Studio token: Label Studio knows no such token (HTTP 401 \"Invalid token.\")" in out
    assert "Legacy Tokens may be disabled" not in out and "disabled" not in out

    pat = label_studio.create_personal_access_token()
    code, out = doctor(label_studio.url, pat, 9)
    assert "[PASS] Label Studio token: Personal Access Token valid for" in out
    legacy = label_studio.token
    label_studio.set_legacy_tokens(False)
    try:
        code, out = doctor(label_studio.url, legacy, 9)
    finally:
        label_studio.set_legacy_tokens(True)
    assert "[FAIL] Label Studio token: a Legacy Token, which this organization has disabled" in out
    assert "fix: create a Personal Access Token" in out


@pytest.mark.label_studio
def test_label_project_words_a_setup_failure_as_serve_does(label_studio: Any, tmp_path: Path,
                                                           llm: FakeLLMServer) -> None:
    project = label_studio.create_project("label-project setup failure", CONFIG)
    label_studio.import_tasks(project, [{"text": "good"}, {"text": "bad"}])
    env = {"LLM_MODEL": "gpt-5o", "LLM_API_KEY": "", "LLM_API_BASE": "", "LLM_MAX_RETRIES": "0",
           "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "CACHE_DIR": str(tmp_path / "cache"), "PROMPTS_DIR": str(tmp_path / "prompts")}
    result = CliRunner().invoke(main, ["label-project", "--project", str(project), "--no-progress"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "LLM_MODEL=gpt-5o: LiteLLM knows no provider for 'gpt-5o'; write it as provider/model" in result.output
    assert "cause: LiteLLM knows no provider for the model name; fix: write LLM_MODEL as provider/model" \
        in result.output
    assert "2 of 2 tasks failed; running the command again will not help until the cause above is fixed" \
        in result.output and "run the same command again" not in result.output
