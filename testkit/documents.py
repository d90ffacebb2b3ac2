"""Seeded long documents with planted entities at known offsets, for tests and bench/longdoc.py.

The filler is lower-case English-like prose in paragraphs, with Japanese sentences and emoji mixed
in; the entities are capitalised names (people, organisations, places), each planted one or more
times: repeated in one sentence, planted next to a near-duplicate ("Anna Berg" and "Anna Bergman"),
or glued to CJK characters and emoji ("東京でAnna Bergと😀"). Filler words are lower-case, so a
name occurs exactly where it was planted, and `Gazetteer.occurrences` finds exactly the planted
spans (the generator checks it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .gazetteer import Gazetteer

FILLER = ["the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from",
          "it", "an", "be", "this", "which", "or", "are", "were", "river", "stone", "market", "report", "quarter",
          "figure", "season", "harbour", "council", "review", "budget", "signal"]
CJK = ["東京の天気は晴れです。", "会議は月曜日に始まります。", "報告書を読みました。", "これは長い文書です。"]
EMOJI = ["😀", "🚀", "👍🏽", "👩\u200d💻", "🇯🇵"]
FIRST = ["Anna", "Otto", "Mira", "Jonas", "Lena", "Tomas", "Ines", "Karl", "Sofia", "Pavel", "Yuki", "Omar"]
LAST = ["Berg", "Lindqvist", "Sato", "Moreau", "Okafor", "Novak", "Haddad", "Keller", "Ruiz", "Tanaka"]
ORGS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Cyberdyne", "Tyrell"]
PLACES = ["Oslo", "Kyoto", "Lagos", "Quito", "Tallinn", "Porto", "Hanoi", "Dakar", "Perth", "Cusco"]


@dataclass(frozen=True)
class Planted:
    start: int
    end: int
    label: str
    text: str


def _names(rng: random.Random, count: int) -> list[tuple[str, str]]:
    pool: dict[str, str] = {}
    while len(pool) < count:
        roll = rng.random()
        if roll < 0.5:
            pool.setdefault(f"{rng.choice(FIRST)} {rng.choice(LAST)}", "Person")
        elif roll < 0.8:
            pool.setdefault(f"{rng.choice(ORGS)} {rng.choice(['Corp', 'Labs', 'Group', 'Bank'])}", "Organization")
        else:
            pool.setdefault(rng.choice(PLACES), "Location")
    return list(pool.items())


def _near_duplicate(name: str) -> str:
    # Another entity that begins like this one: the longer name must not be read as the shorter.
    return name + "man" if " " in name else name + "ville"


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.06:
        return rng.choice(CJK)
    words = " ".join(rng.choice(FILLER) for _ in range(rng.randint(5, 16)))
    emoji = f" {rng.choice(EMOJI)}" if rng.random() < 0.05 else ""
    return f"{words[0].upper()}{words[1:]}{emoji}{rng.choice(['.', '.', '.', '!', '?'])} "


def planted_document(seed: int, chars: int, entities: int) -> tuple[str, list[Planted]]:
    """A text of about `chars` characters with `entities` planted entity occurrences."""
    rng = random.Random(seed)
    names = _names(rng, max(4, entities // 4))
    every = max(1, chars // max(entities, 1))
    out: list[str] = []
    planted: list[Planted] = []
    size = 0
    next_at = rng.randint(0, every)

    def put(piece: str, label: str | None = None) -> None:
        nonlocal size
        if label is not None:
            planted.append(Planted(size, size + len(piece), label, piece))
        out.append(piece)
        size += len(piece)

    while size < chars:
        if rng.random() < 0.08:
            put("\n\n" if rng.random() < 0.7 else "\n")
        if size >= next_at and len(planted) < entities:
            name, label = rng.choice(names)
            style = rng.random()
            if style < 0.15 and len(planted) + 2 <= entities:  # repeated in one sentence
                put("Then "), put(name, label), put(" met "), put(name, label), put(" again. ")
            elif style < 0.3 and len(planted) + 2 <= entities:  # a near-duplicate close by
                put("Both "), put(name, label), put(" and "), put(_near_duplicate(name), label), put(" came. ")
            elif style < 0.45:  # glued to CJK and emoji
                put("東京で"), put(name, label), put(f"と{rng.choice(EMOJI)}。")
            else:
                put(_sentence(rng)[:-2] + " by "), put(name, label), put(". ")
            next_at = size + rng.randint(every // 2, every + every // 2)
            continue
        put(_sentence(rng))
    text = "".join(out)
    found = Gazetteer("ner", [(p.text, p.label) for p in planted]).occurrences(text)
    if [(p.start, p.end) for p in planted] != [(start, end) for start, end, _ in found]:
        raise AssertionError("planted entities are not exactly what the gazetteer finds; adjust the generator")
    return text, planted


def gazetteer_for(planted: list[Planted], control: str = "ner", cut_edges: bool = True) -> Gazetteer:
    return Gazetteer(control, sorted({(p.text, p.label) for p in planted}), cut_edges=cut_edges)
