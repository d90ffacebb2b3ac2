"""Confidence scores from token log-probabilities, located on the values they decided.

For each control we find, in the raw JSON reply, the characters of the value the model chose (the
choice string, each entity's label, the rating...), take the tokens covering them, and turn their
log-probabilities into a probability: exp(sum) for a label or a number (the probability of that
exact value given the prompt), exp(mean) for free text (per-token confidence; a sum would punish
length). The task's score is the lowest region score: the decision most worth a reviewer's look.
"""

from __future__ import annotations

from typing import Any

from .config import LabelConfig
from .controls import spec_for
from .reply_tokens import ReplyTokens, token_offsets

__all__ = ["control_scores", "token_offsets"]


def control_scores(config: LabelConfig, content: str, logprobs: list[dict[str, Any]] | None,
                   start: int | None = None) -> dict[str, list[float | None]]:
    """{control name: [score per decision]}; for Labels, one score per entity in the reply's order.

    `start` is where the answer object begins in `content` (after a `<think>` block, a preamble...).
    Where each control's decisions sit in its value, and how their tokens score, is its spec's
    (`ControlSpec.token_scores`, core/controls/scoring.py)."""
    tokens = token_offsets(logprobs, content)
    if tokens is None:
        return {}
    reply = ReplyTokens(content, tokens)
    top = content.find("{") if start is None else start
    scores: dict[str, list[float | None]] = {}
    for control in config.controls:
        try:
            span = reply.key_span(control.name, max(top, 0))
            if span is None:
                continue
            scores[control.name] = spec_for(control.kind).token_scores(control, reply, span)
        except (ValueError, IndexError):
            continue  # a reply we cannot walk gets no score rather than a wrong one
    return scores
