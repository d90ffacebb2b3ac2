"""The exceptions llm-backend raises, one tree so callers catch by meaning, not by library.

    LLMBackendError                 base; `status` is the HTTP status a client should see
    ├── SettingsError               an environment variable has an invalid value
    ├── BadRequestError             a /setup or /predict body we cannot use (400)
    │   └── LabelConfigError        the label config XML is unusable (400)
    ├── PromptError                 a template failed to load or render (names file and line)
    ├── ProviderBatchError          a provider's batch API refused or lost a whole batch (--batch-api)
    ├── BatchFailedError            every task of a /predict failed for one cause outside the tasks (502)
    └── TaskError                   one task cannot be predicted; the batch goes on
        ├── AnswerError             the model's answer is not valid for the config
        │   ├── CutOffError         the answer stopped at the token limit (finish_reason "length")
        │   ├── RefusalError        the model refused (a `refusal` field, finish_reason "content_filter")
        │   └── EmptyReplyError     the reply held no answer at all, even when asked again
        └── LLMError                the model call failed
            ├── TransientLLMError   worth retrying (429, 5xx, timeouts, refused connections)
            │   └── LLMConnectionError  the model server could not be reached at all
            └── PermanentLLMError   retrying cannot help (auth, bad request)
                └── ContextWindowError  the prompt does not fit the model's context window

A `TaskError` carries the `Usage` of the calls made before it was raised (`usage`), so a failed
task is billed like a finished one: the calls were made and may have been paid for.

Third-party exceptions (LiteLLM, Jinja, XML) are mapped to these at the boundary with
`raise ... from exc`, so a client never receives a library's message or traceback unfiltered.
"""

from __future__ import annotations

import copy
from typing import TypeVar

from .core.usage import Usage


class LLMBackendError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(LLMBackendError):
    code = "invalid_settings"


class BadRequestError(LLMBackendError):
    status = 400
    code = "bad_request"


class LabelConfigError(BadRequestError):
    code = "invalid_label_config"


class PromptError(LLMBackendError):
    code = "prompt_error"


class ProviderBatchError(LLMBackendError):
    status = 502
    code = "batch_error"


class BatchFailedError(LLMBackendError):
    """Every task of a request failed for one systemic cause (the key, the model server, the model name):
    one error with its fix instead of N task errors. `code` names the cause, e.g. `model_unreachable`."""

    status = 502

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


_E = TypeVar("_E", bound="TaskError")


class TaskError(LLMBackendError):
    status = 422
    code = "task_error"

    def __init__(self, message: str, *, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()

    def with_usage(self: _E, usage: Usage) -> _E:
        """The same error, carrying `usage` (the calls made before it)."""
        clone = copy.copy(self)
        clone.usage = usage
        return clone

    def restated(self: _E, message: str, usage: Usage) -> _E:
        """The same kind of error (its code decides a cascade's escalation), saying where, billing `usage`."""
        clone = self.with_usage(usage)
        clone.message, clone.args = message, (message,)
        return clone


class AnswerError(TaskError):
    code = "invalid_answer"

    def __init__(self, message: str, *, content: str | None = None, usage: Usage | None = None) -> None:
        super().__init__(message, usage=usage)
        self.content = content


class CutOffError(AnswerError):
    code = "answer_cut_off"


class RefusalError(AnswerError):
    code = "answer_refused"


class EmptyReplyError(AnswerError):
    code = "answer_empty"


class LLMError(TaskError):
    code = "llm_error"


class TransientLLMError(LLMError):
    code = "llm_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, usage: Usage | None = None) -> None:
        super().__init__(message, usage=usage)
        self.retry_after = retry_after


class LLMConnectionError(TransientLLMError):
    code = "llm_unreachable"


class PermanentLLMError(LLMError):
    code = "llm_rejected"


class ContextWindowError(PermanentLLMError):
    """The prompt is longer than the model's context window. Not retried as it is: the long-text
    planner splits the text instead (`window`: the size the provider named, when it named one;
    `prompt_tokens`: its count of the messages, `requested_tokens`: of messages and answer, when stated)."""

    code = "context_window_exceeded"

    def __init__(self, message: str, *, window: int | None = None, usage: Usage | None = None,
                 prompt_tokens: int | None = None, requested_tokens: int | None = None) -> None:
        super().__init__(message, usage=usage)
        self.window = window
        self.prompt_tokens = prompt_tokens
        self.requested_tokens = requested_tokens
