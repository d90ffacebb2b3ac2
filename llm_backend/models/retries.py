"""How long to wait between attempts, and when to stop: by the caller's deadline, or by a count."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

from ..core.usage import Usage
from ..errors import LLMConnectionError, LLMError, TransientLLMError


class WaitRetryAfter(wait_base):
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


class StopAtDeadline(stop_base):
    """Stop when the next attempt, after its wait, could not finish before the deadline.

    An attempt is expected to take as long as a typical successful call or the attempt that just
    failed, whichever is longer, plus a margin: the caller needs the last error before its own
    deadline to report it (a task that merely "timed out" would hide the cause)."""

    MARGIN = 0.25

    def __init__(self, deadline: float, expected_call: Callable[[], float]) -> None:
        self.deadline = deadline
        self.expected_call = expected_call

    def __call__(self, retry_state: RetryCallState) -> bool:
        if isinstance(retry_state.outcome.exception() if retry_state.outcome else None, LLMConnectionError):
            # A server that refuses connections is usually down or misaddressed for every task: a quick,
            # named failure (which the job layer reports once, with its fix) beats waiting out the deadline.
            return True
        wait = retry_state.upcoming_sleep or 0.0
        return time.time() + wait + self.expected_call() + self.MARGIN > self.deadline


def gave_up(exc: LLMError, attempts: int, why: str, usage: Usage) -> LLMError:
    clone = copy.copy(exc).with_usage(usage)
    if attempts > 1 and isinstance(exc, TransientLLMError):
        clone.message = f"{exc.message} (gave up after {attempts} attempts: {why})"
        clone.args = (clone.message,)
    return clone


