"""Why a task failed, as a cause a person can act on: a short name, what to do, and whether it is the
task's own problem or the whole backend's.

A failed task carries an error code (`TaskOutcome.error_code`, the `LLMBackendError.code`) and a
message; the same cause can arrive under several codes (a refused connection is retried first,
so it ends as `llm_unavailable`; a wrong key is `llm_rejected` with HTTP 401). The status page
groups errors by cause, and a /predict whose every task failed for one *systemic* cause (auth,
unreachable or unknown model) is reported as one error with its fix instead of N task errors.
Pure: strings in, a `Cause` out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    key: str
    title: str
    fix: str
    systemic: bool  # no task can succeed until it is fixed: retrying task by task only wastes time
    transient: bool = False  # may pass by itself: only then does running the same thing again help, unchanged


AUTH = Cause("auth", "the model provider refused the API key",
             "set LLM_API_KEY (or the provider's own variable, e.g. OPENAI_API_KEY) to a valid key and restart",
             systemic=True)
# A model name LiteLLM cannot route, and a key it needs but does not have: serve's startup checks find them
# before any call (models/preflight.py), a call reports them (models/failures.py); both word them as below.
MISSING_KEY = Cause("missing_key", "the model needs an API key that is not set",
                    "set LLM_API_KEY (or the variable the message names)", systemic=True)
UNKNOWN_PROVIDER = Cause("unknown_provider", "LiteLLM knows no provider for the model name",
                         "write LLM_MODEL as provider/model, e.g. openai/gpt-4o-mini, hosted_vllm/<served name>, "
                         "ollama_chat/<model> (https://docs.litellm.ai/docs/providers)", systemic=True)
UNREACHABLE = Cause("unreachable", "the model server cannot be reached",
                    "check LLM_API_BASE (scheme, host, port and /v1) and that the model server is up; "
                    "`llm-backend doctor` tests it", systemic=True)
UNKNOWN_MODEL = Cause("unknown_model", "the model server does not know this model",
                      "check LLM_MODEL (a LiteLLM model string such as openai/gpt-4o-mini or "
                      "hosted_vllm/<served model name>) against the models the server lists", systemic=True)
RATE_LIMITED = Cause("rate_limited", "the provider kept answering 429 (rate limit)",
                     "lower LLM_CONCURRENCY, or raise the provider's limit", systemic=False, transient=True)
OVERLOADED = Cause("overloaded", "the model server kept failing or timing out",
                   "check the model server's health and load; raise LLM_TIMEOUT for slow models", systemic=False,
                   transient=True)
CUT_OFF = Cause("cut_off", "answers were cut off before the JSON ended",
                "raise LLM_MAX_TOKENS (or unset it), or shorten the label config's outputs", systemic=False)
REFUSED = Cause("refused", "the model refused to answer (a refusal, or the provider's content filter)",
                "look at the task; another model (LLM_CASCADE) may answer it", systemic=False)
EMPTY = Cause("empty", "the model returned empty replies",
              "its server may not support this LLM_OUTPUT_MODE: `llm-backend doctor` tells which one it follows",
              systemic=False)
INVALID = Cause("invalid_answer", "the model's answers did not fit the label config",
                "check the prompt (`llm-backend prompts show`), try LLM_OUTPUT_MODE=schema, or a stronger model",
                systemic=False)
TOO_LONG = Cause("too_long", "the task is longer than the model or MAX_TASK_CHARS allows",
                 "split long documents, raise MAX_TASK_CHARS, or choose a model with a larger context window",
                 systemic=False)
MEDIA = Cause("media", "a task file or image could not be fetched",
              "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, or add the host to ALLOWED_MEDIA_HOSTS",
              systemic=False)
BAD_TASK = Cause("bad_task", "the task's data does not fit the label config",
                 "check the task's data fields against the config's value=\"$field\" names", systemic=False)
REJECTED = Cause("rejected", "the model provider rejected the request",
                 "read the provider's message; a parameter the model does not support is the usual reason",
                 systemic=False)
SETTINGS_CHANGED = Cause("settings_changed", "the task was queued by a backend with other settings",
                         "press Retrieve predictions again: the task is queued anew for this backend's model_version; "
                         "give every process that shares CACHE_DIR or CACHE_URL the same settings", systemic=False,
                         transient=True)
INTERNAL = Cause("internal", "an internal error", "see the backend's log for the traceback", systemic=False)

CAUSES = (MISSING_KEY, UNKNOWN_PROVIDER, AUTH, UNREACHABLE, UNKNOWN_MODEL, RATE_LIMITED, OVERLOADED, CUT_OFF, REFUSED,
          EMPTY, INVALID, TOO_LONG,
          MEDIA, BAD_TASK, REJECTED, SETTINGS_CHANGED, INTERNAL)
BY_KEY = {cause.key: cause for cause in CAUSES}

_HTTP = re.compile(r"\(HTTP (\d{3})\)")
# Before the client named it (`llm_unreachable`), a refused connection read "InternalServerError (HTTP 500) ...
# Connection error."; errors stored by older versions still do.
_UNREACHABLE_WORDS = ("apiconnectionerror", "connecterror", "connection refused", "connection error",
                      "name or service not known", "nodename nor servname", "getaddrinfo", "no route to host")
_AUTH_WORDS = ("AuthenticationError", "PermissionDeniedError", "invalid_api_key", "Incorrect API key")
# Our own wording (below), then LiteLLM's raw one, which errors stored by older versions still carry.
_MISSING_KEY_WORDS = (", which is not set", "Missing credentials", "missing credentials")
_UNKNOWN_PROVIDER_WORDS = ("LiteLLM knows no provider", "LLM Provider NOT provided")
_CUT_OFF_WORDS = ("finish_reason=length", "cut off", "Unterminated string", "Expecting ',' delimiter")
# Error codes that name their cause exactly (the client and the exchange tell these apart themselves).
_BY_CODE = {"llm_unreachable": UNREACHABLE, "context_window_exceeded": TOO_LONG, "answer_cut_off": CUT_OFF,
            "answer_refused": REFUSED, "answer_empty": EMPTY}


def classify_failure(error_code: str | None, message: str | None) -> Cause:
    """The cause of one failed task, from its error code and message (never from the task's text)."""
    text = message or ""
    if error_code in _BY_CODE:
        return _BY_CODE[error_code]
    status = int(match.group(1)) if (match := _HTTP.search(text)) else None
    if error_code in ("llm_rejected", "llm_unavailable", "llm_error"):
        if any(word in text for word in _UNKNOWN_PROVIDER_WORDS):
            return UNKNOWN_PROVIDER
        if status in (401, 403) or any(word in text for word in _AUTH_WORDS):
            return AUTH
        if any(word in text for word in _MISSING_KEY_WORDS):
            return MISSING_KEY
        if status == 404 or "NotFoundError" in text or "model_not_found" in text:
            return UNKNOWN_MODEL
        if "ContextWindowExceeded" in text or "context length" in text.lower():
            return TOO_LONG
        if error_code == "llm_rejected":
            return REJECTED
        if status == 429 or "RateLimitError" in text:
            return RATE_LIMITED
        if any(word in text.lower() for word in _UNREACHABLE_WORDS):
            return UNREACHABLE
        return OVERLOADED
    if error_code == "invalid_answer":
        return CUT_OFF if any(word in text for word in _CUT_OFF_WORDS) else INVALID
    if error_code == "task_error":
        if "MAX_TASK_CHARS" in text:
            return TOO_LONG
        if "fetch" in text or "media fetching" in text or "image" in text:
            return MEDIA
        return BAD_TASK
    return INTERNAL


def missing_key_message(where: str, missing: list[str], key_fix: str = "set LLM_API_KEY") -> str:
    """`where` names the model as the user configured it (e.g. "LLM_MODEL=openai/gpt-4o-mini")."""
    return f"{where} needs {' and '.join(missing)}, which is not set: {key_fix} or export {missing[0]}"


def unknown_provider_message(where: str, model: str) -> str:
    return (f"{where}: LiteLLM knows no provider for {model!r}; write it as provider/model, e.g. openai/gpt-4o-mini, "
            "hosted_vllm/<served name>, ollama_chat/<model> (https://docs.litellm.ai/docs/providers)")


def common_systemic_cause(causes: list[Cause]) -> Cause | None:
    """The one systemic cause every failure shares, or None (mixed causes, or a task's own problem)."""
    if not causes or not all(cause.systemic for cause in causes):
        return None
    first = causes[0]
    return first if all(cause == first for cause in causes) else None
