"""The aligner's placement rule (core/align package docstring): the issue's examples, the doubts
about the old code, and properties over generated answers (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_backend.core.align import AlignOptions, Entity, MatchKind, Span, align
from llm_backend.core.align.fuzzy import _PIECE, _PIECES, _TOP_WINDOWS, FuzzyMatcher
from llm_backend.core.align.quotes import prepare
from llm_backend.core.align.taken import TakenSpans
from llm_backend.core.align.textforms import NormMap, TextForms

ZWJ_FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
MAN = "\U0001f468"


def places(text: str, quotes: list[str]) -> list[tuple[int, int] | None]:
    spans = align(text, [Entity(quote, "L") for quote in quotes])
    for span in spans:
        if span.aligned:
            assert span.start is not None and span.end is not None and text[span.start : span.end] == span.text
    return [(s.start, s.end) if s.start is not None and s.end is not None else None for s in spans]


# --------------------------------------------------------------------------- the examples
# Each of these put a span in the wrong place on main before the rule (checked there).


def test_a_short_name_listed_before_the_longer_name_holding_it_takes_its_own_occurrence() -> None:
    assert places("Bank of America and America", ["America", "Bank of America"]) == [(20, 27), (0, 15)]
    assert places("New York is big. York is small.", ["York", "New York"]) == [(17, 21), (0, 8)]
    # With no occurrence of its own the short name may share the long one's characters.
    assert places("I love New York.", ["York", "New York"]) == [(11, 15), (7, 15)]


def test_in_text_without_spaces_a_name_inside_a_longer_name_of_the_answer_is_not_its_place() -> None:
    text = "神奈川県横浜市に住む。横浜は大きい。"
    assert places(text, ["横浜", "横浜市"]) == [(11, 13), (4, 7)]
    assert places("大阪府と大阪", ["大阪", "大阪府"]) == [(4, 6), (0, 3)]


def test_a_quote_that_begins_a_longer_word_is_never_an_exact_match_inside_it() -> None:
    assert places("The Microsoftware team met.", ["Microsoft"]) == [None]
    assert places("The Microsoftware team met Microsoft.", ["Microsoft"]) == [(27, 36)]
    # A truncated quote is widened to its whole word and reported as fuzzy, with its score.
    [span] = align("Offices in Copenhagen and Oslo", [Entity("Copenhage", "L")])
    assert (span.start, span.end, span.kind) == (11, 21, MatchKind.FUZZY) and 85 <= span.score < 100


def test_an_emoji_is_never_matched_inside_a_zwj_sequence_or_before_its_modifier() -> None:
    assert places(f"family {ZWJ_FAMILY} here", [MAN]) == [None]
    assert places(f"family {ZWJ_FAMILY} and a man {MAN} here", [MAN]) == [(23, 24)]
    assert places("ok \U0001f44d\U0001f3fd", ["\U0001f44d"]) == [None]


# --------------------------------------------------------------------------- the four doubts


def test_doubt_1_normalised_hits_are_taken_in_text_order() -> None:
    # The quote with and without its period were two searches whose hits came one list after the other.
    assert places("Acmé Inc was founded; later Acmé Inc. grew.", ["Acme Inc."]) == [(0, 8)]
    assert places("Acmé Inc was founded; later Acmé Inc. grew.", ["Acme Inc.", "Acme Inc."]) == [(0, 8), (28, 37)]


def test_doubt_2_a_fuzzy_search_that_failed_near_one_hint_is_tried_again_near_another() -> None:
    filler = "The board met again today and nothing else happened at all that week. " * 14
    text = "Code xxGrace Schneidersonyyyyyyyy here. " + filler + "Later Grace Schneidersen left."
    quote, far = prepare("Grace Schneiderson"), len(text) - 20
    assert quote is not None
    matcher = FuzzyMatcher(TextForms(text), AlignOptions(), TakenSpans())
    assert matcher.match(quote, 0) is None  # near the start only a longer word resembles it
    found = matcher.match(quote, far)
    assert found is not None and text[found.start : found.end] == "Grace Schneidersen"


def test_doubt_3_piece_windows_rank_by_the_mean_over_all_three_pieces() -> None:
    # A long quote found whole (with typos) and, elsewhere, only its first piece verbatim: the place
    # where all three pieces agree ranks first, and with one stretch every window is refined.
    words = [f"w{index:03d}" for index in range(120)]
    quote = " ".join(words)
    typo = quote.replace("w050", "x050").replace("w090", "x090")
    text = quote[: _PIECE + 4] + " and then " + "filler " * 30 + typo + " end"
    matcher = FuzzyMatcher(TextForms(text), AlignOptions(), TakenSpans())
    windows = matcher._piece_windows(quote, 0, len(matcher.norm.text))
    assert len(windows) <= _PIECES < _TOP_WINDOWS
    best = max(windows, key=lambda window: window[0])
    assert best[3] == text.index(typo)
    assert places(text, [quote]) == [(text.index(typo), text.index(typo) + len(typo))]


def test_doubt_4_orig_end_of_an_empty_prefix_is_zero() -> None:
    assert NormMap("abc def").orig_end(0) == 0
    assert NormMap("\u200bab").orig_end(0) == 0
    assert NormMap("abc").orig_end(3) == 3


# --------------------------------------------------------------------------- properties

LATIN = ["Bank of America", "America", "New York", "York", "Ann", "Jose", "José"]
CJK = ["横浜市", "横浜", "東京都", "東京"]
EMOJI = [MAN, "\U0001f44d"]
NAMES = LATIN + CJK + EMOJI
# Words that hold a name inside them, and emoji sequences that hold a name's emoji: never a place.
LATIN_FILLER = ["the", "annual", "Annie", "report", "Yorkshire", "Americana", "said", "with", "Hanna", "and"]
CJK_FILLER = list("のにはをがでとも大きい住む行く見る")
EMOJI_FILLER = [ZWJ_FAMILY, "\U0001f468\U0001f3fd", "\U0001f44d\U0001f3fd", "\u2764\ufe0f"]


def written(name: str) -> str:
    """How the text writes a name: José decomposed (the quote has it composed)."""
    return "Jose\u0301" if name == "José" else name


# The strategies a document is drawn from, made once: made inside `documents`, each was a new object on every draw,
# validated again each time (most of these tests' CPU); the draws, so the documents, are the same.
_PARTS = st.integers(1, 12)
_KINDS = st.sampled_from(["latin", "cjk", "emoji"])
_CJK_FILLERS = st.lists(st.sampled_from(CJK_FILLER), min_size=1, max_size=4)
_EMOJI_FILLERS = st.lists(st.sampled_from(EMOJI_FILLER), max_size=2)
_LATIN_FILLERS = st.lists(st.sampled_from(LATIN_FILLER), min_size=1, max_size=3)
_AFTER = st.sampled_from([" ", ", ", ". ", "\n"])
_NAME = {"latin": st.sampled_from(LATIN), "cjk": st.sampled_from(CJK), "emoji": st.sampled_from(EMOJI)}


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, int]]]:
    """A text with planted mentions: (name, start, end) in text order."""
    parts: list[str] = []
    size = 0
    planted: list[tuple[str, int, int]] = []
    for _ in range(draw(_PARTS)):
        kind = draw(_KINDS)
        if kind == "cjk":
            filler = "".join(draw(_CJK_FILLERS))
            before, after = filler, ""
        elif kind == "emoji":
            before, after = " ".join(draw(_EMOJI_FILLERS)) + " ", " "
        else:
            before = " ".join(draw(_LATIN_FILLERS)) + " "
            after = draw(_AFTER)
        name = draw(_NAME[kind])
        parts.append(before)
        size += len(before)
        planted.append((name, size, size + len(written(name))))
        parts.append(written(name) + after)
        size += len(written(name)) + len(after)
    return "".join(parts), planted


def quote_for(name: str, lower: bool) -> str:
    return name.lower() if lower and name.isascii() else name


def core(text: str) -> str:
    prepared = prepare(text)
    assert prepared is not None
    return prepared.core


def check_invariants(text: str, spans: list[Span]) -> None:
    placed = [span for span in spans if span.aligned]
    for span in placed:
        assert span.start is not None and span.end is not None and span.text == text[span.start : span.end]
        # The span says what the quote says, up to the normalisation (case, accents, composition).
        assert core(span.text) == core(span.entity.text), (span.text, span.entity.text)
        assert span.kind is not MatchKind.FUZZY
    for index, one in enumerate(placed):
        for other in placed[index + 1 :]:
            assert (one.start, one.end) != (other.start, other.end)
            assert one.start is not None and one.end is not None and other.start is not None and other.end is not None
            if one.start < other.end and other.start < one.end:
                a, b = core(one.entity.text), core(other.entity.text)
                assert a in b or b in a, (one, other)
    # The k-th listing of a quote is at the k-th of the places its listings received.
    by_quote: dict[str, list[int]] = {}
    for span in placed:
        assert span.start is not None
        by_quote.setdefault(span.entity.text, []).append(span.start)
    for starts in by_quote.values():
        assert starts == sorted(starts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.lists(st.booleans(), min_size=12, max_size=12), st.randoms(use_true_random=False))
def test_every_listed_mention_is_placed_on_its_own_occurrence(
    document: tuple[str, list[tuple[str, int, int]]], lower: list[bool], rng: object
) -> None:
    text, planted = document
    # The model lists every mention, in text order (some in lower case).
    entities = [Entity(quote_for(name, lower[i % 12]), "L") for i, (name, _, _) in enumerate(planted)]
    spans = align(text, entities)
    check_invariants(text, spans)
    assert all(span.aligned for span in spans), spans
    # Quotes of one name (its case variants, José/Jose) share that name's mentions: together they
    # are placed exactly on them; a quote used alone is placed on each mention in turn.
    got: dict[str, list[tuple[int | None, int | None]]] = {}
    want: dict[str, list[tuple[int, int]]] = {}
    for span, (name, start, end) in zip(spans, planted, strict=True):
        got.setdefault(core(name), []).append((span.start, span.end))
        want.setdefault(core(name), []).append((start, end))
    assert {key: sorted(value) for key, value in got.items()} == want  # type: ignore[type-var]
    if len({entity.text for entity in entities}) == len({core(name) for name, _, _ in planted}):
        assert [(s.start, s.end) for s in spans] == [(start, end) for _, start, end in planted]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.data())
def test_a_shuffled_or_incomplete_answer_still_lands_only_on_mentions(
    document: tuple[str, list[tuple[str, int, int]]], data: st.DataObject
) -> None:
    text, planted = document
    listed = data.draw(st.lists(st.sampled_from(range(len(planted))), unique=True, max_size=len(planted)))
    entities = [Entity(planted[i][0], "L") for i in listed]  # any order, some mentions left out
    spans = align(text, entities)
    check_invariants(text, spans)
    mentions = {(start, end): core(name) for name, start, end in planted}
    unlisted = [(start, end) for index, (_, start, end) in enumerate(planted) if index not in listed]
    for span in spans:
        # Every listing is placed, and on a real mention of its name, or inside a mention of a longer
        # name that the answer does not list (the text cannot tell "America" from the one in "Bank of
        # America" then); never inside a longer name the answer lists while its own occurrence is
        # free, never inside a longer word or an emoji sequence.
        assert span.aligned and span.start is not None and span.end is not None, span
        inside_unlisted = any(start <= span.start and span.end <= end for start, end in unlisted)
        assert mentions.get((span.start, span.end)) == core(span.entity.text) or inside_unlisted, span


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Paris", "Rome", "Oslo"]), min_size=1, max_size=8), st.data())
def test_the_kth_repeat_of_a_quote_takes_the_kth_free_occurrence(names: list[str], data: st.DataObject) -> None:
    text = " and ".join(names) + "."
    starts: dict[str, list[int]] = {}
    position = 0
    for name in names:
        starts.setdefault(name, []).append(position)
        position += len(name) + len(" and ")
    answer = data.draw(st.permutations(names))
    spans = align(text, [Entity(name, "L") for name in answer])
    seen: dict[str, int] = {}
    for span in spans:
        k = seen.get(span.entity.text, 0)
        seen[span.entity.text] = k + 1
        assert span.start == starts[span.entity.text][k]
