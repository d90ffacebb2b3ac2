"""One typed settings object, read from the environment in one place.

Every field maps to the upper-case environment variable of the same name (`llm_model` ->
`LLM_MODEL`). An invalid value raises `SettingsError` naming the variable, so `serve` stops at
start instead of failing on the first prediction.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import SettingsError

# Model calls in flight that one worker process keeps up with: each costs it ~5-8 ms of CPU (LiteLLM's share
# most of it), so at a provider's 200 ms 32 calls keep a core busy (bench/batch.py).
CALLS_PER_WORKER = 32


def cpu_cores() -> int:
    """The CPU cores this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# What does not change an answer: how the process serves, where its stores are, and secrets.
NOT_IN_FINGERPRINT = frozenset({
    "host", "port", "workers", "threads", "log_level", "predict_deadline", "jobs_enabled", "max_request_bytes",
    "max_tasks_per_request", "llm_concurrency", "job_retention_hours", "second_click_grace",
    "cache_dir", "cache_url", "label_studio_url", "label_studio_api_key",
    "llm_api_key", "basic_auth_user", "basic_auth_pass", "webhook_secret",
})
# Files that shape an answer: what counts is their contents, never where they are (two replicas started from two
# directories, or two hosts, hold the same templates at different absolute paths). PROMPTS_DIR's templates are
# hashed per project by the prompt library (`PromptLibrary.fingerprint`), the routing file here.
BY_CONTENT = frozenset({"prompts_dir", "llm_router_config"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # The model
    llm_model: str = Field("openai/gpt-4o-mini", min_length=1)
    improve_model: str | None = None  # `llm-backend improve` asks this model for revised instructions (LLM_MODEL)
    llm_api_base: AnyHttpUrl | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout: float = Field(60.0, gt=0, le=3600)
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_max_tokens: int | None = Field(None, gt=0)
    # schema: JSON schema as response_format (OpenAI, vLLM, Ollama); json: JSON mode plus the
    # schema in the prompt; prompt: plain text with the schema in the prompt, parsed tolerantly.
    llm_output_mode: Literal["schema", "json", "prompt"] = "schema"
    llm_logprobs: Literal["auto", "on", "off"] = "auto"  # token log-probabilities for scores
    # Where a prediction's confidence comes from (engine/confidence.py): auto = log-probabilities when the reply
    # has them, else samples when CONFIDENCE_SAMPLES is set, else none.
    confidence: Literal["auto", "logprobs", "samples", "off"] = "auto"
    confidence_samples: int = Field(0, ge=0, le=20)  # k samples at CONFIDENCE_TEMPERATURE (0: unset; samples: 5)
    confidence_temperature: float = Field(1.0, gt=0, le=2)
    llm_vision: Literal["auto", "on", "off"] = "auto"  # whether LLM_MODEL can read images (auto: look it up)
    image_url_passthrough: bool = False  # send task image URLs to the model instead of the image bytes
    llm_concurrency: int = Field(8, ge=1, le=512)
    llm_max_retries: int = Field(4, ge=0, le=20)
    llm_retry_max_wait: float = Field(30.0, gt=0, le=600)
    # on: OpenAI, vLLM and Ollama models are called through LiteLLM's provider mapping without acompletion
    # (models/fastpath.py); off: every call is litellm.acompletion
    llm_fast_path: Literal["on", "off"] = "on"

    # Long texts (see engine/longtext.py): the context window of models LiteLLM's map does not know
    # (prompt and answer, in tokens), extra NER passes, and what the other controls do with the parts.
    llm_context_tokens: int | None = Field(None, ge=512, le=100_000_000)
    ner_passes: int = Field(1, ge=1, le=5)
    long_text_strategy: Literal["combine", "head_tail"] = "combine"

    # Routing (see models/router.py and engine/cascade.py)
    llm_router_config: Path | None = None  # LiteLLM Router YAML: model_list, router_settings
    llm_cascade: str = ""  # comma-separated model names, cheapest first; empty: no cascade
    cascade_min_score: float | None = Field(None, ge=0, le=1)

    @field_validator("llm_router_config", "cascade_min_score", mode="before")
    @classmethod
    def _routing_empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("llm_cascade")
    @classmethod
    def _cascade(cls, value: str) -> str:
        models = [name.strip() for name in value.split(",") if name.strip()]
        if models and (len(models) < 2 or len(set(models)) != len(models)):
            raise ValueError("must name at least two different models, cheapest first, e.g. local,gpt-4o-mini")
        return ",".join(models)

    @property
    def cascade_models(self) -> tuple[str, ...]:
        return tuple(self.llm_cascade.split(",")) if self.llm_cascade else ()

    # Serving
    host: str = "0.0.0.0"
    port: int = Field(9090, ge=1, le=65535)
    # gunicorn worker processes; `auto`: one per CALLS_PER_WORKER of LLM_CONCURRENCY, at most one per CPU core
    workers: int | Literal["auto"] = "auto"
    threads: int = Field(8, ge=1, le=256)
    predict_deadline: float = Field(80.0, gt=0, le=3600)
    # Tasks of a /predict become a durable background job (engine/jobs.py); off: the deadline's leftovers
    # only finish into the cache, in memory, as before.
    jobs_enabled: bool = True
    # Finished task records (answered, written back, failed) leave the job ledger this long after they finished.
    job_retention_hours: float = Field(168.0, gt=0, le=24 * 3650)
    # Seconds after a /predict answered a task during which the task is not answered again (engine/jobs.py).
    second_click_grace: float = Field(30.0, ge=0, le=3600)
    max_request_bytes: int = Field(32 * 1024 * 1024, gt=0)
    max_tasks_per_request: int = Field(10_000, ge=1)
    # A resource limit, not a context one: longer texts fail that task (never truncated); shorter ones
    # are split into parts that fit the model's context window.
    max_task_chars: int = Field(5_000_000, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Prompts, cache
    # Edited templates (see engine/prompts.py); the defaults ship inside the package. Relative to the
    # directory the command runs in, fixed at start so a later chdir cannot move it.
    prompts_dir: Path = Path("prompts")
    cache_dir: Path = Path(".cache/llm-backend")
    cache_url: str | None = None
    cache_enabled: bool = True

    # Few-shot examples from annotations
    fewshot_k: int = Field(3, ge=0, le=50)  # 0 turns few-shot examples off
    fewshot_max_tokens: int = Field(1500, ge=0)
    fewshot_snapshot_every: int = Field(0, ge=0)  # also snapshot after this many new annotations (0: only on Train)

    # NER alignment
    align_fuzzy_threshold: float = Field(85.0, ge=50, le=100)
    ner_all_occurrences: bool = False

    # Label Studio
    label_studio_url: AnyHttpUrl | None = None
    label_studio_api_key: SecretStr | None = None

    # Task media (text files, HTML, images referenced by URL)
    allowed_media_hosts: str = ""  # comma-separated host names or *.suffix patterns besides Label Studio's
    media_max_bytes: int = Field(20 * 1024 * 1024, gt=0)
    media_timeout: float = Field(15.0, gt=0, le=600)

    # Protecting the backend itself
    basic_auth_user: str | None = None
    basic_auth_pass: SecretStr | None = None
    webhook_secret: SecretStr | None = None

    @field_validator(
        "llm_api_base", "llm_api_key", "llm_max_tokens", "llm_context_tokens", "cache_url", "label_studio_url",
        "label_studio_api_key", "basic_auth_user", "basic_auth_pass", "webhook_secret", mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose files and shells pass unset variables as "": treat that as "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("prompts_dir", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        # One message for both forms (a union would report each of its members' errors).
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "auto":
                return "auto"
            value = int(text) if text.isdigit() else value
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64:
            return value
        raise ValueError("expected a number of processes from 1 to 64, or auto")

    @property
    def worker_processes(self) -> int:
        """WORKERS resolved: with `auto`, enough processes for LLM_CONCURRENCY calls in flight (one process's
        CPU sets the pace of fast providers), never more than the CPU cores this process may use."""
        if self.workers != "auto":
            return self.workers
        return max(1, min(cpu_cores(), math.ceil(self.llm_concurrency / CALLS_PER_WORKER)))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cache_url")
    @classmethod
    def _cache_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// or rediss:// URL (leave it unset for the SQLite cache)")
        return value or None

    def prediction_fingerprint(self) -> str:
        """A short hash of every setting that can change an answer (model, sampling, few-shot, alignment, media, the
        routing file's contents...): background jobs are only run by processes whose fingerprint, with their
        templates' (`engine/jobs.py`), matches the submitter's. Paths are not in it, only what the files hold."""
        import hashlib
        import json

        values = self.model_dump(mode="json", exclude=set(NOT_IN_FINGERPRINT | BY_CONTENT))
        if self.llm_router_config is not None:
            try:
                values["llm_router_config"] = hashlib.sha256(self.llm_router_config.read_bytes()).hexdigest()
            except OSError as exc:  # load_routing reports a missing file at start; here it only must not match
                values["llm_router_config"] = f"unreadable: {type(exc).__name__}"
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def secret_values(self) -> list[str]:
        """Every configured secret, for redaction."""
        secrets = (self.llm_api_key, self.label_studio_api_key, self.basic_auth_pass, self.webhook_secret)
        return [secret.get_secret_value() for secret in secrets if secret is not None]

    @property
    def media_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.allowed_media_hosts.split(",") if h.strip())

    @property
    def ls_url(self) -> str | None:
        return str(self.label_studio_url).rstrip("/") if self.label_studio_url else None

    @property
    def api_base(self) -> str | None:
        return str(self.llm_api_base).rstrip("/") if self.llm_api_base else None


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and explicit overrides); raise SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            variable = "_".join(str(part) for part in err["loc"]).upper() or "?"
            shown = err.get("input")
            # Never echo the value of a secret back.
            if "KEY" in variable or "PASS" in variable or not isinstance(shown, (str, int, float)):
                lines.append(f"{variable}: {err['msg']}")
            else:
                lines.append(f"{variable}: {err['msg']} (got {shown!r})")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
