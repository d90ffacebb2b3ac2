from __future__ import annotations

from pathlib import Path

import pytest

from llm_backend.errors import SettingsError
from llm_backend.settings import load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("PORT", "LLM_TIMEOUT", "LLM_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    settings = load_settings()
    assert settings.port == 9090
    assert settings.llm_timeout == 60
    assert settings.llm_model == "openai/gpt-4o-mini"


def test_environment_is_read_and_empty_strings_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_MODEL", "hosted_vllm/qwen")
    monkeypatch.setenv("LLM_API_BASE", "http://gpu:8000/v1/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "")
    monkeypatch.setenv("LLM_API_KEY", "  ")
    monkeypatch.setenv("ALLOWED_MEDIA_HOSTS", "cdn.example.com, *.amazonaws.com")
    monkeypatch.setenv("log_level", "debug")
    settings = load_settings()
    assert settings.llm_model == "hosted_vllm/qwen"
    assert settings.api_base == "http://gpu:8000/v1"
    assert settings.label_studio_api_key is None and settings.llm_api_key is None
    assert settings.media_hosts == ("cdn.example.com", "*.amazonaws.com")
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "70000"), ("LLM_TIMEOUT", "0"), ("LLM_TEMPERATURE", "3"), ("LLM_CONCURRENCY", "many"),
     ("LOG_LEVEL", "LOUD"), ("CACHE_URL", "memcached://x"), ("LLM_API_BASE", "not a url"),
     ("LLM_OUTPUT_MODE", "xml")],
)
def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_secret_values_are_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_API_KEY", "sk-live-123")
    monkeypatch.setenv("BASIC_AUTH_PASS", "hunter2")
    settings = load_settings()
    assert "sk-live-123" not in repr(settings) and "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("workers", "concurrency", "cores", "processes"),
    [("auto", 8, 16, 1), ("auto", 32, 16, 1), ("AUTO", 33, 16, 2), ("auto", 64, 2, 2), ("auto", 512, 4, 4),
     ("auto", 64, 1, 1), ("3", 8, 2, 3)],
)
def test_workers_auto_follows_concurrency_and_cores(monkeypatch: pytest.MonkeyPatch, workers: str, concurrency: int,
                                                    cores: int, processes: int) -> None:
    """One process keeps about 32 model calls in flight (its CPU sets the pace of a fast provider); `auto` adds
    processes for more, never more than the cores this process may run on. A number is taken as it is."""
    monkeypatch.setattr("llm_backend.settings.cpu_cores", lambda: cores)
    monkeypatch.setenv("WORKERS", workers)
    monkeypatch.setenv("LLM_CONCURRENCY", str(concurrency))
    assert load_settings().worker_processes == processes


def test_workers_default_is_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKERS", raising=False)
    assert load_settings().workers == "auto"


@pytest.mark.parametrize("value", ["0", "65", "many"])
def test_bad_workers_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WORKERS", value)
    with pytest.raises(SettingsError, match="WORKERS"):
        load_settings()


def test_the_prediction_fingerprint_holds_what_files_say_never_where_they_are(tmp_path: Path) -> None:
    """Replicas started from two directories: PROMPTS_DIR differs as a path (its templates' contents are hashed per
    project by the jobs), a routing file counts by its contents."""
    routes = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for path in routes:
        path.write_text("model_list: []\n")
    one = load_settings(prompts_dir=tmp_path / "a", llm_router_config=routes[0])
    two = load_settings(prompts_dir=tmp_path / "b", llm_router_config=routes[1])
    assert one.prediction_fingerprint() == two.prediction_fingerprint()
    routes[1].write_text("model_list: [{model_name: x, litellm_params: {model: openai/x}}]\n")
    assert one.prediction_fingerprint() != two.prediction_fingerprint()
    assert (load_settings(llm_model="openai/a").prediction_fingerprint()
            != load_settings(llm_model="openai/b").prediction_fingerprint())
