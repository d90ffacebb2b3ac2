"""What a failed model call means: transient or permanent, a connection never made, a parameter refused.

LiteLLM raises its own exceptions (which wrap the OpenAI SDK's, which wrap httpx's); `classify` maps
them to our tree at the boundary, keeping a short, safe message. A connection that could not be made
is named as such (LiteLLM reports it as "InternalServerError (HTTP 500): Connection error"), and a 400
that names an optional parameter the model refuses becomes a `ParamRefusedError` the client can act
on instead of failing every task.
"""

from __future__ import annotations

import email.utils
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from ..core.causes import missing_key_message, unknown_provider_message
from ..errors import ContextWindowError, LLMConnectionError, LLMError, PermanentLLMError, TransientLLMError

TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
_TRANSIENT_NAMES = {
    "RateLimitError", "Timeout", "APITimeoutError", "APIConnectionError", "InternalServerError",
    "ServiceUnavailableError", "BadGatewayError", "ConnectError", "ReadTimeout", "ConnectTimeout",
    "RemoteProtocolError", "ReadError",
}
# How OpenAI, vLLM and LiteLLM word a prompt that is too long; the number is the model's window.
_CONTEXT_MESSAGES = re.compile(r"context_length_exceeded|maximum context length|context window", re.IGNORECASE)
_CONTEXT_SIZE = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)
# The provider's own count: of the messages ("your messages resulted in N tokens", "(N in the messages"),
# or of messages and answer together ("you requested N tokens").
_CONTEXT_PROMPT = re.compile(r"messages resulted in (\d+) tokens|\((\d+) in the messages", re.IGNORECASE)
_CONTEXT_REQUESTED = re.compile(r"you requested (\d+) tokens", re.IGNORECASE)
_PERMANENT_NAMES = {
    "AuthenticationError", "PermissionDeniedError", "BadRequestError", "ContextWindowExceededError",
    "NotFoundError", "UnprocessableEntityError", "ContentPolicyViolationError", "UnsupportedParamsError",
    "InvalidRequestError",
}


# Sent to an OpenAI-compatible server of your own that needs no key (vLLM, llama.cpp, LM Studio
# without --api-key): the OpenAI SDK refuses to send a request without one.
NO_KEY = "no-key-required"


def needs_no_key(model: str, api_base: str | None) -> bool:
    """`openai/<name>` at a base URL of your own, with no OPENAI_API_KEY to send, needs no key from you."""
    if not api_base or not model.startswith("openai/") or os.environ.get("OPENAI_API_KEY"):
        return False
    host = (urlsplit(api_base).hostname or "").lower()
    return not (host == "openai.com" or host.endswith(".openai.com"))


def setup_problem(litellm: ModuleType, where: str, model: str, api_key: str | None, api_base: str | None,
                  key_fix: str = "set LLM_API_KEY") -> tuple[str, str] | None:
    """("provider" | "api_key", message with its fix) when `model` cannot be called as set up, else None.

    The one wording of both, for serve's startup checks (before any call) and for a call that failed
    for either reason (`setup_failure`): LiteLLM's own are "LLM Provider NOT provided" and a 500
    "Missing credentials", which name neither the setting nor its fix."""
    try:
        litellm.get_llm_provider(model)
    except Exception:  # LiteLLM raises its BadRequestError; any failure means it cannot route the name
        return "provider", unknown_provider_message(where, model)
    if api_key or needs_no_key(model, api_base):
        return None
    found = litellm.validate_environment(model=model, api_base=api_base)
    # A base URL set here stands in for the provider's *_API_BASE variable.
    missing = [name for name in found.get("missing_keys") or []
               if not (api_base and name.endswith(("_API_BASE", "_BASE_URL")))]
    return ("api_key", missing_key_message(where, missing, key_fix)) if missing else None


def setup_failure(litellm: ModuleType, exc: BaseException, model: str, api_base: str | None) -> LLMError | None:
    """A failed call whose cause is the setup (an unroutable model name, a key not set), worded as at startup."""
    text = str(exc)
    if "LLM Provider NOT provided" not in text and "missing credentials" not in text.lower():
        return None
    try:
        problem = setup_problem(litellm, f"LLM_MODEL={model}", model, None, api_base)
    except Exception:  # LiteLLM's checks themselves failed: keep its own message
        return None
    return PermanentLLMError(problem[1]) if problem else None


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


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """`exc` and everything that caused it (LiteLLM wraps the OpenAI SDK's error, which wraps httpx's)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__]


def connection_failure(exc: BaseException) -> str | None:
    """Why no connection could be made ("connection refused", ...), or None when one was made."""
    reason = None
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name could not be resolved"
        # httpx's (and httpcore's) own classes; LiteLLM's "APIConnectionError" is a catch-all, and the
        # OpenAI SDK's also covers connections that broke mid-answer, so neither names the cause.
        if type(cause).__module__.split(".")[0] not in ("httpx", "httpcore"):
            continue
        if type(cause).__name__ == "ConnectTimeout":
            return "timed out while connecting"
        if type(cause).__name__ == "ConnectError" and reason is None:
            reason = (str(cause).splitlines() or [""])[0][:200] or "could not connect"
    return reason


def connection_error(reason: str, api_base: str | None) -> LLMConnectionError:
    where = f" at {api_base}" if api_base else ""
    hint = ("is it running, and is LLM_API_BASE the address this machine reaches it at?" if api_base else
            "is it running, and is its address (LLM_API_BASE, or api_base in the routing file) right?")
    return LLMConnectionError(f"cannot connect to the model server{where} ({reason}): {hint}")


def classify(exc: BaseException, api_base: str | None = None) -> LLMError:
    """Map a LiteLLM/httpx exception to our tree, keeping only a safe, short message."""
    refused = connection_failure(exc)
    if refused is not None:
        return connection_error(refused, api_base)
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    message = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    detail = str(getattr(exc, "message", "") or exc).splitlines()[0][:300] if str(exc) else ""
    if detail:
        message += f": {detail}"
    if "ContextWindowExceededError" in names or (status == 400 and _CONTEXT_MESSAGES.search(str(exc))):
        return context_window_error(message, str(exc))
    if names & _PERMANENT_NAMES and not names & {"RateLimitError"}:
        if "response_format" in str(exc) and status == 400:
            # e.g. LM Studio: "'response_format.type' must be 'json_schema' or 'text'" in JSON mode
            message += (" (the model server refused the response_format of this LLM_OUTPUT_MODE; "
                        "`llm-backend doctor` tells which output mode it follows)")
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


def context_window_error(message: str, text: str) -> ContextWindowError:
    """A context-length refusal, with the window and the provider's token counts where its text states them."""
    size, prompt, requested = _CONTEXT_SIZE.search(text), _CONTEXT_PROMPT.search(text), _CONTEXT_REQUESTED.search(text)
    return ContextWindowError(message, window=int(size.group(1)) if size else None,
                              prompt_tokens=int(next(g for g in prompt.groups() if g)) if prompt else None,
                              requested_tokens=int(requested.group(1)) if requested else None)


# Parameters the answer can do without, which some models refuse (temperature on reasoning models,
# logprobs where a server has none, max_tokens where a model wants max_completion_tokens).
OPTIONAL_PARAMS = ("temperature", "logprobs", "top_logprobs", "max_tokens")
_REFUSES = ("unsupported", "not supported", "does not support", "not allowed")


def refused_param(message: str, sent: Iterable[str]) -> str | None:
    """The optional parameter a 400's message says the model refuses, if it names exactly one we sent."""
    lowered = message.lower()
    if not any(phrase in lowered for phrase in _REFUSES):
        return None
    named = [param for param in sent if param in OPTIONAL_PARAMS and re.search(rf"\b{param}\b", lowered)]
    return named[0] if len(named) == 1 else None


class ParamRefusedError(PermanentLLMError):
    """A 400 that names an optional parameter: retried at once without it (see LiteLLMClient)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


