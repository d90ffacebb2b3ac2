"""A quote as the model wrote it, trimmed of what it wrapped around it, in the forms
the search steps look for."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .textforms import NormMap, fold


@dataclass(frozen=True)
class Quote:
    raw: str  # trimmed quote, searched verbatim and case-folded
    folded: str
    norm: str  # normalised raw
    core: str  # norm without surrounding punctuation; identifies "the same quote"


_OPEN_QUOTES = "\"'\u2018\u201c\u00ab\u2039\u300c\u300e"
_CLOSE_QUOTES = "\"'\u2019\u201d\u00bb\u203a\u300d\u300f"
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_OPENER = {closer: opener for opener, closer in _PAIRS.items()}
_TRAILING = ",;:.\u2026\u3002\uff0c\u3001"
# A final period that belongs to the name: initials, dotted acronyms, company and
# title abbreviations.  Any other final period was copied from the sentence.
_ABBREVIATION = re.compile(r"(?:\b\w|\w\.\w|\b(?:Inc|Ltd|Co|Corp|Jr|Sr|Dr|Mr|Mrs|Ms|St|Bros|Plc|Prof|No))\.$", re.I)


def trim(quote: str) -> str:
    """Drop what models wrap around or append to a quote -- quotation marks,
    unbalanced or enclosing brackets, a sentence's comma or full stop, an
    ellipsis -- so that "Paris." labels "Paris" but "Acme Inc." keeps its period."""
    trimmed = quote.strip()
    while trimmed:
        first, last = trimmed[0], trimmed[-1]
        if first in _PAIRS and last == _PAIRS[first] and trimmed.count(first) == 1:
            trimmed = trimmed[1:-1]
        elif (first in _OPEN_QUOTES or (first in _PAIRS and _PAIRS[first] not in trimmed)) and len(trimmed) > 1:
            trimmed = trimmed[1:]
        elif (
            last in _CLOSE_QUOTES
            or (last in _OPENER and _OPENER[last] not in trimmed)
            or (last in _TRAILING and not (last == "." and _ABBREVIATION.search(trimmed)))
        ):
            trimmed = trimmed[:-1]
        else:
            return trimmed
        trimmed = trimmed.strip()
    return trimmed


def _is_space_or_punctuation(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] == "P"


def prepare(quote: str) -> Quote | None:
    """The searchable forms of ``quote``, or None when nothing but punctuation is left."""
    raw = trim(quote)
    norm = NormMap(raw).text.strip()
    core = norm
    while core and _is_space_or_punctuation(core[0]):
        core = core[1:]
    while core and _is_space_or_punctuation(core[-1]):
        core = core[:-1]
    return Quote(raw, fold(raw), norm, core) if core else None
