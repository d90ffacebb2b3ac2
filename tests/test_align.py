from __future__ import annotations

import random

import pytest

from llm_backend.core.align import AlignOptions, Entity, MatchKind, Span, align, aligned_spans

Q = str | tuple[str, int]  # a quote, or a quote with a position hint


def run(text: str, quotes: list[Q], options: AlignOptions | None = None) -> list[Span]:
    entities = [Entity(q, "L") if isinstance(q, str) else Entity(q[0], "L", q[1]) for q in quotes]
    spans = align(text, entities, options or AlignOptions())
    for span in spans:
        if span.aligned:
            assert span.start is not None and span.end is not None
            assert 0 <= span.start < span.end <= len(text)
            assert text[span.start : span.end] == span.text
        else:
            assert (span.start, span.end, span.text, span.score) == (None, None, None, 0.0)
    return spans


def offsets(spans: list[Span]) -> list[tuple[int, int] | None]:
    return [(s.start, s.end) if s.aligned and s.start is not None and s.end is not None else None for s in spans]


# (id, text, quotes, expected offsets per quote, expected kind of the first span or None)
CASES: list[tuple[str, str, list[Q], list[tuple[int, int] | None], MatchKind | None]] = [
    # exact and case
    ("exact", "Yesterday John Smith met Jane Doe.", ["John Smith"], [(10, 20)], MatchKind.EXACT),
    ("exact-two", "Yesterday John Smith met Jane Doe.", ["Jane Doe", "John Smith"], [(25, 33), (10, 20)], None),
    ("case-upper-text", "Meet JOHN SMITH today", ["John Smith"], [(5, 15)], MatchKind.CASE_INSENSITIVE),
    ("case-lower-quote", "Acme Corporation rose", ["acme corporation"], [(0, 16)], MatchKind.CASE_INSENSITIVE),
    # whitespace
    ("ws-double-space-quote", "I love New York City.", ["New  York"], [(7, 15)], MatchKind.NORMALISED),
    ("ws-newline-in-text", "I love New\nYork City.", ["New York"], [(7, 15)], MatchKind.NORMALISED),
    ("ws-crlf-in-text", "Dear\r\nJohn\r\nSmith,", ["John Smith"], [(6, 17)], MatchKind.NORMALISED),
    ("ws-tab-in-quote", "Deal with Acme Corporation", ["Acme\tCorporation"], [(10, 26)], MatchKind.NORMALISED),
    ("ws-nbsp-in-text", "Deal with Acme\u00a0Corporation", ["Acme Corporation"], [(10, 26)], None),
    ("ws-padded-quote", "Deal with Acme today", ["  Acme \n"], [(10, 14)], MatchKind.EXACT),
    # punctuation
    ("punct-curly-apostrophe", "He met O\u2019Brien today.", ["O'Brien"], [(7, 14)], MatchKind.NORMALISED),
    ("punct-straight-in-text", "He met O'Brien today.", ["O\u2019Brien"], [(7, 14)], MatchKind.NORMALISED),
    ("punct-curly-quotes", "The ship \u201cEndeavour\u201d sailed.", ['"Endeavour"'], [(10, 19)], MatchKind.EXACT),
    ("punct-en-dash", "Coca\u2013Cola rose 5%.", ["Coca-Cola"], [(0, 9)], MatchKind.NORMALISED),
    ("punct-em-dash", "Years 1990\u20141995 were good", ["1990-1995"], [(6, 15)], MatchKind.NORMALISED),
    ("punct-trailing-period", "We moved to Paris.", ["Paris."], [(12, 17)], MatchKind.EXACT),
    ("punct-trailing-comma", "Paris, London and Rome", ["London,"], [(7, 13)], MatchKind.EXACT),
    ("punct-abbreviation-kept", "He founded Acme Inc. in 1990.", ["Acme Inc."], [(11, 20)], MatchKind.EXACT),
    ("punct-abbreviation-missing", "He founded Acme Inc in 1990.", ["Acme Inc."], [(11, 19)], MatchKind.NORMALISED),
    ("punct-brackets", "The firm (Globex) grew", ["(Globex)"], [(10, 16)], MatchKind.EXACT),
    ("punct-ellipsis", "Contract with Wayne Enterprises signed", ["Wayne Enterpr\u2026"], [(14, 31)], MatchKind.FUZZY),
    # typos: the text has the right words, the quote has 1-2 edits
    ("typo-transposition", "Yesterday John Smith met Jane.", ["Jonh Smith"], [(10, 20)], MatchKind.FUZZY),
    ("typo-deletion", "Contract with Acme Corporation signed", ["Acme Corportion"], [(14, 30)], MatchKind.FUZZY),
    ("typo-insertion", "Contract with Acme Corporation signed", ["Acmme Corporation"], [(14, 30)], MatchKind.FUZZY),
    ("typo-two-edits", "Contract with Acme Corporation signed", ["Acne Corporatoin"], [(14, 30)], MatchKind.FUZZY),
    ("typo-and-case", "Contract with ACME CORPORATION signed", ["acme corporaton"], [(14, 30)], MatchKind.FUZZY),
    ("typo-at-text-end", "Signed by Jonathan Whitaker", ["Jonathan Whitaket"], [(10, 27)], MatchKind.FUZZY),
    (
        "typo-cjk-mixed",
        "\u8054\u7cfb\u674e\u5c0f\u660e\u548c Jonathan Whitaker \u5148\u751f",
        ["Jonathon Whitaker"],
        [(7, 24)],
        MatchKind.FUZZY,
    ),
    # truncated quotes: the span covers the whole words
    ("truncated-suffix", "Contract with Wayne Enterprises signed", ["Wayne Enterpri"], [(14, 31)], MatchKind.FUZZY),
    ("truncated-prefix", "Contract with Wayne Enterprises signed", ["ayne Enterprises"], [(14, 31)], MatchKind.FUZZY),
    ("truncated-one-word", "Offices in Copenhagen and Oslo", ["Copenhage"], [(11, 21)], MatchKind.FUZZY),
    # unicode
    ("cjk", "\u8054\u7cfb\u5f20\u4e09\u5148\u751f", ["\u5f20\u4e09"], [(2, 4)], MatchKind.EXACT),
    ("cjk-fullwidth-latin", "\u6211\u5728\uff29\uff22\uff2d\u5de5\u4f5c", ["IBM"], [(2, 5)], MatchKind.NORMALISED),
    ("cjk-brackets-in-quote", "\u8054\u7cfb\u5f20\u4e09\u5148\u751f", ["\u300c\u5f20\u4e09\u300d"], [(2, 4)], None),
    ("emoji-before", "\U0001f600\U0001f44d\U0001f3fd John Smith said", ["John Smith"], [(4, 14)], MatchKind.EXACT),
    ("emoji-zwj-before", "\U0001f468\u200d\U0001f469\u200d\U0001f467 Ann Lee", ["ann lee"], [(6, 13)], None),
    (
        "emoji-flag-before-typo",
        "\U0001f1eb\U0001f1f7 Acme Corporation",
        ["Acme Corporaton"],
        [(3, 19)],
        MatchKind.FUZZY,
    ),
    ("combining-decomposed-text", "Visit Cafe\u0301 Luna", ["Caf\u00e9 Luna"], [(6, 16)], MatchKind.NORMALISED),
    ("combining-accentless-quote", "Jos\u00e9 Garc\u00eda won", ["Jose Garcia"], [(0, 11)], MatchKind.NORMALISED),
    ("combining-never-split", "Cafe\u0301 opens", ["Cafe"], [(0, 5)], MatchKind.NORMALISED),
    ("combining-after-entity", "Ame\u0301lie and Jo\u0308rg Weber", ["Jo\u0308rg Weber"], [(12, 23)], MatchKind.EXACT),
    ("case-trap-dotted-i", "\u0130stanbul is big", ["istanbul"], [(0, 8)], MatchKind.CASE_INSENSITIVE),
    ("case-trap-dotted-i-quote", "in istanbul", ["\u0130STANBUL"], [(3, 11)], MatchKind.CASE_INSENSITIVE),
    ("case-trap-eszett", "Die Hauptstra\u00dfe ist lang", ["HAUPTSTRASSE"], [(4, 15)], MatchKind.NORMALISED),
    ("case-trap-eszett-reverse", "HAUPTSTRASSE 5", ["Hauptstra\u00dfe"], [(0, 12)], MatchKind.NORMALISED),
    ("offsets-after-eszett", "Stra\u00dfe und John Smith", ["JOHN SMITH"], [(11, 21)], MatchKind.CASE_INSENSITIVE),
    ("offsets-after-dotted-i", "\u0130\u0130\u0130 John", ["JOHN"], [(4, 8)], MatchKind.CASE_INSENSITIVE),
    ("offsets-after-ligature", "\ufb01nance by John Smith", ["John Smith"], [(10, 20)], MatchKind.EXACT),
    # edges
    ("empty-quote", "abc def", [""], [None], None),
    ("whitespace-quote", "abc def", ["  \n "], [None], None),
    ("punctuation-only-quote", "abc ... def", ["..."], [None], None),
    ("quote-longer-than-text", "fox", ["the quick brown fox jumps"], [None], None),
    ("empty-text", "", ["John"], [None], None),
    ("start-and-end", "Paris is nicer than Rome", ["Paris", "Rome"], [(0, 5), (20, 24)], None),
    ("whole-text", "Acme Corporation", ["Acme Corporatoin"], [(0, 16)], MatchKind.FUZZY),
    # occurrences
    ("whole-word-beats-inside", "The Annual report by Ann", ["Ann"], [(21, 24)], MatchKind.EXACT),
    ("whole-word-beats-exact-inside", "pineapple and Apple", ["apple"], [(14, 19)], MatchKind.CASE_INSENSITIVE),
    # A quote found only inside a longer word is never an exact match: dropped unless the whole word
    # still scores as a fuzzy match of it (a truncated quote, see "truncated-one-word").
    ("inside-word-when-alone", "The Annual report", ["Ann"], [None], None),
    ("repeat-kth", "Paris, then Paris, then Paris", ["Paris", "Paris", "Paris"], [(0, 5), (12, 17), (24, 29)], None),
    ("repeat-too-many", "Paris and Paris", ["Paris", "Paris", "Paris"], [(0, 5), (10, 15), None], None),
    ("repeat-same-quote-other-case", "America", ["America", "america"], [(0, 7), None], None),
    (
        "repeat-typo",
        "Acme Corporation and Acme Corporation",
        ["Acme Corporaton", "Acme Corporaton"],
        [(0, 16), (21, 37)],
        None,
    ),
    ("hint-nearest", "Paris, then Paris, then Paris", [("Paris", 20)], [(24, 29)], None),
    ("hint-then-kth", "Paris, then Paris, then Paris", [("Paris", 26), "Paris"], [(24, 29), (0, 5)], None),
    ("hint-out-of-range", "Paris and Paris", [("Paris", 10_000)], [(10, 15)], None),
    ("hint-fuzzy", "Acme Corporation and Acme Corporation", [("Acme Corporaton", 30)], [(21, 37)], None),
    ("exact-not-stolen-by-typo", "John Smith spoke", ["Jonh Smith", "John Smith"], [None, (0, 10)], None),
    (
        "typo-takes-free-occurrence",
        "John Smith and John Smith",
        ["John Smith", "Jonh Smith"],
        [(0, 10), (15, 25)],
        None,
    ),
    ("nested-different-quotes", "Bank of America", ["Bank of America", "America"], [(0, 15), (8, 15)], None),
    (
        "nested-prefers-free",
        "Bank of America opened in America",
        ["Bank of America", "America"],
        [(0, 15), (26, 33)],
        None,
    ),
    # hallucinations and look-alikes stay unaligned
    ("hallucinated-barack", "We walked down Barack Street.", ["Barack Obama"], [None], None),
    ("hallucinated-longer-name", "John Smith spoke.", ["John Smithson"], [None], None),
    ("hallucinated-other-first-name", "John Smith spoke.", ["Jane Smith"], [None], None),
    ("hallucinated-extra-word", "John Smith spoke.", ["John Smith Jr."], [None], None),
    ("hallucinated-unrelated", "The quarterly report was late.", ["Initech Systems"], [None], None),
    ("short-quote-not-fuzzy", "Ann and Bob", ["Anm"], [None], None),
]


@pytest.mark.parametrize(("text", "quotes", "expected", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_align_cases(
    text: str, quotes: list[Q], expected: list[tuple[int, int] | None], kind: MatchKind | None
) -> None:
    spans = run(text, quotes)
    assert offsets(spans) == expected
    assert [s.entity.text for s in spans] == [q if isinstance(q, str) else q[0] for q in quotes]
    if kind is not None:
        assert spans[0].kind is kind


ALL_CASES: list[tuple[str, str, list[str], list[tuple[int, int] | None], list[int]]] = [
    ("all-case-variants", "Paris, paris and PARIS", ["Paris"], [(0, 5), (7, 12), (17, 22)], [0, 0, 0]),
    ("all-listed-twice", "Paris, paris and PARIS", ["Paris", "Paris"], [(0, 5), (17, 22), (7, 12)], [0, 0, 1]),
    ("all-whole-words-only", "Ann saw the Annual report; Ann left", ["Ann"], [(0, 3), (27, 30)], [0, 0]),
    ("all-fuzzy-primary", "Acme Corporation, then acme corporation", ["Acme Corporaton"], [(0, 16), (23, 39)], [0, 0]),
    ("all-unaligned", "Paris and Rome", ["Berlin", "Rome"], [None, (10, 14)], [0, 1]),
    ("all-no-overlap-with-other", "New York and York", ["New York", "York"], [(0, 8), (13, 17)], [0, 1]),
]


@pytest.mark.parametrize(
    ("text", "quotes", "expected", "owners"), [c[1:] for c in ALL_CASES], ids=[c[0] for c in ALL_CASES]
)
def test_all_occurrences(
    text: str, quotes: list[str], expected: list[tuple[int, int] | None], owners: list[int]
) -> None:
    entities = [Entity(q, f"L{i}") for i, q in enumerate(quotes)]
    spans = align(text, entities, AlignOptions(all_occurrences=True))
    assert offsets(spans) == expected
    assert [s.entity.label for s in spans] == [f"L{o}" for o in owners]
    for span in aligned_spans(spans):
        assert span.start is not None and span.end is not None
        assert text[span.start : span.end] == span.text


def test_all_occurrences_kinds_are_relative_to_the_quote() -> None:
    options = AlignOptions(all_occurrences=True)
    spans = align("Acme Corporation, then acme corporation", [Entity("Acme Corporaton", "ORG")], options)
    assert [s.kind for s in spans] == [MatchKind.FUZZY, MatchKind.FUZZY]
    assert spans[0].score == spans[1].score < 100.0
    spans = align("apple and Apple and APPLE", [Entity("Apple", "ORG")], options)
    assert [s.kind for s in spans] == [MatchKind.CASE_INSENSITIVE, MatchKind.EXACT, MatchKind.CASE_INSENSITIVE]


def test_no_span_handed_out_twice() -> None:
    text = "Acme Corporation signed with Acme Corporation and ACME corp."
    quotes = ["Acme Corporation", "acme corporation", "Acme Corporaton", "Acme Corporation", "ACME corp"]
    got = [o for o in offsets(run(text, quotes)) if o is not None]
    assert len(got) == len(set(got))


def test_threshold_and_min_length_are_honoured() -> None:
    text = "Yesterday John Smith met Jane."
    assert offsets(run(text, ["Jonh Smith"], AlignOptions(fuzzy_threshold=95))) == [None]
    assert offsets(run(text, ["Jonh Smith"], AlignOptions(min_fuzzy_length=11))) == [None]
    assert offsets(run("Ann and Bob", ["Anm"], AlignOptions(min_fuzzy_length=3, fuzzy_threshold=60))) == [(0, 3)]


def test_scores_and_helpers() -> None:
    spans = run("Yesterday John Smith met Jane.", ["John Smith", "Jonh Smith", "Zed"])
    assert spans[0].score == 100.0 and spans[0].aligned
    assert spans[1].kind is MatchKind.UNALIGNED  # the only John Smith is taken by the exact quote
    assert aligned_spans(spans) == [spans[0]]
    fuzzy = run("Yesterday John Smith met Jane.", ["Jonh Smith"])[0]
    assert fuzzy.kind is MatchKind.FUZZY and 85.0 <= fuzzy.score < 100.0


@pytest.mark.parametrize(
    "kwargs",
    [{"fuzzy_threshold": 101}, {"fuzzy_threshold": -1}, {"min_fuzzy_length": 0}],
    ids=["threshold-high", "threshold-low", "min-length"],
)
def test_options_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AlignOptions(**kwargs)  # type: ignore[arg-type]


def test_long_text_many_entities() -> None:
    # Far-apart, repeated and typo'd quotes in a long text (correctness, not timing).
    unit = "The board of Globex Industries met in Buenos Aires. Analysts expected growth. "
    text = unit * 400
    spans = run(text, ["Globex Industries"] * 3 + ["Bunos Aires"] + [("Globex Industries", len(text) - 40)])
    assert offsets(spans) == [
        (13, 30),
        (13 + len(unit), 30 + len(unit)),
        (13 + 2 * len(unit), 30 + 2 * len(unit)),
        (38, 50),
        (13 + 399 * len(unit), 30 + 399 * len(unit)),
    ]


# --------------------------------------------------------------------------- planted spans

FIRST = ["Olivia", "Hiroshi", "Fatima", "Dmitri", "Ingrid", "Kwame", "Beatrice", "Rafael", "Margaret"]
LAST = [
    "Nakamura",
    "Johansson",
    "Kowalski",
    "Castellano",
    "Fitzgerald",
    "Lindqvist",
    "Villanueva",
    "Whitaker",
    "Barrington",
]
ORGS = [
    "Globex Industries",
    "Initech Systems",
    "Umbrella Holdings",
    "Cyberdyne Robotics",
    "Northwind Traders",
    "Aperture Laboratories",
    "O\u2019Reilly Media",
    "Smith\u2013Jones Partners",
]
FILLER = [
    "the",
    "report",
    "said",
    "that",
    "during",
    "meeting",
    "yesterday",
    "with",
    "officials",
    "from",
    "about",
    "plan",
    "was",
    "announced",
    "after",
    "quarterly",
    "results",
    "office",
    "near",
    "market",
    "shares",
    "rose",
    "while",
    "analysts",
    "expected",
    "growth",
]
SEPARATORS = [" ", " ", " ", "\n", "\r\n", " \U0001f600 ", " \u4e2d\u6587 ", " e\u0301te\u0301 "]


def perturb(r: random.Random, entity: str, how: str) -> str:
    if how == "case":
        return r.choice([entity.lower(), entity.upper()])
    if how == "whitespace":
        return entity.replace(" ", r.choice(["  ", "\n", " \t"]))
    if how == "punctuation":
        straight = entity.replace("\u2019", "'").replace("\u2013", "-")
        return r.choice([straight + ",", straight + ".", f'"{straight}"', f"({straight})"])
    if how == "typo":  # one substitution inside the longest word
        word = max(entity.split(" "), key=len)
        i = entity.index(word) + r.randrange(1, len(word) - 1)
        return entity[:i] + r.choice([c for c in "xqzvk" if c != entity[i].lower()]) + entity[i + 1 :]
    if how == "truncated":  # the quote lost 1-2 trailing characters of the last word
        return entity[: -r.randint(1, 2)]
    return entity


@pytest.mark.parametrize("seed", range(40), ids=[f"seed{s}" for s in range(40)])
def test_planted_spans(seed: int) -> None:
    r = random.Random(seed)
    people = [f"{f} {s}" for f, s in zip(r.sample(FIRST, 4), r.sample(LAST, 4), strict=True)]
    entities = people + r.sample(ORGS, 3)
    r.shuffle(entities)
    parts: list[str] = []
    planted: list[tuple[int, int]] = []
    size = 0
    for entity in entities:
        words = " ".join(r.choice(FILLER) for _ in range(r.randint(2, 12)))
        chunk = words + r.choice(SEPARATORS)
        parts.append(chunk)
        size += len(chunk)
        planted.append((size, size + len(entity)))
        parts.append(entity)
        size += len(entity)
        parts.append(r.choice(SEPARATORS))
        size += len(parts[-1])
    text = "".join(parts)
    hows = ["exact", "case", "whitespace", "punctuation", "typo", "truncated"]
    quotes = [perturb(r, e, r.choice(hows)) for e in entities]
    order = list(range(len(entities)))
    r.shuffle(order)  # models do not list entities in text order
    spans = run(text, [quotes[i] for i in order])
    assert offsets(spans) == [planted[i] for i in order], [quotes[i] for i in order]


# --------------------------------------------------------------------------- long and common quotes


def substitute(text: str, positions: list[int]) -> str:
    """Replace the letters at the given positions by another letter (typos)."""
    out = list(text)
    for p in positions:
        assert out[p].isalpha()
        out[p] = "q" if out[p].lower() != "q" else "z"
    return "".join(out)


@pytest.mark.parametrize("length", [40, 100, 300, 1200], ids=["short", "medium", "pieces", "long"])
def test_long_quotes_with_typos(length: int) -> None:
    r = random.Random(length)
    vocabulary = FILLER + FIRST + LAST
    text = " ".join(r.choice(vocabulary) for _ in range(2000))
    start = text.index(" ", 5000) + 1
    end = text.index(" ", start + length)
    n_typos = max(1, length // 100)
    letters = [i for i in range(start + 2, end - 2) if text[i].isalpha()]
    quote = substitute(text[start:end], [p - start for p in r.sample(letters, n_typos)])
    assert offsets(run(text, [quote])) == [(start, end)]
    # The same words in another order are not the quote.
    words = text[start:end].split(" ")
    r.shuffle(words)
    assert offsets(run(text, [" ".join(words)])) == [None]


def test_neighbouring_word_does_not_complete_a_longer_name() -> None:
    # "Grace Schneider was" scores 86 against "Grace Schneiderson" on characters.
    assert offsets(run("Then Grace Schneider was promoted.", ["Grace Schneiderson"])) == [None]


def test_very_common_quote_still_finds_the_whole_word() -> None:
    text = "annual " * 300 + "by Ann."
    assert offsets(run(text, ["Ann"])) == [(len(text) - 4, len(text) - 1)]
    # The second listing has no whole word left: "ann" inside "annual" is not a place for it.
    assert offsets(run(text, ["ann", "ann"])) == [(len(text) - 4, len(text) - 1), None]
