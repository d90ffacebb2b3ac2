"""Split a text too long for one prompt into overlapping parts that fit, on natural boundaries.

Each part holds at most `budget` tokens (counted by a `Measure`, the model's tokenizer in
production) and re-reads about `overlap` tokens before its first new character, so an entity cut
by one part's end is whole in the next. Cuts fall on the strongest boundary in the last quarter
of what fits: a blank line, else a line break, else a sentence end, else a space; only a text
with none of these is cut anywhere, and then never inside a character and its combining marks, an
emoji sequence or a CRLF.

Cuts are content-defined: among the boundaries of the strongest kind, the one whose surrounding
characters hash lowest wins (crc32, the same in every process). An edit therefore moves only the
cuts near it; the parts after it are cut where they were, so their prompts, and their cached
answers, stay the same: a changed document pays only for the parts that changed.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

# The strongest boundary first; a cut goes where the match ends (the next part starts at content).
BOUNDARIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("paragraph", re.compile(r"\n[^\S\n]*\n\s*")),
    ("line", re.compile(r"\n\s*")),
    ("sentence", re.compile(r"[.!?…]+[\"'”’)\]]*\s+|[。！？]+[」』）]*\s*")),
    ("space", re.compile(r"\s+")),
)
MIN_FILL = 0.75  # a part is cut within the last quarter of what would fit
HASH_REACH = 24  # characters on each side of a boundary that decide its hash
_GLUE = frozenset("\u200d\u200c\ufe0e\ufe0f\u20e3")  # joiners and selectors bind to their neighbours


class Measure(Protocol):
    def fit(self, text: str, tokens: int) -> int:
        """How many leading characters of `text` fit in `tokens` tokens (all of them when it fits)."""
        ...


@dataclass(frozen=True)
class Chunk:
    """A part of the text: [start, end), of which [fresh, end) no earlier part covered."""

    start: int
    end: int
    fresh: int

    @property
    def overlap(self) -> int:
        return self.fresh - self.start


class CharMeasure:
    """A fixed number of characters a token: for tests and for estimates without a tokenizer."""

    def __init__(self, chars_per_token: float = 4.0) -> None:
        self.chars_per_token = chars_per_token

    def fit(self, text: str, tokens: int) -> int:
        return min(len(text), int(tokens * self.chars_per_token))


def _glued(text: str, position: int) -> bool:
    """Whether cutting before `position` would split a grapheme (a mark, an emoji sequence, CRLF)."""
    if position <= 0 or position >= len(text):
        return False
    after, before = text[position], text[position - 1]
    if unicodedata.combining(after) or after in _GLUE or before in _GLUE:
        return True
    if "\U0001f3fb" <= after <= "\U0001f3ff" or "\U000e0020" <= after <= "\U000e007f":  # skin tones, tag sequences
        return True
    return before == "\r" and after == "\n"


def _mark(text: str, position: int) -> int:
    return zlib.crc32(text[max(0, position - HASH_REACH) : position + HASH_REACH].encode("utf-8", "surrogatepass"))


def choose_cut(text: str, low: int, high: int) -> int:
    """The cut in [low, high]: the strongest kind of boundary there, the one whose hash is lowest."""
    if high <= low:
        return high
    for _kind, pattern in BOUNDARIES:
        # Start a little early: a boundary's match may begin before `low` and end inside the range.
        ends = [m.end() for m in pattern.finditer(text, max(0, low - 64), high) if low <= m.end() <= high]
        ends = [end for end in ends if not _glued(text, end)]
        if ends:
            return min(ends, key=lambda end: (_mark(text, end), end))
    cut = high
    while cut > low and _glued(text, cut):
        cut -= 1
    return cut


def _fit(text: str, start: int, stop: int, measure: Measure, budget: int, guess: int) -> int:
    """The end of the longest piece from `start` within `budget` tokens. The window handed to the
    measure is grown until the answer lies well inside it, so the answer never depends on `guess`."""
    length = max(guess, 256)
    while True:
        window = text[start : min(stop, start + length)]
        fits = measure.fit(window, budget)
        if start + len(window) >= stop or fits < len(window) - 64:
            return start + fits
        length = int(length * 1.25) + 256


def split_text(text: str, measure: Measure, budget: int, overlap: int, start: int = 0,
               stop: int | None = None, fresh: int | None = None) -> Iterator[Chunk]:
    """The parts of text[start:stop], in order, lazily (so asking the first parts can start at once);
    `fresh`: where the first part's new text begins, when it re-reads the end of a part cut before."""
    stop = len(text) if stop is None else stop
    if budget < 1:
        raise ValueError("budget must be at least one token")
    overlap = max(0, min(overlap, budget // 4))
    part_start = start
    fresh = start if fresh is None else fresh
    guess = budget * 4
    while True:
        high = max(_fit(text, part_start, stop, measure, budget, guess), part_start + 1)
        if high >= stop:
            yield Chunk(part_start, stop, fresh)
            return
        if high <= fresh:  # the re-read part alone filled the budget: drop it for this part
            part_start = fresh
            continue
        chars_per_token = max((high - part_start) / budget, 0.01)
        guess = int(budget * chars_per_token * 1.05) + 128  # a little more than fits: each window is tokenised
        cut = choose_cut(text, fresh + max(1, int((high - fresh) * MIN_FILL)), high)
        if cut <= fresh:  # nothing cuttable after the fresh start (a single glued run): cut where it fits
            cut = high
        yield Chunk(part_start, cut, fresh)
        span = overlap * chars_per_token
        low_back, high_back = max(part_start + 1, int(cut - 1.5 * span)), int(cut - 0.5 * span)
        part_start = choose_cut(text, low_back, high_back) if overlap and low_back < high_back else cut
        fresh = cut


def split_after(text: str, measure: Measure, budget: int, overlap: int, after: Chunk, chars_per_token: float
                ) -> Iterator[Chunk]:
    """The parts that follow `after`, a part cut already (with another budget, perhaps): the first re-reads
    about `overlap` tokens before its end, cut on a boundary as split_text cuts its overlaps."""
    if after.end >= len(text):
        return iter(())
    span = overlap * chars_per_token
    low, high = max(after.start + 1, int(after.end - 1.5 * span)), int(after.end - 0.5 * span)
    start = choose_cut(text, low, high) if overlap and low < high else after.end
    return split_text(text, measure, budget, overlap, start=start, fresh=after.end)


@dataclass(frozen=True)
class Found:
    """An aligned span a part found, in whole-text offsets; `group` is what it must agree with (one
    control on one object), `part` indexes the `Chunk` it came from, `rank` breaks ties (lower first)."""

    start: int
    end: int
    label: str
    group: str
    part: int
    score: float = 1.0


@dataclass
class Merged:
    kept: list[int]  # indexes into the found list, in text order
    duplicates: int = 0  # found by two parts (an overlap), kept once
    cut_off: int = 0  # touching a part's cut edge while another part read it whole: dropped
    conflicts: int = 0  # overlapping a better span of the same label from another part: dropped


class SpanIndex:
    """Spans by start, to find the ones overlapping a span without a look at every other: a 1 MB document's 500
    entities were 125,000 comparisons (20 ms at the end of every long task) when each was set against all."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._spans: list[Found] = []
        self._longest = 0

    def add(self, span: Found) -> None:
        at = bisect.bisect_right(self._starts, span.start)
        self._starts.insert(at, span.start)
        self._spans.insert(at, span)
        self._longest = max(self._longest, span.end - span.start)

    def overlapping(self, span: Found) -> Iterator[Found]:
        """The spans sharing a character with `span`: none that starts `longest` before it can reach it."""
        low = bisect.bisect_right(self._starts, span.start - self._longest)
        high = bisect.bisect_left(self._starts, span.end)
        return (other for other in self._spans[low:high] if other.start < span.end and span.start < other.end)


def _touches_cut(found: Found, part: Chunk, length: int) -> bool:
    return (found.end == part.end and part.end < length) or (found.start == part.start and part.start > 0)


def _inside(found: Found, part: Chunk, length: int) -> bool:
    return part.start <= found.start and found.end <= part.end and not _touches_cut(found, part, length)


def _centrality(found: Found, part: Chunk) -> int:
    return min(found.start - part.start, part.end - found.end)


def _clash(one: Found, other: Found) -> bool:
    """Whether two spans of one control from different parts cannot both stay. The aligner's rule
    (core/align) across parts: one label's overlapping spans are one entity read twice; spans of
    different labels may nest ("Bank of America" / "America") but not cross or share a place."""
    if not (one.start < other.end and other.start < one.end):
        return False
    if one.label == other.label or (one.start, one.end) == (other.start, other.end):
        return True
    return not ((one.start <= other.start and other.end <= one.end) or
                (other.start <= one.start and one.end <= other.end))


def merge_found(found: list[Found], parts: list[Chunk], length: int) -> Merged:
    """One pass's spans: duplicates from overlaps kept once, pieces of entities cut by a part's edge
    dropped when another part read the whole place, and of two spans from different parts that
    `_clash` the better (alignment score, then distance from its part's edges) kept.
    Spans of the same part never displace each other: the aligner already decided between them."""
    merged = Merged([])
    order = sorted(range(len(found)), key=lambda i: (-found[i].score, -_centrality(found[i], parts[found[i].part]),
                                                      found[i].start, i))
    accepted: dict[str, SpanIndex] = {}
    seen: set[tuple[int, int, str, str]] = set()
    for index in order:
        item = found[index]
        key = (item.start, item.end, item.label, item.group)
        if key in seen:
            merged.duplicates += 1
            continue
        part = parts[item.part]
        if _touches_cut(item, part, length) and any(
                j != item.part and _inside(item, other, length) for j, other in enumerate(parts)):
            merged.cut_off += 1
            continue
        rivals = accepted.setdefault(item.group, SpanIndex())
        if any(rival.part != item.part and _clash(rival, item) for rival in rivals.overlapping(item)):
            merged.conflicts += 1
            continue
        seen.add(key)
        rivals.add(item)
        merged.kept.append(index)
    merged.kept.sort(key=lambda i: (found[i].start, found[i].end, i))
    return merged


def add_new_pass(kept: list[Found], extra: list[Found]) -> list[Found]:
    """A further pass's spans that overlap nothing already kept in their group (its other finds
    are the same entities seen again, or disagreements the first pass settled)."""
    added: list[Found] = []
    taken: dict[str, SpanIndex] = {}
    for item in kept:
        taken.setdefault(item.group, SpanIndex()).add(item)
    for item in extra:
        spans = taken.setdefault(item.group, SpanIndex())
        if not any(True for _ in spans.overlapping(item)):
            added.append(item)
            spans.add(item)
    return added
