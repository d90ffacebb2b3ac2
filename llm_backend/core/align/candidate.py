"""A place in the text where a quote might go, with what the ranking needs to know."""

from __future__ import annotations

from dataclasses import dataclass

from .spans import MatchKind


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    kind: MatchKind
    score: float
    # Cut a word and was widened to whole words (every candidate starts and ends on word boundaries:
    # a hit inside a word is widened or dropped).
    widened: bool
