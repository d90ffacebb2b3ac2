"""Steps 1-3: the quote's verbatim occurrences -- exact, case-insensitive, normalised -- each
checked against word and grapheme-cluster boundaries."""

from __future__ import annotations

from collections.abc import Iterator

from rapidfuzz import fuzz

from .candidate import Candidate
from .occurrences import occurrences
from .options import AlignOptions
from .quotes import Quote
from .spans import MatchKind
from .textforms import NormMap, TextForms, is_boundary, is_cluster_boundary

EXACT_STEP, CASE_INSENSITIVE_STEP, NORMALISED_STEP = 0, 1, 2
STEPS = (EXACT_STEP, CASE_INSENSITIVE_STEP, NORMALISED_STEP)
STEP_KINDS = (MatchKind.EXACT, MatchKind.CASE_INSENSITIVE, MatchKind.NORMALISED)


class ExactMatcher:
    def __init__(self, forms: TextForms, options: AlignOptions) -> None:
        self.forms = forms
        self.text = forms.text
        self.options = options

    def hits(self, quote: Quote, step: int) -> list[tuple[int, int]]:
        """Occurrences of the quote for one step, in text order (original offsets)."""
        if step == NORMALISED_STEP:
            # Two needles (the quote with and without its edge punctuation): their hits are merged
            # into text order, which the choice of "the first free occurrence" relies on; at one
            # start the longer hit (the one with the quote's punctuation) comes first.
            norm_map = self.forms.norm
            found = {
                (norm_map.orig_start(index), norm_map.orig_end(index + len(needle)))
                for needle in dict.fromkeys((quote.norm, quote.core))
                for index in occurrences(norm_map.text, needle)
            }
            return sorted(found, key=lambda hit: (hit[0], -hit[1]))
        haystack, needle = (self.text, quote.raw) if step == EXACT_STEP else (self.forms.folded, quote.folded)
        return [(index, index + len(needle)) for index in occurrences(haystack, needle)]

    def _splits_a_cluster(self, start: int, end: int) -> bool:
        return not (is_cluster_boundary(self.text, start) and is_cluster_boundary(self.text, end))

    def evaluate(self, start: int, end: int, step: int, quote: Quote) -> Candidate | None:
        """The hit as a candidate: whole words as they are; a hit inside a longer word (or inside a
        grapheme cluster) only widened to whole words that still match, never as an exact match."""
        if is_boundary(self.text, start) and is_boundary(self.text, end):
            return Candidate(start, end, STEP_KINDS[step], 100.0, False)
        return self._widen(start, end, quote)

    def _widen(self, start: int, end: int, quote: Quote) -> Candidate | None:
        """The hit stretched to whole words, if that still matches the quote (a truncated quote)."""
        text, reach = self.text, len(quote.core) // 2 + 2
        short = len(quote.core) < self.options.min_fuzzy_length
        if short and not self._splits_a_cluster(start, end):
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
            return Candidate(wide_start, wide_end, MatchKind.NORMALISED, 100.0, True)
        if short:
            return None
        score = fuzz.ratio(quote.core, got, score_cutoff=self.options.fuzzy_threshold)
        return Candidate(wide_start, wide_end, MatchKind.FUZZY, score, True) if score else None

    def candidates(self, quote: Quote) -> Iterator[tuple[int, Candidate]]:
        """(step, candidate) for each distinct hit, in step order and text order within a step."""
        seen: set[tuple[int, int]] = set()
        for step in STEPS:
            for start, end in self.hits(quote, step):
                if (start, end) not in seen:
                    seen.add((start, end))
                    candidate = self.evaluate(start, end, step, quote)
                    if candidate is not None:
                        yield step, candidate
