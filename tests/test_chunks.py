"""Splitting long texts into parts and merging what the parts found (core/chunks.py), and the
per-control combine strategies (core/controls/combine.py). Pure: no model, no tokenizer."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from llm_backend.core.chunks import (
    CharMeasure,
    Chunk,
    Found,
    SpanIndex,
    add_new_pass,
    choose_cut,
    merge_found,
    split_text,
)
from llm_backend.core.config import parse_label_config
from llm_backend.core.controls import spec_for
from llm_backend.core.controls.combine import majority, median, union
from testkit.gazetteer import Gazetteer
from tests.conftest import ALL_CONTROLS_CONFIG

WORDS = ["the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from", "it",
         "an", "be", "this", "which", "or", "are", "river", "stone"]
NAMES = ["Anna Berg", "Anna Bergman", "Otto Lindqvist", "Acme Corp", "Globex", "Mira Sato", "東京 Tower"]


def document(seed: int, sentences: int = 1500, names: bool = True) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize()
        if names and rng.random() < 0.3:
            sentence += " " + rng.choice(NAMES) + rng.choice(["", " 😀", "、東京で", " e\u0301te\u0301"])
        out.append(sentence + rng.choice([". ", ". ", "! ", ".\n", ".\n\n"]))
    return "".join(out)


def parts_of(text: str, budget: int = 500, overlap: int = 60, chars: float = 4.0) -> list[Chunk]:
    return list(split_text(text, CharMeasure(chars), budget, overlap))


def test_parts_cover_the_text_in_order_fit_the_budget_and_overlap() -> None:
    text = document(1)
    parts = parts_of(text)
    assert parts[0].start == 0 and parts[0].fresh == 0 and parts[-1].end == len(text)
    for before, after in itertools.pairwise(parts):
        assert after.fresh == before.end  # every character is new in exactly one part
        assert before.start < after.start < after.fresh  # parts move on, and re-read some of the previous one
        assert 0.5 * 60 * 4 <= after.overlap <= 1.5 * 60 * 4 + 1
    assert all(part.end - part.start <= 500 * 4 for part in parts)
    assert all(part.end - part.fresh >= 0.75 * (part.end - part.start - part.overlap) - 1 for part in parts[:-1])


def _kind_at(text: str, position: int) -> int:
    """4 after a blank line, 3 after a line break, 2 after a sentence end, 1 after a space, else 0."""
    head = text[max(0, position - 16) : position]
    before = head.rstrip(" ")
    if re.search(r"\n[^\S\n]*\n\s*$", head):
        return 4
    if head.endswith("\n"):
        return 3
    if position and text[position - 1] == " " and before and before[-1] in ".!":
        return 2
    return 1 if position and text[position - 1].isspace() else 0


def test_cuts_take_the_strongest_boundary_in_reach() -> None:
    text = document(2)
    rng = random.Random(0)
    for _ in range(300):
        low = rng.randrange(0, len(text) - 600)
        high = low + rng.randrange(1, 600)
        cut = choose_cut(text, low, high)
        assert _kind_at(text, cut) == max(_kind_at(text, p) for p in range(low, high + 1))
    for part in parts_of(text)[:-1]:
        assert _kind_at(text, part.end) >= 2
    words_only = re.sub(r"[.!\n]+", "", text)
    for part in parts_of(words_only)[:-1]:
        assert words_only[part.end - 1] == " "


@pytest.mark.parametrize("glue", ["e\u0301", "👩\u200d💻", "👍🏽", "\r\n", "1\ufe0f\u20e3"])
def test_a_text_without_boundaries_is_never_cut_inside_a_character(glue: str) -> None:
    text = glue * 3000
    for part in parts_of(text, budget=200, overlap=20):
        for position in (part.start, part.end):
            assert position == len(text) or position % len(glue) == 0


def test_cjk_text_is_cut_after_its_full_stops() -> None:
    text = "東京は日本の首都である。" * 400
    for part in parts_of(text, budget=300, overlap=30, chars=1.0)[:-1]:
        assert text[part.end - 1] == "。"


def test_an_edit_moves_only_the_cuts_near_it() -> None:
    text = document(3, sentences=3000)
    parts = parts_of(text)
    middle = len(text) // 2
    word = text.index(" the ", middle)
    edited = text[:word] + " the newly inserted words" + text[word:]
    shift = len(edited) - len(text)
    before = {text[p.start : p.end] for p in parts}
    after = [edited[p.start : p.end] for p in parts_of(edited)]
    changed = [piece for piece in after if piece not in before]
    assert 1 <= len(changed) <= 2 and len(after) == len(parts)  # the edited part (and its overlap neighbour)
    assert all(" the newly inserted words" in piece for piece in changed)
    assert shift > 0


def test_choose_cut_is_deterministic_and_stays_in_range() -> None:
    text = document(4)
    for low in range(0, len(text) - 2000, 997):
        cut = choose_cut(text, low, low + 1500)
        assert low <= cut <= low + 1500 and cut == choose_cut(text, low, low + 1500)


def _found_by_parts(text: str, parts: list[Chunk], gazetteer: Gazetteer) -> list[Found]:
    found = []
    for index, part in enumerate(parts):
        piece = text[part.start : part.end]
        hits = gazetteer.occurrences(piece)
        for start, end, label in [*hits, *gazetteer.pieces(piece, hits)]:
            found.append(Found(start + part.start, end + part.start, label, "ner", index))
    return found


@pytest.mark.parametrize("seed", range(6))
def test_merged_spans_are_exactly_the_planted_ones(seed: int) -> None:
    text = document(seed, sentences=2500)
    gazetteer = Gazetteer("ner", [(name, "Entity") for name in NAMES], cut_edges=True)
    truth = {(start, end) for start, end, _ in gazetteer.occurrences(text)}
    # Small parts with no boundary preference left: many entities sit in overlaps or on a cut.
    flat = re.sub(r"[.!\n]", " ", text)
    for source in (text, flat):
        truth = {(start, end) for start, end, _ in gazetteer.occurrences(source)}
        parts = parts_of(source, budget=120, overlap=12)
        found = _found_by_parts(source, parts, gazetteer)
        merged = merge_found(found, parts, len(source))
        kept = [(found[i].start, found[i].end) for i in merged.kept]
        assert sorted(kept) == sorted(truth) and len(kept) == len(set(kept))
        assert merged.duplicates > 0
    assert merged.cut_off > 0  # the flat text's cuts fall inside names


def test_of_two_overlapping_spans_from_different_parts_the_better_one_stays() -> None:
    parts = [Chunk(0, 100, 0), Chunk(80, 200, 100)]
    found = [Found(85, 95, "Person", "ner", 0, score=0.9), Found(85, 97, "Person", "ner", 1, score=1.0),
             Found(50, 60, "Person", "ner", 0), Found(52, 56, "Person", "ner", 0)]  # nested, same part: both kept
    merged = merge_found(found, parts, 200)
    assert [(found[i].start, found[i].end) for i in merged.kept] == [(50, 60), (52, 56), (85, 97)]
    assert merged.conflicts == 1


def test_a_further_pass_adds_only_what_overlaps_nothing() -> None:
    kept = [Found(10, 20, "Person", "ner", 0)]
    extra = [Found(12, 18, "Person", "ner", 0), Found(30, 40, "Place", "ner", 0), Found(10, 20, "Place", "other", 0)]
    assert add_new_pass(kept, extra) == extra[1:]


def test_the_span_index_finds_exactly_the_overlapping_spans() -> None:
    rng = random.Random(7)
    for _ in range(60):
        spans = [Found(start, start + rng.randint(0, 6), "L", "g", 0) for start in
                 (rng.randint(0, 30) for _ in range(rng.randint(0, 12)))]
        index = SpanIndex()
        for span in spans:
            index.add(span)
        for start, end in itertools.combinations_with_replacement(range(38), 2):  # every probe, edges included
            found = sorted(index.overlapping(Found(start, end, "L", "g", 0)), key=lambda s: (s.start, s.end))
            assert found == sorted((s for s in spans if s.start < end and start < s.end),
                                   key=lambda s: (s.start, s.end)), (spans, start, end)


def test_combine_strategies() -> None:
    assert majority(["Negative", "Positive", "Positive", "Negative"]).value == "Negative"  # tie: the earlier value
    assert majority(["a", "b", "b"]).agreement == pytest.approx(2 / 3, abs=1e-3)
    assert union([["Tech"], ["Sports", "Tech"], []]).value == ["Tech", "Sports"]
    assert median([5, 1, 4, 2]).value == 2 and median([3.5, 1.0, 2.0]).value == 2.0
    config = parse_label_config(ALL_CONTROLS_CONFIG)
    strategies = {c.name: spec_for(c.kind).long_text(c) for c in config.controls}
    assert strategies == {"sentiment": "majority", "topics": "union", "ner": "spans", "summary": "summary",
                          "quality": "median", "year": "median", "category": "union"}
    topics = config.control("topics")
    assert topics is not None and spec_for(topics.kind).combine(topics, [["POL"], ["Tech", "POL"]]).value == \
        ["POL", "Tech"]
