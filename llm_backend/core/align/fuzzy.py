"""Step 4: the best approximate match of a quote that occurs nowhere verbatim."""

from __future__ import annotations

import re

from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

from .candidate import Candidate
from .occurrences import find_all
from .options import AlignOptions
from .quotes import Quote
from .spans import MatchKind
from .taken import FORBIDDEN, FREE, NESTS, TakenSpans
from .textforms import NormMap, TextForms, is_boundary, is_cluster_boundary

LONG_QUOTE = 64  # quotes longer than this are costly to re-scan and often contain other entities
_PIECEWISE, _PIECE = 160, 48  # longer quotes are searched for by pieces of this length
_PIECES = 3  # head, middle and tail
_TOP_WINDOWS = 8  # best windows refined per search

# (score, segment start, segment end, window start, window end), normalised offsets
Window = tuple[float, int, int, int, int]


def _plausible(quote: str, found: str) -> bool:
    """Reject spans the ratio alone lets through.

    The ratio accepts "John Smith" for "John Smithson" and "Grace Schneider was"
    for "Grace Schneiderson": a span may hold characters the quote cut off
    (truncation), but not lack more of the quote's characters than a typo or
    two, and its first and last words must resemble the quote's -- a neighbouring
    word that happens to supply a few letters is not part of the entity.
    """
    if len(quote) - LCSseq.similarity(quote, found) > max(2, len(quote) // 10):
        return False
    quote_words, found_words = re.findall(r"\w+", quote), re.findall(r"\w+", found)
    if not (quote_words and found_words):
        return bool(quote_words) == bool(found_words)
    return fuzz.ratio(quote_words[0], found_words[0]) >= 50 and fuzz.ratio(quote_words[-1], found_words[-1]) >= 50


class FuzzyMatcher:
    def __init__(self, forms: TextForms, options: AlignOptions, taken: TakenSpans) -> None:
        self.forms = forms
        self.options = options
        self.taken = taken
        # (core, hint) searched for in vain. Spans are only ever added, so the same search fails again;
        # a different hint searches other stretches first, so it is another search.
        self.exhausted: set[tuple[str, int | None]] = set()

    @property
    def norm(self) -> NormMap:
        return self.forms.norm

    def match(self, quote: Quote, hint: int | None) -> Candidate | None:
        core, size = quote.core, len(self.norm.text)
        if len(core) < self.options.min_fuzzy_length or not size or (core, hint) in self.exhausted:
            return None
        candidate = self._match(core, size, hint)
        if candidate is None:
            self.exhausted.add((core, hint))
        return candidate

    def _may_share(self, candidate: Candidate, core: str) -> bool:
        """Whether the candidate may overlap the spans it overlaps: only those of quotes that nest
        in this one or hold it (a long quote of a passage holds the names in it)."""
        return all(other in core or core in other for other in self.taken.overlapping(candidate.start, candidate.end))

    def _match(self, core: str, size: int, hint: int | None) -> Candidate | None:
        if hint is not None:
            # Widen the search around the hint step by step, so the nearest
            # acceptable occurrence wins over an equally good distant one.
            centre, length, radius = self.norm.to_norm(hint), len(core), 0
            while True:
                low, high = max(0, centre - radius - length), min(size, centre + radius + 2 * length)
                candidate = self._search(core, self._free_stretches(low, high))
                if candidate is not None and self.taken.conflict(candidate.start, candidate.end, core) == FREE:
                    return candidate
                if radius >= self.options.hint_window or (low, high) == (0, size):
                    break
                radius = min(max(4 * radius, length), self.options.hint_window)
        candidate = self._search(core, [(0, size)])
        if candidate is None:
            return None
        # rapidfuzz reports *a* best window, not the first, and repeated mentions
        # are usually verbatim copies: the first free copy of the matched text
        # keeps "k-th listing -> k-th occurrence" without another fuzzy scan.
        candidate = self._first_free_copy(candidate) or candidate
        conflict = self.taken.conflict(candidate.start, candidate.end, core)
        if conflict == FREE or (conflict == NESTS and len(core) > LONG_QUOTE):
            return candidate
        if self.taken.spans:  # every copy of the best window is in use: look where nothing is taken
            free = self._search(core, self._free_stretches(0, size))
            if free is not None and self.taken.conflict(free.start, free.end, core) == FREE:
                return free
        return candidate if conflict < FORBIDDEN and self._may_share(candidate, core) else None

    def _first_free_copy(self, candidate: Candidate) -> Candidate | None:
        norm_map = self.norm
        needle = norm_map.text[norm_map.to_norm(candidate.start) : norm_map.to_norm(candidate.end)]
        for index in find_all(norm_map.text, needle):
            end = index + len(needle)
            if is_boundary(norm_map.text, index) and is_boundary(norm_map.text, end):
                orig_start, orig_end = norm_map.orig_start(index), norm_map.orig_end(end)
                text = self.forms.text
                if not (is_cluster_boundary(text, orig_start) and is_cluster_boundary(text, orig_end)):
                    continue
                if self.taken.conflict(orig_start, orig_end, "") == FREE:
                    return Candidate(orig_start, orig_end, candidate.kind, candidate.score, False)
        return None

    def _free_stretches(self, low: int, high: int) -> list[tuple[int, int]]:
        """Stretches of normalised text in [low, high) not covered by a taken span."""
        out, pos, norm_map = [], low, self.norm
        for start, end, _ in self.taken.spans:
            norm_start, norm_end = norm_map.to_norm(start), norm_map.to_norm(end)
            if norm_start >= high:
                break
            if norm_start > pos:
                out.append((pos, norm_start))
            pos = max(pos, norm_end)
        if pos < high:
            out.append((pos, high))
        return out

    def _search(self, core: str, segments: list[tuple[int, int]]) -> Candidate | None:
        """Best refined fuzzy match inside the given normalised stretches."""
        text, threshold = self.norm.text, self.options.fuzzy_threshold
        # A stretch shorter than this cannot reach the threshold against the quote.
        min_length = int(len(core) * threshold / (200.0 - threshold)) if threshold < 100 else len(core)
        segments = [(start, end) for start, end in segments if end - start >= min_length]
        windows: list[Window] = []
        for start, end in segments:
            if end - start <= len(core):
                windows.append((fuzz.ratio(core, text[start:end]), start, end, start, end))
            elif len(core) > _PIECEWISE:
                windows.extend(self._piece_windows(core, start, end))
            else:
                alignment = fuzz.partial_ratio_alignment(core, text[start:end], score_cutoff=max(0.0, threshold - 15))
                if alignment is not None:
                    windows.append(
                        (alignment.score, start, end, start + alignment.dest_start, start + alignment.dest_end)
                    )
        windows.sort(key=lambda window: -window[0])  # stable: equal scores stay in text order
        found = [
            candidate for window in windows[:_TOP_WINDOWS] if (candidate := self._refine(core, *window[1:])) is not None
        ]
        return max(found, key=lambda candidate: candidate.score, default=None)

    def _piece_windows(self, core: str, seg_start: int, seg_end: int) -> list[Window]:
        """Windows for a long quote from where its head, middle and tail land.

        partial_ratio slows down sharply with the needle's length (seconds for a
        5,000-character quote that is nowhere); short pieces are cheap to find.
        """
        length, segment = len(core), self.norm.text[seg_start:seg_end]
        # (implied quote start, piece offset in the quote, piece start, piece end, score)
        hits: list[tuple[int, int, int, int, float]] = []
        for offset in (0, (length - _PIECE) // 2, length - _PIECE):  # _PIECES of them
            alignment = fuzz.partial_ratio_alignment(
                core[offset : offset + _PIECE], segment, score_cutoff=self.options.fuzzy_threshold
            )
            if alignment is not None:
                piece_start, piece_end = seg_start + alignment.dest_start, seg_start + alignment.dest_end
                hits.append((piece_start - offset, offset, piece_start, piece_end, alignment.score))
        hits.sort()
        groups: list[list[tuple[int, int, int, int, float]]] = []
        for hit in hits:  # pieces that agree on where the quote starts
            if groups and hit[0] - groups[-1][-1][0] <= length // 4:
                groups[-1].append(hit)
            else:
                groups.append([hit])
        windows: list[Window] = []
        for group in groups:
            head, tail = min(group, key=lambda hit: hit[1]), max(group, key=lambda hit: hit[1])
            # The head piece fixes the start and the tail piece the end.
            window_start, window_end = head[2] - head[1], tail[3] + (length - tail[1] - _PIECE)
            # The mean over all three pieces, a piece that landed elsewhere or nowhere counting 0: a
            # window where one piece matched perfectly ranks below one where all three agree well.
            # The rank only orders the windows refined (at most three per stretch, _TOP_WINDOWS in
            # all); the final choice is by the refined span's own fuzz.ratio.
            windows.append((sum(hit[4] for hit in group) / _PIECES, seg_start, seg_end, window_start, window_end))
        return windows

    def _refine(self, core: str, seg_start: int, seg_end: int, window_start: int, window_end: int) -> Candidate | None:
        """Re-cut a window at word boundaries near its edges; keep the best ratio.

        partial_ratio_alignment's window is exactly as wide as the quote, so with
        insertions or deletions its edges are off by a few characters.
        """
        text, length, threshold = self.norm.text, len(core), self.options.fuzzy_threshold
        reach = min(max(3, length // 4 + 2), 48)
        starts = [
            pos
            for pos in range(max(seg_start, window_start - reach), min(seg_end - 1, window_start + reach) + 1)
            if not text[pos].isspace() and is_boundary(text, pos)
        ]
        ends = [
            pos
            for pos in range(max(seg_start + 1, window_end - reach), min(seg_end, window_end + reach) + 1)
            if not text[pos - 1].isspace() and is_boundary(text, pos)
        ]
        if length > LONG_QUOTE and starts and ends:
            # Trying every start/end pair costs too much for a long quote; its
            # edges are far apart, so each is settled against its own end of it.
            edge = min(length // 2, 32)

            def head_fit(start: int) -> tuple[float, int]:
                return fuzz.ratio(core[:edge], text[start : start + edge]), -abs(start - window_start)

            def tail_fit(end: int) -> tuple[float, int]:
                return fuzz.ratio(core[-edge:], text[end - edge : end]), -abs(end - window_end)

            starts, ends = [max(starts, key=head_fit)], [max(ends, key=tail_fit)]
        best: tuple[float, int, int, int] | None = None  # (score, -drift, start, end)
        for start in starts:
            for end in ends:
                span_length = end - start
                if span_length <= 0 or 200.0 * min(span_length, length) / (span_length + length) < threshold:
                    continue  # the length difference alone rules it out
                score = fuzz.ratio(core, text[start:end], score_cutoff=threshold)
                if not score or not _plausible(core, text[start:end]):
                    continue
                key = (score, -abs(start - window_start) - abs(end - window_end), start, end)
                if best is None or key[:2] > best[:2]:
                    best = key
        if best is None:
            return None
        norm_map = self.norm
        start, end = norm_map.orig_start(best[2]), norm_map.orig_end(best[3])
        if not (is_cluster_boundary(self.forms.text, start) and is_cluster_boundary(self.forms.text, end)):
            return None  # would cut an emoji sequence (its joiners are not in the normalised text)
        return Candidate(start, end, MatchKind.FUZZY, best[0], False)
