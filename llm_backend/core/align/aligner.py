"""The order in which entities are placed: every listing's verbatim place, chosen for the whole
answer at once (placement.py), then fuzzy matches for the quotes found nowhere, then (on request)
extra occurrences."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .candidate import Candidate
from .exact import ExactMatcher
from .fuzzy import FuzzyMatcher
from .options import DEFAULT_OPTIONS, AlignOptions
from .placement import Listing, place
from .quotes import Quote, prepare
from .spans import Entity, MatchKind, Span
from .taken import FREE, TakenSpans
from .textforms import TextForms

# The package's name, not this module's: logging configured for
# "llm_backend.core.align" before the split keeps applying unchanged.
log = logging.getLogger(__package__)


class Aligner:
    """The state one call of align() shares between its steps: the text's forms and the spans taken."""

    def __init__(self, text: str, options: AlignOptions) -> None:
        self.text = text
        self.options = options
        self.forms = TextForms(text)
        self.taken = TakenSpans()
        self.exact = ExactMatcher(self.forms, options)
        self.fuzzy = FuzzyMatcher(self.forms, options, self.taken)

    def take(self, candidate: Candidate, quote: Quote) -> None:
        self.taken.add(candidate.start, candidate.end, quote.core)

    def expand(self, primary: Candidate, quote: Quote) -> list[Candidate]:
        """Free occurrences of the quote (of the matched text, for a fuzzy match)."""
        fuzzy = primary.kind is MatchKind.FUZZY
        needle = prepare(self.text[primary.start : primary.end]) if fuzzy else quote
        if needle is None:
            return []
        out = []
        ordered = sorted(self.exact.candidates(needle), key=lambda hit: (hit[1].start, hit[0]))
        for _, candidate in ordered:
            if self.taken.conflict(candidate.start, candidate.end, "") != FREE:
                continue
            self.take(candidate, quote)
            if fuzzy:
                # A copy of a fuzzy match is as far from the quote as the match is.
                kind, score = primary.kind, primary.score
                out.append(Candidate(candidate.start, candidate.end, kind, score, candidate.widened))
            else:
                out.append(candidate)
        return out


def align(text: str, entities: Sequence[Entity], options: AlignOptions = DEFAULT_OPTIONS) -> list[Span]:
    """Align each quoted entity to offsets in ``text``; see the package docstring.

    Returns one Span per entity in input order (UNALIGNED where nothing fits);
    with ``options.all_occurrences`` an aligned entity yields one Span per
    occurrence, ordered by start.
    """
    aligner = Aligner(text, options)
    listings = [
        Listing(index, quote, None if entity.position is None else min(max(entity.position, 0), len(text)))
        for index, entity in enumerate(entities)
        if entity.text and (quote := prepare(entity.text)) is not None
    ]
    # Verbatim places are chosen for the whole answer before any fuzzy search, so a typo'd quote
    # can never take the occurrence an exact quote needs.
    placed, found = place(listings, aligner.exact, aligner.taken)
    chosen: list[Candidate | None] = [placed.get(index) for index in range(len(entities))]
    for listing in listings:
        if listing.index not in found:
            chosen[listing.index] = candidate = aligner.fuzzy.match(listing.quote, listing.hint)
            if candidate is not None:
                aligner.take(candidate, listing.quote)
    # Extra occurrences only after every entity has its own span.
    extra: list[list[Candidate]] = [[] for _ in entities]
    for listing in listings if options.all_occurrences else ():
        if (candidate := chosen[listing.index]) is not None:
            extra[listing.index] = aligner.expand(candidate, listing.quote)

    spans: list[Span] = []
    for entity, candidate, more in zip(entities, chosen, extra, strict=True):
        if candidate is None:
            log.debug("unaligned entity %r (%s): no acceptable match in text", entity.text, entity.label)
            spans.append(Span(entity, MatchKind.UNALIGNED, None, None, None, 0.0))
        else:
            spans.extend(
                Span(entity, hit.kind, hit.start, hit.end, text[hit.start : hit.end], hit.score)
                for hit in sorted([candidate, *more], key=lambda hit: hit.start)
            )
    return spans
