"""Fitting a long text's parts to the provider's window, from what its refusals teach (engine/longtext.py).

A context-length refusal that states the provider's count ("your messages resulted in N tokens",
window W) teaches the window and how many of its tokens one of ours is (models/context.py keeps
both per model). The refused part is cut again smaller by at least W / N with a margin, and every
part cut afterwards, in this task and the next, is cut with the learned ratio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..core.chunks import Chunk, split_text
from ..core.fitting import provider_prompt, shrunk_budget, text_budget
from ..core.gaps import Gap, unread
from ..errors import ContextWindowError
from ..models.context import ContextWindows, LiteLLMTokenizer, Window
from .parts import PartAnswer

log = logging.getLogger(__name__)

MIN_PART_TOKENS = 64
MAX_SPLITS = 3  # a part refused as too long is cut again at most this often


@dataclass(frozen=True)
class Plan:
    """How one task's text is split: which object, how many tokens of it a part holds."""

    model: str
    window: Window
    obj: str
    budget: int  # tokens of text in one part
    overlap: int  # tokens a part re-reads before its first new character
    reserve: int  # tokens kept for the answer
    overhead: int  # tokens of the prompt around the text
    tokenizer: LiteLLMTokenizer
    examples: int = 0  # tokens kept for few-shot examples


class PartFitter:
    """One task's text budget per part and its prompt limit, lowered as refusals teach."""

    def __init__(self, plan: Plan, windows: ContextWindows, text: str, task: object,
                 reserve: Callable[[int], int] | None = None) -> None:
        self.plan, self.windows, self.text, self.task = plan, windows, text, task
        self.budget = plan.budget  # tokens of text (our count) in a part cut from now on
        self.reserve = plan.reserve  # tokens kept for the answer (a quarter of a smaller window learned)
        self._reserve_for = reserve or (lambda _window: plan.reserve)
        self.limit = plan.window.tokens - plan.reserve  # the provider's count of a part's prompt, at most

    @property
    def our_limit(self) -> int:
        """The limit on a part's prompt by our count."""
        return int(self.limit / (self.windows.ratio(self.plan.model) or 1.0))

    def learn(self, answer: PartAnswer) -> tuple[str, int]:
        """What a context-length refusal teaches: the window, and the provider's tokens per one of ours.
        A part the plan cut teaches the model's ratio, and so the budget of every part cut from now on; a
        piece of a part already cut again only its own (a dense stretch, or a provider whose count is off,
        must not shrink every later part). Returns what was learned, in words, and the budget it gives."""
        error, plan, model = answer.error, self.plan, self.plan.model
        assert isinstance(error, ContextWindowError)
        window = self.windows.learn(model, error.window).tokens if error.window else plan.window.tokens
        if window < plan.window.tokens:  # the answer's room is a share of the window, when not set
            self.reserve = min(self.reserve, self._reserve_for(window))
        self.limit = min(self.limit, window - self.reserve)
        theirs = provider_prompt(error.prompt_tokens, error.requested_tokens, answer.answer_room)
        learned = f"window {window:,} tokens"
        ratio = self.windows.ratio(model) or 1.0
        if theirs and answer.prompt_tokens:
            here = theirs / answer.prompt_tokens
            ratio = self.windows.learn_ratio(model, theirs, answer.prompt_tokens) if answer.part.depth == 0 else \
                max(ratio, here)
            learned += (f", it counted {theirs:,} tokens where we count {answer.prompt_tokens:,}: {here:.2f} of its "
                        f"tokens per one of ours" + (" (learned for this model)" if answer.part.depth == 0 else ""))
        budget = max(MIN_PART_TOKENS, min(self.budget, text_budget(window, self.reserve, plan.overhead, plan.examples,
                                                                   ratio)))
        if answer.part.depth == 0:
            self.budget = budget
        return learned, budget

    def calibrate(self, answer: PartAnswer) -> str | None:
        """What an answered part's bill teaches: the provider's prompt tokens against our count of the same
        prompt. A provider that counts more lowers the budget of the parts cut from now on, before any of
        them is refused. Returns what was learned, in words, when it changed the budget."""
        usage = answer.usage
        if answer.prompt_tokens is None or usage.calls != 1 or usage.repairs or not usage.prompt_tokens:
            return None  # a cached answer bills nothing; a repaired one billed two prompts
        ratio = self.windows.learn_ratio(self.plan.model, usage.prompt_tokens, answer.prompt_tokens)
        plan = self.plan
        budget = max(MIN_PART_TOKENS, min(self.budget, text_budget(self.limit + self.reserve, self.reserve,
                                                                   plan.overhead, plan.examples, ratio)))
        if budget >= self.budget:
            return None
        self.budget = budget
        return (f"it billed {usage.prompt_tokens:,} prompt tokens where we count {answer.prompt_tokens:,}: "
                f"{ratio:.2f} of its tokens per one of ours")

    def pieces(self, answer: PartAnswer) -> list[Chunk]:
        """A refused part cut again: smaller by at least what the provider's count says."""
        chunk, depth = answer.part.chunk, answer.part.depth
        learned, budget = self.learn(answer)
        error = answer.error
        assert isinstance(error, ContextWindowError)
        theirs = provider_prompt(error.prompt_tokens, error.requested_tokens, answer.answer_room)
        tokenizer = self.plan.tokenizer
        tokens = tokenizer.count(self.text[chunk.start : chunk.end])
        # `limit` is the provider's room for the prompt by its own count (the window less the answer's room).
        smaller = shrunk_budget(tokens, self.limit, theirs, budget, MIN_PART_TOKENS)
        pieces = list(split_text(self.text, tokenizer, smaller, min(self.plan.overlap, smaller // 4),
                                 start=chunk.start, stop=chunk.end))
        log.info("task %s: part %d-%d (%d tokens of text by our count) refused as too long by %s (%s); asking it "
                 "again in %d parts of up to %d tokens (re-split %d of at most %d); parts cut from now on hold up "
                 "to %d tokens", self.task, chunk.start, chunk.end, tokens, self.plan.model, learned, len(pieces),
                 smaller, depth + 1, MAX_SPLITS, self.budget)
        return pieces


def unread_gaps(answers: list[PartAnswer], failures: list[PartAnswer]) -> list[Gap]:
    """The characters of the split text that no answered part read, with the failed part's error."""
    def why(answer: PartAnswer) -> str:
        error = answer.error
        assert error is not None
        refused = f"refused as too long after {answer.part.depth} re-splits: " if answer.overflow else ""
        return f"{refused}{error.message}"[:240]
    return unread([(a.part.chunk.start, a.part.chunk.end) for a in answers],
                  [(a.part.chunk.start, a.part.chunk.end, why(a)) for a in failures])
