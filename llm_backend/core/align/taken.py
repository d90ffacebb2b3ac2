"""The record of spans handed out so far, and how a new span would clash with them."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

# How a span relates to those already taken, from best to worst; the ranking
# compares these numbers, so their order matters.
FREE = 0
NESTS = 1  # inside or around another quote's span ("America" in "Bank of America")
CROSSES = 2  # partly overlaps another quote's span
FORBIDDEN = 3  # the very same span, or overlapping a span of the same quote


class TakenSpans:
    """Spans handed out so far, sorted by start for cheap overlap queries."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, str]] = []  # (start, end, quote core)
        self._max_length = 0

    def add(self, start: int, end: int, key: str) -> None:
        insort(self.spans, (start, end, key))
        self._max_length = max(self._max_length, end - start)

    def overlapping(self, start: int, end: int) -> list[str]:
        """The quote cores of the taken spans that share a character with [start, end)."""
        low = bisect_right(self.spans, (start - self._max_length, 1 << 62, ""))
        high = bisect_left(self.spans, (end, -1, ""))
        return [key for taken_start, taken_end, key in self.spans[low:high] if taken_end > start]

    def conflict(self, start: int, end: int, key: str) -> int:
        """The worst relation (FREE .. FORBIDDEN) of [start, end) for quote ``key`` to a taken span."""
        # No span starting before start - _max_length can reach start.
        low = bisect_right(self.spans, (start - self._max_length, 1 << 62, ""))
        high = bisect_left(self.spans, (end, -1, ""))
        worst = FREE
        for taken_start, taken_end, taken_key in self.spans[low:high]:
            if taken_end > start:
                if (taken_start, taken_end) == (start, end) or taken_key == key:
                    return FORBIDDEN
                nested = (taken_start <= start and end <= taken_end) or (start <= taken_start and taken_end <= end)
                worst = max(worst, NESTS if nested else CROSSES)
        return worst
