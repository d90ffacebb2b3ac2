"""What the aligner is given and what it hands back: quoted entities and their spans."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class MatchKind(str, enum.Enum):
    EXACT = "exact"
    CASE_INSENSITIVE = "case_insensitive"
    NORMALISED = "normalised"
    FUZZY = "fuzzy"
    UNALIGNED = "unaligned"


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    position: int | None = None  # approximate char offset claimed by the model


# The key of a Label Studio region's `meta` that says how its quote was found (its own `text` key
# is the region's note in the labeling UI, so it is left alone).
ALIGNMENT_META = "alignment"


@dataclass(frozen=True)
class Span:
    entity: Entity
    kind: MatchKind
    start: int | None
    end: int | None
    text: str | None
    score: float

    @property
    def aligned(self) -> bool:
        return self.kind is not MatchKind.UNALIGNED

    def meta(self) -> dict[str, object]:
        """How the span was found, for a region's `meta`: a reviewer can filter the fuzzy ones."""
        return {ALIGNMENT_META: self.kind.value, "alignment_score": round(self.score / 100, 4)}


def aligned_spans(spans: Iterable[Span]) -> list[Span]:
    """The spans that carry offsets, in their original order."""
    return [span for span in spans if span.aligned]
