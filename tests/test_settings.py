from __future__ import annotations

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
