"""Provider batch APIs through LiteLLM's files and batches functions: half the price, hours of latency.

One batch is one JSONL file of chat requests in OpenAI's format (`custom_id`, `method`, `url`,
`body`), uploaded with `litellm.create_file(purpose="batch")`, started with
`litellm.create_batch(endpoint="/v1/chat/completions", completion_window="24h")`, polled with
`litellm.retrieve_batch` and read back with `litellm.file_content` (the output file, and the
error file for lines that failed). LiteLLM routes these by `custom_llm_provider`; its OpenAI-format
JSONL is what it takes for every provider it supports for batches.

Each request line's `custom_id` is the request's cache key, so an answer lands in the response
cache under exactly the key the normal path would use. The answer body is read by the same code
as a normal reply (`LiteLLMClient._completion`), and priced at the batch price.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from ..errors import LLMError, ProviderBatchError, TransientLLMError
from ..settings import Settings
from .client import Completion, LiteLLMClient, LLMRequest, classify, load_litellm
from .pricing import Pricing
from .retries import WaitRetryAfter
from .router import Routing

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
# Providers whose batches LiteLLM's files and batches functions handle (litellm/batches/main.py).
BATCH_PROVIDERS = ("openai", "azure", "hosted_vllm", "litellm_proxy", "vertex_ai", "bedrock", "anthropic", "mistral")
# OpenAI's limits per batch: 50,000 requests and a 200 MB input file.
MAX_LINES = 50_000
MAX_BYTES = 190 * 1024 * 1024
TERMINAL = ("completed", "failed", "expired", "cancelled")
IO_TIMEOUT = 600.0  # uploading or downloading a file of up to 200 MB
_ENV_REF = "os.environ/"
# Not worth retrying `create_batch` on: a timeout or a 5xx may have created the batch already,
# and a second one would be billed twice. A refused connection or a 429 created nothing.
_NOTHING_CREATED = {"RateLimitError", "APIConnectionError", "ConnectError", "ConnectTimeout"}

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderBatchTarget:
    """Where one model's batches go: LiteLLM's provider, the model name in each line, credentials."""

    name: str  # the model name of this backend (LLM_MODEL, a cascade step, a routing file model_name)
    model: str  # the LiteLLM model string
    provider: str
    provider_model: str
    params: dict[str, Any] = field(default_factory=dict)  # api_base, api_key, api_version, organization

    @property
    def where(self) -> str:
        return f"{self.model}" + (f" at {self.params['api_base']}" if self.params.get("api_base") else "")


def _resolve(value: object) -> object:
    if isinstance(value, str) and value.startswith(_ENV_REF):
        return os.environ.get(value[len(_ENV_REF):])
    return value


def provider_batch_target(settings: Settings, routing: Routing, name: str) -> ProviderBatchTarget:
    """The target of `name`'s batches: its first deployment a batch API exists for; ProviderBatchError if none."""
    litellm = load_litellm()
    if routing.config is None:
        candidates = [{"model": name, "api_base": settings.api_base,
                       "api_key": settings.llm_api_key.get_secret_value() if settings.llm_api_key else None}]
    else:
        candidates = [d["litellm_params"] for d in routing.config.model_list if d["model_name"] == name]
    providers = []
    for params in candidates:
        model = str(params["model"])
        provider_model, provider, _key, _base = litellm.get_llm_provider(model)
        providers.append(provider)
        if provider in BATCH_PROVIDERS:
            chosen = {key: _resolve(params.get(key)) for key in ("api_base", "api_key", "api_version", "organization")}
            return ProviderBatchTarget(name, model, provider, provider_model, {k: v for k, v in chosen.items() if v})
    raise ProviderBatchError(f"{name} has no batch API: its provider ({', '.join(dict.fromkeys(providers))}) is not "
                             f"one LiteLLM runs batches for ({', '.join(BATCH_PROVIDERS)}); run without --batch-api")


def request_line(key: str, request: LLMRequest, target: ProviderBatchTarget) -> dict[str, Any]:
    """One JSONL line: the request's completion arguments, as the provider's API takes them."""
    kwargs = LiteLLMClient()._request_kwargs(request)
    body = {k: v for k, v in kwargs.items() if k not in ("timeout", "num_retries", "max_retries")}
    body["model"] = target.provider_model
    return {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}


def chunks(lines: list[dict[str, Any]]) -> Iterator[tuple[list[str], bytes]]:
    """(custom_ids, JSONL file) within the provider's limits on lines and bytes per batch."""
    keys: list[str] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        encoded = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        if current and (len(current) >= MAX_LINES or size + len(encoded) > MAX_BYTES):
            yield keys, b"".join(current)
            keys, current, size = [], [], 0
        keys.append(line["custom_id"])
        current.append(encoded)
        size += len(encoded)
    if current:
        yield keys, b"".join(current)


@dataclass(frozen=True)
class ProviderBatchStatus:
    id: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def line(self) -> str:
        text = f"batch {self.id}: {self.status}, {self.completed}/{self.total} answered, {self.failed} failed"
        return text + (f" ({self.errors})" if self.errors else "")


@dataclass(frozen=True)
class LineResult:
    """One line of a batch's output or error file: an answer, or why there is none."""

    key: str
    completion: Completion | None = None
    error: str | None = None


def _status(batch: Any) -> ProviderBatchStatus:
    counts = getattr(batch, "request_counts", None)
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or (errors.get("data") if isinstance(errors, dict) else None) or []
    messages = [str(getattr(e, "message", None) or (e.get("message") if isinstance(e, dict) else e)) for e in data]
    return ProviderBatchStatus(
        id=str(batch.id), status=str(batch.status),
        total=int(getattr(counts, "total", 0) or 0), completed=int(getattr(counts, "completed", 0) or 0),
        failed=int(getattr(counts, "failed", 0) or 0), output_file_id=getattr(batch, "output_file_id", None),
        error_file_id=getattr(batch, "error_file_id", None), errors="; ".join(messages)[:500] or None,
    )


class ProviderBatchClient:
    """LiteLLM's files and batches functions for one target, with our timeouts and retries."""

    def __init__(self, target: ProviderBatchTarget, pricing: Pricing, *, timeout: float = 60.0, max_retries: int = 4,
                 retry_max_wait: float = 30.0) -> None:
        self.target = target
        self.pricing = pricing
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_max_wait = retry_max_wait

    def _kwargs(self, timeout: float | None = None) -> dict[str, Any]:
        return {"custom_llm_provider": self.target.provider, "timeout": timeout or self.timeout, "max_retries": 0,
                **self.target.params}

    def _call(self, what: str, function: Callable[[], T], *, retry: type[Exception] = TransientLLMError) -> T:
        def once() -> T:
            try:
                return function()
            except Exception as exc:  # mapped to our tree here, at the boundary
                error = classify(exc)
                if retry is not TransientLLMError and {c.__name__ for c in type(exc).__mro__} & _NOTHING_CREATED:
                    raise _CreatedNothing(error.message) from exc
                raise error from exc

        retrying = Retrying(retry=retry_if_exception_type(retry), stop=stop_after_attempt(self.max_retries + 1),
                            wait=WaitRetryAfter(self.retry_max_wait), reraise=True)
        try:
            return retrying(once)
        except LLMError as exc:
            raise ProviderBatchError(f"{what} failed for {self.target.where}: {exc.message}") from exc

    def submit(self, data: bytes, metadata: dict[str, str]) -> ProviderBatchStatus:
        """Upload one JSONL file and start a batch on it."""
        litellm = load_litellm()
        uploaded = self._call("uploading the batch file", lambda: litellm.create_file(
            file=("llm-backend-batch.jsonl", data, "application/jsonl"), purpose="batch",
            **self._kwargs(IO_TIMEOUT)))
        try:
            batch = self._call("creating the batch", lambda: litellm.create_batch(
                completion_window="24h", endpoint=ENDPOINT, input_file_id=uploaded.id, metadata=metadata,
                **self._kwargs()), retry=_CreatedNothing)
        except ProviderBatchError as exc:
            if isinstance(exc.__cause__, _CreatedNothing):
                raise
            # A timeout or a 5xx may have come after the provider created it: say where to look.
            raise ProviderBatchError(f"{exc.message}; the provider may have created the batch anyway (input file "
                                     f"{uploaded.id}, metadata {metadata}): check its batch list before running "
                                     "again, or the requests may be paid for twice") from exc
        return _status(batch)

    def retrieve(self, batch_id: str) -> ProviderBatchStatus:
        litellm = load_litellm()
        return _status(self._call(f"checking batch {batch_id}",
                                  lambda: litellm.retrieve_batch(batch_id=batch_id, **self._kwargs())))

    def results(self, status: ProviderBatchStatus) -> list[LineResult]:
        """Every line of the batch's output and error files."""
        lines: list[LineResult] = []
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                lines += self._read(file_id)
        return lines

    def _read(self, file_id: str) -> list[LineResult]:
        litellm = load_litellm()
        content = self._call(f"downloading batch file {file_id}",
                             lambda: litellm.file_content(file_id=file_id, **self._kwargs(IO_TIMEOUT)))
        results = []
        for raw in content.text.splitlines():
            if raw.strip():
                results.append(self._line(litellm, json.loads(raw)))
        return results

    def _line(self, litellm: Any, line: dict[str, Any]) -> LineResult:
        key = str(line.get("custom_id"))
        response = line.get("response") or {}
        body = response.get("body") or {}
        if response.get("status_code") == 200 and body.get("choices"):
            completion = LiteLLMClient._completion(litellm, litellm.ModelResponse(**body))
            completion.cost = self.pricing.price(self.target.name).cost(
                completion.prompt_tokens, completion.completion_tokens, batch=True)
            return LineResult(key, completion)
        error = (body.get("error") or line.get("error") or {}) if isinstance(body, dict) else {}
        message = error.get("message") if isinstance(error, dict) else None
        status = response.get("status_code")
        return LineResult(key, error=(f"HTTP {status}: " if status else "") + str(message or "no answer"))


class _CreatedNothing(TransientLLMError):
    """A failure of `create_batch` that certainly created no batch, so trying again cannot bill twice."""
