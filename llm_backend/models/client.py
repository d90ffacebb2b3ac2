"""The edge where we talk to models: LiteLLM behind a small interface, retries with tenacity.

`import litellm` takes seconds and hundreds of MB, so it happens lazily (or in a warm-up thread
started after gunicorn forks), never at import or in `create_app`: `/health` and `/setup` must
answer within Label Studio's 1 s and 3 s. LiteLLM's own retries are off (`num_retries=0`): they
ignore Retry-After and have no backoff. Ours retry only transient failures, honour Retry-After and
back off exponentially with jitter, for as long as the caller's deadline allows (a `/predict`; past it
only while `max_retries` allows, for a task that goes on in the background), or `max_retries` times
when there is none (offline commands). A refused connection gets `max_retries` retries either way: a
server that is down fails every task, and saying so quickly beats waiting out the deadline.

Providers as they are: LiteLLM drops the parameters it knows a model refuses (`drop_params`), and a
parameter a server refuses with a 400 naming it (temperature on a reasoning model, logprobs) is
dropped for that model from then on rather than failing every task. A reply keeps what the answer
needs to be judged: `finish_reason`, a `refusal`, and the reasoning some servers return beside the
content (`reasoning_content`, or vLLM's `reasoning`). A connection that cannot be made is reported
as that, naming LLM_API_BASE, not as the "HTTP 500" LiteLLM wraps it in.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from ..core.usage import Usage
from ..errors import LLMError, PermanentLLMError, TransientLLMError
from .failures import NO_KEY, ParamRefusedError, classify, needs_no_key, parse_retry_after, refused_param, setup_failure
from .retries import StopAtDeadline, WaitRetryAfter, gave_up

__all__ = [
    "Completion",
    "CompletionClient",
    "LLMRequest",
    "LiteLLMClient",
    "classify",
    "litellm_loaded",
    "litellm_version",
    "load_litellm",
    "parse_retry_after",
]
from .aio import LOOP
from .fastpath import Choice, FastPath, for_litellm
from .loader import litellm_loaded, litellm_version, load_litellm

log = logging.getLogger(__name__)


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
    n: int = 1  # answers asked for in one call (confidence samples); servers without `n` answer one

    @functools.cached_property  # a long text's part is ~100 KB of JSON: hashed once, not at every lookup
    def cache_key(self) -> str:
        payload = json.dumps(
            {
                "model": self.model, "api_base": self.api_base, "messages": self.messages,
                "response_format": self.response_format, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "logprobs": self.logprobs,
                **({"n": self.n} if self.n != 1 else {}),  # absent for one answer: earlier keys stay valid
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
    finish_reason: str | None = None  # "stop", "length" (cut off at the token limit), "content_filter", ...
    refusal: str | None = None  # OpenAI's structured-output refusal text
    reasoning: str | None = None  # reasoning_content (LM Studio, llama.cpp, DeepSeek) or vLLM's `reasoning`
    alternatives: tuple[str, ...] = ()  # the other choices' contents, when `n` asked for several

    @property
    def usage(self) -> Usage:
        """What this completion cost: every attempt is a call, all but the first a retry."""
        return Usage(calls=self.attempts, retries=max(0, self.attempts - 1), prompt_tokens=self.prompt_tokens,
                     completion_tokens=self.completion_tokens, cost=self.cost)

    def to_cache(self) -> dict[str, Any]:
        data = {"content": self.content, "model": self.model, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": self.cost, "logprobs": self.logprobs}
        if self.reasoning and not self.content.strip():
            data["reasoning"] = self.reasoning  # the answer was read from it: a re-run must read it again
        if self.alternatives:
            data["alternatives"] = list(self.alternatives)
        return data

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Completion:
        return cls(content=data["content"], model=data.get("model", ""), prompt_tokens=data.get("prompt_tokens", 0),
                   completion_tokens=data.get("completion_tokens", 0), cost=data.get("cost"),
                   attempts=0, logprobs=data.get("logprobs"), finish_reason="stop", reasoning=data.get("reasoning"),
                   alternatives=tuple(data.get("alternatives") or ()))


class CompletionClient(Protocol):
    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        """One answer to `request`; transient failures are retried until `deadline` (a time.time()
        value) when one is given, else a fixed number of times."""
        ...


def _reasoning_of(message: Any) -> str | None:
    reasoning = getattr(message, "reasoning_content", None)
    if not reasoning:
        extra = getattr(message, "provider_specific_fields", None) or {}
        reasoning = extra.get("reasoning") or extra.get("reasoning_content") or getattr(message, "reasoning", None)
    return reasoning if isinstance(reasoning, str) and reasoning else None


@dataclass
class LiteLLMClient:
    """Calls `litellm.completion` with our timeout and retries."""

    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 4
    retry_max_wait: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)
    fast: FastPath = field(default_factory=FastPath)  # which calls skip acompletion (models/fastpath.py)
    # model -> {parameter it refused: what to send instead (None: nothing)}, learned from its 400s
    _refused: dict[str, dict[str, str | None]] = field(default_factory=dict, init=False, repr=False)
    _typical_call: float = field(default=0.0, init=False, repr=False)  # seconds a successful call takes (EWMA)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _request_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        """The completion() arguments of a request, shared by plain calls and Router calls."""
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": list(request.messages),
            "temperature": request.temperature,
            "timeout": self.timeout,
            "num_retries": 0,
            "max_retries": 0,
            # LiteLLM leaves out what it knows a model refuses (temperature and logprobs on o1/o3/gpt-5...).
            "drop_params": True,
            **self.extra,
        }
        if request.response_format is not None:
            kwargs["response_format"] = request.response_format
        if request.max_tokens:
            kwargs["max_tokens"] = request.max_tokens
        if request.logprobs:
            kwargs["logprobs"] = True
        if request.n != 1:
            kwargs["n"] = request.n
        for param, instead in self._refused.get(request.model, {}).items():
            value = kwargs.pop(param, None)
            if instead is not None and value is not None:
                kwargs[instead] = value
        return kwargs

    def _refusal_of(self, exc: BaseException, kwargs: dict[str, Any]) -> ParamRefusedError | None:
        error = classify(exc)
        if not isinstance(error, PermanentLLMError) or getattr(exc, "status_code", 400) != 400:
            return None
        text = str(exc)
        param = refused_param(text, kwargs)
        return ParamRefusedError(error.message, param) if param else None

    def _learn(self, model: str, refusal: ParamRefusedError) -> None:
        """Remember that `model` refuses a parameter (tasks in flight may learn it at the same time)."""
        with self._lock:
            known = self._refused.setdefault(model, {})
            if refusal.param in known:
                return
            instead = ("max_completion_tokens" if refusal.param == "max_tokens"
                       and "max_completion_tokens" in refusal.message else None)
            known[refusal.param] = instead
        log.warning("%s refused %s (%s); %s from now on", model, refusal.param, refusal.message,
                    f"sending {instead} instead" if instead else "leaving it out")

    def _call_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        kwargs = self._request_kwargs(request)
        if request.api_base:
            kwargs["api_base"] = request.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif needs_no_key(request.model, request.api_base):
            kwargs["api_key"] = NO_KEY
        return kwargs

    def path_of(self, request: LLMRequest) -> Choice:
        """Whether `request` goes by the fast path or is a LiteLLM call, and why (shown by `doctor`)."""
        return self.fast.choose(self._call_kwargs(request))

    def _call_once(self, request: LLMRequest) -> Completion:
        litellm = load_litellm()
        kwargs = self._call_kwargs(request)
        route = self.fast.choose(kwargs).route
        try:
            # Through the process's event loop (models/aio.py), not litellm.completion from this thread.
            call = route.call(kwargs["messages"]) if route is not None else litellm.acompletion(**for_litellm(kwargs))
            response = LOOP.run(call, timeout=self.timeout + 30)
        except Exception as exc:  # mapped to our tree right here, at the boundary
            error = (self._refusal_of(exc, kwargs) or setup_failure(litellm, exc, request.model, request.api_base)
                     or classify(exc, request.api_base))
            raise error from exc
        return self._completion(litellm, response)

    @staticmethod
    def _completion(litellm: ModuleType, response: Any) -> Completion:
        choice = response.choices[0]
        message = choice.message
        content = message.content or ""
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", None) or {}
        if "response_cost" in hidden:
            # LiteLLM priced the response already (None: a model it has no price for); pricing it again
            # costs as much CPU as the rest of our work on a task.
            cost = None if hidden["response_cost"] is None else float(hidden["response_cost"])
        else:
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
        refusal = getattr(message, "refusal", None)
        return Completion(
            content=content,
            model=getattr(response, "model", "") or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost=cost,
            logprobs=logprobs,
            finish_reason=getattr(choice, "finish_reason", None),
            refusal=refusal if isinstance(refusal, str) and refusal.strip() else None,
            reasoning=_reasoning_of(message),
            alternatives=tuple(getattr(other.message, "content", None) or "" for other in response.choices[1:]),
        )

    def _attempt(self, request: LLMRequest) -> tuple[Completion, int]:
        """One call, and once more without a parameter the model refuses; (completion, calls made)."""
        try:
            return self._call_once(request), 1
        except ParamRefusedError as refusal:
            # Once more without it: a model that names a parameter it was not sent fails as usual then.
            self._learn(request.model, refusal)
        try:
            return self._call_once(request), 2
        except LLMError as exc:
            raise exc.with_usage(Usage(calls=1)) from exc.__cause__

    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        # Most calls succeed at once: the first attempt runs before tenacity's machinery is built (a Retrying and
        # its per-attempt state cost about 30 µs of CPU a call); a failure becomes tenacity's first attempt below,
        # so the waits, stops and counts are those of every attempt run under it.
        load_litellm()  # a process's first call imports it (seconds): not how long a call takes (_typical_call)
        started = time.monotonic()
        try:
            completion, calls = self._attempt(request)
        except LLMError as exc:
            return self._retried(request, deadline, exc, time.monotonic() - started)
        self._timed(time.monotonic() - started)
        completion.attempts = calls
        return completion

    def _timed(self, elapsed: float) -> None:
        self._typical_call = elapsed if not self._typical_call else 0.8 * self._typical_call + 0.2 * elapsed

    def _retried(self, request: LLMRequest, deadline: float | None, first: LLMError, first_took: float
                 ) -> Completion:
        """`complete` after its first attempt failed with `first`."""
        attempts = 0
        failed: LLMError | None = first

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            sleep = state.upcoming_sleep
            log.warning("model call failed (%s); retry %d in %.1f s", exc, state.attempt_number, sleep)

        last_call = 0.0
        # With a deadline (a /predict waits): retry until it, and past it only while LLM_MAX_RETRIES allows, so
        # a task the request gave up on goes on in the background exactly as far as an offline one would.
        # A refused connection is retried LLM_MAX_RETRIES times either way (see StopAtDeadline).
        stop: stop_base = stop_after_attempt(self.max_retries + 1)
        if deadline is not None:
            stop = StopAtDeadline(deadline, lambda: max(self._typical_call, last_call)) & stop
        retrying = Retrying(
            retry=retry_if_exception_type(TransientLLMError),
            stop=stop,
            wait=WaitRetryAfter(self.retry_max_wait),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    if failed is not None:  # the attempt `complete` made
                        attempts += failed.usage.calls
                        last_call = first_took
                        error, failed = failed, None
                        raise error
                    started = time.monotonic()
                    try:
                        completion, calls = self._attempt(request)
                    except LLMError as exc:
                        attempts += exc.usage.calls
                        last_call = time.monotonic() - started
                        raise
                    attempts += calls - 1
        except LLMError as exc:
            # The caller bills every attempt; failed calls cost nothing at the providers we know.
            usage = Usage(calls=attempts, retries=max(0, attempts - 1))
            past = deadline is not None and time.time() > deadline
            why = ("the request's deadline" if attempts > self.max_retries + 1 else
                   f"LLM_MAX_RETRIES={self.max_retries}" + (", past the request's deadline" if past else ""))
            raise gave_up(exc, attempts, why, usage) from exc.__cause__
        self._timed(time.monotonic() - started)
        completion.attempts = attempts
        return completion
