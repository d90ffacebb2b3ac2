"""Steps 1-3 for a whole answer: every listing's verbatim candidates, then one global choice.

Each candidate has a tier -- (widened, clash with spans already placed, inside an occurrence of a
longer quote of the answer, step) -- compared in that order, smallest first. The choice walks the
tiers from best to worst and, in each, the listings in the model's order; a listing takes its
first candidate of that tier (in text order; nearest its position hint if it has one) that is
still usable. So no listing settles for a worse place while a better one is open to it, and where
two listings want the same place the one the model listed first gets it. At the end the places a
repeated quote received are handed to its listings in text order: the k-th listing of a quote has
the k-th of them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from .candidate import Candidate
from .exact import STEPS, ExactMatcher
from .quotes import Quote
from .taken import CROSSES, FREE, NESTS, TakenSpans

# Tiers from best to worst: (widened, most clash allowed, embedded, step).
TIERS = [
    (widened, clash, embedded, step)
    for widened in (False, True)
    for clash in (FREE, NESTS, CROSSES)
    for embedded in (False, True)
    for step in STEPS
]


@dataclass(frozen=True)
class Listing:
    index: int  # position in the answer
    quote: Quote
    hint: int | None


class QuoteCandidates:
    """One quote's candidates, a step at a time (a quote found verbatim never builds the normalised
    text), grouped by (widened, embedded) in text order."""

    def __init__(self, quote: Quote, matcher: ExactMatcher, containers: list[QuoteCandidates]) -> None:
        self.quote = quote
        self.matcher = matcher
        self.containers = containers  # candidates of the answer's longer quotes that contain this one
        self._seen: set[tuple[int, int]] = set()
        self._kept: set[tuple[int, int]] = set()
        self._steps: list[dict[tuple[bool, bool], list[Candidate]]] = []
        self._spans: list[tuple[int, int]] | None = None

    def step(self, step: int) -> dict[tuple[bool, bool], list[Candidate]]:
        while len(self._steps) <= step:
            self._build(len(self._steps))
        return self._steps[step]

    def _build(self, step: int) -> None:
        groups: dict[tuple[bool, bool], list[Candidate]] = {}
        for start, end in self.matcher.hits(self.quote, step):
            if (start, end) in self._seen:
                continue  # an earlier step found it: it ranks there
            self._seen.add((start, end))
            candidate = self.matcher.evaluate(start, end, step, self.quote)
            if candidate is None or (candidate.start, candidate.end) in self._kept:
                continue
            self._kept.add((candidate.start, candidate.end))
            key = (candidate.widened, self._embedded(candidate))
            groups.setdefault(key, []).append(candidate)
        for group in groups.values():
            group.sort(key=lambda candidate: (candidate.start, -candidate.end))
        self._steps.append(groups)

    def spans(self) -> list[tuple[int, int]]:
        """Every candidate span of every step, sorted (what a shorter quote inside this one checks)."""
        if self._spans is None:
            self._spans = sorted(
                (c.start, c.end) for step in STEPS for group in self.step(step).values() for c in group
            )
        return self._spans

    def _embedded(self, candidate: Candidate) -> bool:
        """Inside an occurrence of a longer quote of the same answer: "York" in "New York", 横浜 in
        横浜市 -- for scripts without spaces the only word boundary there is."""
        for container in self.containers:
            spans = container.spans()
            # Spans starting at or before the candidate, nearest first; they are no longer than the text.
            for index in range(bisect_left(spans, (candidate.start + 1, -1)) - 1, -1, -1):
                start, end = spans[index]
                if end >= candidate.end and (start, end) != (candidate.start, candidate.end):
                    return True
                if candidate.start - start > 4 * len(container.quote.raw) + 64:
                    break
        return False

    def found(self) -> bool:
        return any(group for step in STEPS for group in self.step(step).values())


def _containers(quotes: Sequence[Quote]) -> dict[Quote, list[Quote]]:
    distinct = list(dict.fromkeys(quotes))
    return {
        quote: [other for other in distinct if len(other.core) > len(quote.core) and quote.core in other.norm]
        for quote in distinct
    }


def place(listings: Sequence[Listing], matcher: ExactMatcher, taken: TakenSpans
          ) -> tuple[dict[int, Candidate], set[int]]:
    """The verbatim place of each listing that has one, by answer index; and the indexes of the
    listings whose quote occurs verbatim at all (those never go to the fuzzy step)."""
    containers = _containers([listing.quote for listing in listings])
    by_quote: dict[Quote, QuoteCandidates] = {}
    for quote in sorted(containers, key=lambda quote: -len(quote.core)):  # containers first
        by_quote[quote] = QuoteCandidates(quote, matcher, [by_quote[other] for other in containers[quote]])
    chosen: dict[int, Candidate] = {}
    # How far into a candidate list the candidates are known to clash beyond a tier's limit; clashes
    # only grow as spans are placed, so those never need looking at again.
    skip: dict[tuple[int, int], int] = {}
    open_listings = list(listings)
    for widened, clash, embedded, step in TIERS:
        if not open_listings:
            break
        still_open = []
        for listing in open_listings:
            group = by_quote[listing.quote].step(step).get((widened, embedded), [])
            candidate = _pick(group, listing, clash, taken, skip)
            if candidate is None:
                still_open.append(listing)
                continue
            chosen[listing.index] = candidate
            taken.add(candidate.start, candidate.end, listing.quote.core)
        open_listings = still_open
    _in_text_order(listings, chosen)
    found = {listing.index for listing in listings if listing.index in chosen or by_quote[listing.quote].found()}
    return chosen, found


def _pick(group: list[Candidate], listing: Listing, clash: int, taken: TakenSpans,
          skip: dict[tuple[int, int], int]) -> Candidate | None:
    if not group:
        return None
    core = listing.quote.core
    if listing.hint is not None:
        usable = [c for c in group if taken.conflict(c.start, c.end, core) <= clash]
        return min(usable, key=lambda c: (abs(c.start - listing.hint), c.start), default=None)
    key = (id(group), clash)
    index = skip.get(key, 0)
    # Past the first usable candidate the list is not skipped: another quote's listing may still
    # need what this one leaves.
    while index < len(group) and taken.conflict(group[index].start, group[index].end, core) > clash:
        index += 1
    skip[key] = index
    return group[index] if index < len(group) else None


def _in_text_order(listings: Sequence[Listing], chosen: dict[int, Candidate]) -> None:
    """The places a quote's listings (those without a position hint) received, in text order."""
    repeats: dict[Quote, list[int]] = {}
    for listing in listings:
        if listing.hint is None and listing.index in chosen:
            repeats.setdefault(listing.quote, []).append(listing.index)
    for indexes in repeats.values():
        if len(indexes) > 1:
            places = sorted((chosen[index] for index in indexes), key=lambda c: (c.start, c.end))
            chosen.update(zip(indexes, places, strict=True))
