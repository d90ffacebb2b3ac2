"""The edge where we talk to models: LiteLLM behind a small interface, retries with tenacity.

`import litellm` takes seconds and hundreds of MB, so it happens lazily (or in a warm-up thread
started after gunicorn forks), never at import or in `create_app`: `/health` and `/setup` must
answer within Label Studio's 1 s and 3 s. LiteLLM's own retries are off (`num_retries=0`): they
ignore Retry-After and have no backoff. Ours retry only transient failures, honour Retry-After,
back off exponentially with jitter, and are capped.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from ..core.usage import Usage
from ..errors import ContextWindowError, LLMError, PermanentLLMError, TransientLLMError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
_TRANSIENT_NAMES = {
    "RateLimitError", "Timeout", "APITimeoutError", "APIConnectionError", "InternalServerError",
    "ServiceUnavailableError", "BadGatewayError", "ConnectError", "ReadTimeout", "ConnectTimeout",
    "RemoteProtocolError", "ReadError",
}
# How OpenAI, vLLM and LiteLLM word a prompt that is too long; the number is the model's window.
_CONTEXT_MESSAGES = re.compile(r"context_length_exceeded|maximum context length|context window", re.IGNORECASE)
_CONTEXT_SIZE = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)
_PERMANENT_NAMES = {
    "AuthenticationError", "PermissionDeniedError", "BadRequestError", "ContextWindowExceededError",
    "NotFoundError", "UnprocessableEntityError", "ContentPolicyViolationError", "UnsupportedParamsError",
    "InvalidRequestError",
}


@dataclass(frozen=True)
class LLMRequest:
    """Everything that determines an answer; its `cache_key` is the response cache's key."""

    model: str
    messages: tuple[dict[str, Any], ...]
    response_format: dict[str, Any] | None = None
    temperature: float = 0.0
    max_tokens: int | None = None
    api_base: str | None = None
    logprobs: bool = False

    @functools.cached_property  # a long text's part is ~100 KB of JSON: hashed once, not at every lookup
    def cache_key(self) -> str:
        payload = json.dumps(
            {
                "model": self.model, "api_base": self.api_base, "messages": self.messages,
                "response_format": self.response_format, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "logprobs": self.logprobs,
            },
            sort_keys=True, ensure_ascii=False, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def followed_by(self, *messages: dict[str, Any]) -> LLMRequest:
        return dataclasses.replace(self, messages=(*self.messages, *messages))


@dataclass
class Completion:
    content: str
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    attempts: int = 1
    logprobs: list[dict[str, Any]] | None = None

    @property
    def usage(self) -> Usage:
        """What this completion cost: every attempt is a call, all but the first a retry."""
        return Usage(calls=self.attempts, retries=max(0, self.attempts - 1), prompt_tokens=self.prompt_tokens,
                     completion_tokens=self.completion_tokens, cost=self.cost)

    def to_cache(self) -> dict[str, Any]:
        return {"content": self.content, "model": self.model, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": self.cost, "logprobs": self.logprobs}

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Completion:
        return cls(content=data["content"], model=data.get("model", ""), prompt_tokens=data.get("prompt_tokens", 0),
                   completion_tokens=data.get("completion_tokens", 0), cost=data.get("cost"),
                   attempts=0, logprobs=data.get("logprobs"))


class CompletionClient(Protocol):
    def complete(self, request: LLMRequest) -> Completion: ...


# Sent to an OpenAI-compatible server of your own that needs no key (vLLM, llama.cpp, LM Studio
# without --api-key): the OpenAI SDK refuses to send a request without one.
NO_KEY = "no-key-required"


def needs_no_key(model: str, api_base: str | None) -> bool:
    """`openai/<name>` at a base URL of your own, with no OPENAI_API_KEY to send, needs no key from you."""
    if not api_base or not model.startswith("openai/") or os.environ.get("OPENAI_API_KEY"):
        return False
    host = (urlsplit(api_base).hostname or "").lower()
    return not (host == "openai.com" or host.endswith(".openai.com"))


def litellm_version() -> str:
    """The installed distribution's version: LiteLLM has no reliable __version__ attribute."""
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


_litellm_lock = threading.Lock()
_litellm: ModuleType | None = None


def load_litellm() -> ModuleType:
    """Import LiteLLM once, offline-safe (no price-map download)."""
    global _litellm
    if _litellm is None:
        with _litellm_lock:
            if _litellm is None:
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                os.environ.setdefault("LITELLM_LOG", "ERROR")
                started = time.monotonic()
                import litellm

                litellm.suppress_debug_info = True
                litellm.telemetry = False
                _litellm = litellm
                log.info("LiteLLM %s loaded in %.1f s", litellm_version(), time.monotonic() - started)
    return _litellm


def litellm_loaded() -> bool:
    return _litellm is not None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from Retry-After / retry-after-ms, whichever form the provider used."""
    if not headers:
        return None
    try:
        getter: Callable[[str], Any] = headers.get
    except AttributeError:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()} if isinstance(headers, dict) else None
    def get(name: str) -> Any:
        return lowered.get(name) if lowered is not None else getter(name)
    raw_ms = get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(str(raw)) if raw else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def classify(exc: BaseException) -> LLMError:
    """Map a LiteLLM/httpx exception to our tree, keeping only a safe, short message."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    message = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    detail = str(getattr(exc, "message", "") or exc).splitlines()[0][:300] if str(exc) else ""
    if detail:
        message += f": {detail}"
    if "ContextWindowExceededError" in names or (status == 400 and _CONTEXT_MESSAGES.search(str(exc))):
        size = _CONTEXT_SIZE.search(str(exc))
        return ContextWindowError(message, window=int(size.group(1)) if size else None)
    if names & _PERMANENT_NAMES and not names & {"RateLimitError"}:
        return PermanentLLMError(message)
    if "missing credentials" in message.lower() or "api_key" in message.lower():
        # LiteLLM reports a missing key as a 500 from the provider; retrying cannot supply one.
        return PermanentLLMError(message + " (set LLM_API_KEY, or the provider's usual variable)")
    if names & _TRANSIENT_NAMES or status in TRANSIENT_STATUS or isinstance(exc, (TimeoutError, ConnectionError)):
        return TransientLLMError(message, retry_after=parse_retry_after(getattr(exc, "litellm_response_headers", None)))
    if isinstance(status, int) and 400 <= status < 500:
        return PermanentLLMError(message)
    # Unknown failures (e.g. APIError without a status) are retried: a wasted retry is cheaper than a lost task.
    return TransientLLMError(message)


class _wait_retry_after(wait_base):
    """Honour the provider's Retry-After (capped); otherwise exponential backoff with jitter."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.fallback = wait_exponential_jitter(initial=0.5, max=cap, jitter=0.5)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(min(self.cap, retry_after + 0.05 * retry_state.attempt_number))
        return float(self.fallback(retry_state))


@dataclass
class LiteLLMClient:
    """Calls `litellm.completion` with our timeout and retries."""

    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 4
    retry_max_wait: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    def _request_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        """The completion() arguments of a request, shared by plain calls and Router calls."""
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": list(request.messages),
            "temperature": request.temperature,
            "timeout": self.timeout,
            "num_retries": 0,
            "max_retries": 0,
            **self.extra,
        }
        if request.response_format is not None:
            kwargs["response_format"] = request.response_format
        if request.max_tokens:
            kwargs["max_tokens"] = request.max_tokens
        if request.logprobs:
            kwargs["logprobs"] = True
        return kwargs

    def _call_once(self, request: LLMRequest) -> Completion:
        litellm = load_litellm()
        kwargs = self._request_kwargs(request)
        if request.api_base:
            kwargs["api_base"] = request.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif needs_no_key(request.model, request.api_base):
            kwargs["api_key"] = NO_KEY
        try:
            response = litellm.completion(**kwargs)
        except Exception as exc:  # mapped to our tree right here, at the boundary
            raise classify(exc) from exc
        return self._completion(litellm, response)

    @staticmethod
    def _completion(litellm: ModuleType, response: Any) -> Completion:
        choice = response.choices[0]
        content = choice.message.content or ""
        usage = getattr(response, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # unknown models have no price: cost stays unknown, not zero
            cost = None
        logprobs = None
        raw_logprobs = getattr(choice, "logprobs", None)
        if raw_logprobs is not None:
            content_logprobs = getattr(raw_logprobs, "content", None)
            if content_logprobs is None and isinstance(raw_logprobs, dict):
                content_logprobs = raw_logprobs.get("content")
            if content_logprobs:
                logprobs = [
                    item if isinstance(item, dict) else {"token": item.token, "logprob": item.logprob}
                    for item in content_logprobs
                ]
        return Completion(
            content=content,
            model=getattr(response, "model", "") or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost=cost,
            logprobs=logprobs,
        )

    def complete(self, request: LLMRequest) -> Completion:
        attempts = 0

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            sleep = state.upcoming_sleep
            log.warning("model call failed (%s); retry %d in %.1f s", exc, state.attempt_number, sleep)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientLLMError),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=_wait_retry_after(self.retry_max_wait),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    completion = self._call_once(request)
        except LLMError as exc:
            # The caller bills every attempt; failed calls cost nothing at the providers we know.
            raise exc.with_usage(Usage(calls=attempts, retries=max(0, attempts - 1))) from exc.__cause__
        completion.attempts = attempts
        return completion
