"""What the offline commands share: exit codes, the input error, and reading settings, configs and task files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ..core.config import LabelConfig, parse_label_config
from ..errors import LLMBackendError
from ..offline.files import TaskFileError, read_tasks
from ..redact import redact
from ..settings import Settings, load_settings

INTERRUPTED = 130


class InputError(click.ClickException):
    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))  # Label Studio and providers may echo credentials


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except LLMBackendError as exc:
        raise InputError(exc.message) from None


def _logging(verbose: bool, settings: Settings) -> None:
    if logging.getLogger().handlers:
        return  # whoever runs the command in-process (a test runner, a script) owns logging
    # Failed tasks are grouped in the summary; one log line each would bury the progress bar.
    level = settings.log_level if verbose else "ERROR"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("llm_backend").setLevel(level)
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


def _config(path: Path) -> LabelConfig:
    try:
        config = parse_label_config(path.read_text(encoding="utf-8"))
    except (LLMBackendError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {getattr(exc, 'message', exc)}") from None
    if not config.controls:
        reasons = "; ".join(f"{s.name} <{s.tag}>: {s.reason}" for s in config.skipped)
        raise InputError(f"{path}: no control this backend can predict ({reasons})")
    return config


def _tasks(path: Path) -> list[dict[str, Any]]:
    try:
        return read_tasks(path)
    except TaskFileError as exc:
        raise InputError(exc.message) from None
