"""Steps 1-3: the quote's verbatim occurrences -- exact, case-insensitive, normalised --
and the choice of the best one still free."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rapidfuzz import fuzz

from .candidate import Candidate
from .occurrences import occurrences
from .options import AlignOptions
from .quotes import Quote
from .spans import MatchKind
from .taken import FORBIDDEN, FREE, TakenSpans
from .textforms import NormMap, TextForms, is_boundary, is_mark

EXACT_STEP, CASE_INSENSITIVE_STEP, NORMALISED_STEP = 0, 1, 2
STEP_KINDS = (MatchKind.EXACT, MatchKind.CASE_INSENSITIVE, MatchKind.NORMALISED)

# (cuts a word, widened, conflict, step, distance from the hint or start); smallest wins.
Rank = tuple[bool, bool, int, int, int]


class ExactMatcher:
    def __init__(self, forms: TextForms, options: AlignOptions, taken: TakenSpans) -> None:
        self.forms = forms
        self.text = forms.text
        self.options = options
        self.taken = taken

    def _hits(self, quote: Quote, step: int) -> Iterator[tuple[int, int]]:
        """Occurrences of the quote for one step, in text order (original offsets)."""
        if step == NORMALISED_STEP:
            norm_map = self.forms.norm
            for needle in dict.fromkeys((quote.norm, quote.core)):
                for index in occurrences(norm_map.text, needle):
                    yield norm_map.orig_start(index), norm_map.orig_end(index + len(needle))
            return
        haystack, needle = (self.text, quote.raw) if step == EXACT_STEP else (self.forms.folded, quote.folded)
        for index in occurrences(haystack, needle):
            yield index, index + len(needle)

    def _splits_a_character(self, start: int, end: int) -> bool:
        text = self.text
        return (start < len(text) and is_mark(text[start])) or (end < len(text) and is_mark(text[end]))

    def _evaluate(self, start: int, end: int, step: int, quote: Quote) -> Candidate | None:
        if is_boundary(self.text, start) and is_boundary(self.text, end):
            return Candidate(start, end, STEP_KINDS[step], 100.0, True, False)
        wide = self._widen(start, end, quote)
        if wide is not None:
            return wide
        if self._splits_a_character(start, end):
            return None  # would split a character from its accents
        return Candidate(start, end, STEP_KINDS[step], 100.0, False, False)

    def _widen(self, start: int, end: int, quote: Quote) -> Candidate | None:
        """The hit stretched to whole words, if that still matches the quote (a truncated quote)."""
        text, reach = self.text, len(quote.core) // 2 + 2
        short = len(quote.core) < self.options.min_fuzzy_length
        if short and not self._splits_a_character(start, end):
            return None  # short quotes are only widened over combining marks; skip the costly checks
        wide_start, wide_end = start, end
        while not is_boundary(text, wide_start) and start - wide_start < reach:
            wide_start -= 1
        while not is_boundary(text, wide_end) and wide_end - end < reach:
            wide_end += 1
        if not (is_boundary(text, wide_start) and is_boundary(text, wide_end)):
            return None
        got = NormMap(text[wide_start:wide_end]).text.strip()
        if got in (quote.norm, quote.core):  # only accents or a combining mark were cut
            return Candidate(wide_start, wide_end, MatchKind.NORMALISED, 100.0, True, True)
        if short:
            return None
        score = fuzz.ratio(quote.core, got, score_cutoff=self.options.fuzzy_threshold)
        return Candidate(wide_start, wide_end, MatchKind.FUZZY, score, True, True) if score else None

    def candidates(self, quote: Quote, until: Callable[[int], bool] = lambda step: False
                   ) -> Iterator[tuple[int, Candidate]]:
        """(step, candidate) for each distinct hit, in step order and text order within a step; no later
        step is searched once `until(step)` says the steps so far settled it."""
        seen: set[tuple[int, int]] = set()
        for step in (EXACT_STEP, CASE_INSENSITIVE_STEP, NORMALISED_STEP):
            if step and until(step):
                return  # the later steps' forms (the normalised text above all) are never built
            for start, end in self._hits(quote, step):
                if (start, end) not in seen:
                    seen.add((start, end))
                    candidate = self._evaluate(start, end, step, quote)
                    if candidate is not None:
                        yield step, candidate

    def best(self, quote: Quote, hint: int | None) -> tuple[Candidate | None, bool]:
        """Best usable hit of steps 1-3, and whether the quote occurs at all."""
        best: Candidate | None = None
        best_rank: Rank | None = None
        found = False

        def settled(step: int) -> bool:
            # A free whole-word hit of an earlier step outranks anything a later step can find.
            return best_rank is not None and best_rank[:3] == (False, False, FREE)

        for step, candidate in self.candidates(quote, settled):
            found = True
            if (
                best_rank is not None
                and best_rank[:3] == (False, False, FREE)
                and (hint is None or step > best_rank[3] or candidate.start - hint >= best_rank[4])
            ):
                break  # hits come in step and text order: none of the rest can rank higher
            conflict = self.taken.conflict(candidate.start, candidate.end, quote.core)
            if conflict == FORBIDDEN:
                continue
            distance = abs(candidate.start - hint) if hint is not None else candidate.start
            rank = (not candidate.whole, candidate.widened, conflict, step, distance)
            if best_rank is None or rank < best_rank:
                best, best_rank = candidate, rank
        return best, found
