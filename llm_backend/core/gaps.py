"""What of a long text no part read: the ranges left unread when parts failed, and what that costs the score.

Pure: the ranges that were read and the parts that failed in, the gaps out. A gap is a stretch of
the split text inside a failed part that no answered part (of any pass) covered; overlaps mean a
failed part's edges are often read by its neighbours, so a gap can be smaller than its part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """Characters [start, end) of the split text that no part read, and why (the failed part's error)."""

    start: int
    end: int
    reason: str

    def describe(self, obj: str) -> str:
        return f"characters {self.start:,}-{self.end:,} of {obj} not read ({self.reason})"


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def unread(read: Iterable[tuple[int, int]], failed: Iterable[tuple[int, int, str]]) -> list[Gap]:
    """The parts of each failed range that no read range covers, in text order, adjacent gaps of one
    reason joined."""
    covered = _merged(read)
    gaps: list[Gap] = []
    for start, end, reason in sorted(failed):
        position = start
        for low, high in covered:
            if high <= position or low >= end:
                continue
            if low > position:
                gaps.append(Gap(position, low, reason))
            position = max(position, high)
        if position < end:
            gaps.append(Gap(position, end, reason))
    joined: list[Gap] = []
    for gap in gaps:
        if joined and gap.start <= joined[-1].end and gap.reason == joined[-1].reason:
            joined[-1] = Gap(joined[-1].start, max(joined[-1].end, gap.end), gap.reason)
        elif not joined or gap.start >= joined[-1].end:
            joined.append(gap)
        else:  # overlapping gaps of two reasons: the later one keeps only what the earlier did not cover
            if gap.end > joined[-1].end:
                joined.append(Gap(joined[-1].end, gap.end, gap.reason))
    return joined


def read_share(length: int, gaps: Iterable[Gap]) -> float:
    """The share of the text's characters some part read (1.0 without gaps)."""
    missing = sum(gap.end - gap.start for gap in gaps)
    return 1.0 if length <= 0 else max(0.0, 1.0 - missing / length)


def gap_score(score: float | None, length: int, gaps: list[Gap]) -> float | None:
    """The task's score, lowered by the share left unread: a prediction that missed a tenth of its text is
    worth at most 0.9 of one that read it all. A task without a score gets the read share itself."""
    if not gaps:
        return score
    share = read_share(length, gaps)
    return share if score is None else score * share
