"""Substring occurrences of a needle, bounded for needles that occur everywhere."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

_MAX_HITS = 200


def find_all(haystack: str, needle: str) -> Iterator[int]:
    """Start of every occurrence of ``needle``, overlapping ones included, in text order."""
    index = haystack.find(needle)
    while index != -1:
        yield index
        index = haystack.find(needle, index + 1)


@functools.lru_cache(maxsize=1024)
def _word_re(needle: str) -> re.Pattern[str]:
    """needle where no letter or digit touches an edge that is one (a filter:
    hits are re-checked by is_boundary).  The literal comes first so that re
    uses its fast substring search; the lookbehind spans the needle."""
    right = r"(?!\w)" if needle[-1].isalnum() else ""
    left = rf"(?<!\w.{{{len(needle)}}})" if needle[0].isalnum() else ""
    return re.compile(re.escape(needle) + right + left, re.S)


def occurrences(haystack: str, needle: str) -> Iterator[int]:
    """Every occurrence, but past _MAX_HITS only whole-word ones: a quote like
    "e" or "the" must not cost a Python step per letter of the text.  (Past that
    point a word glued to a CJK character is missed; \\w counts CJK as letters.)"""
    for count, index in enumerate(find_all(haystack, needle), start=1):
        yield index
        if count == _MAX_HITS:
            yield from (match.start() for match in _word_re(needle).finditer(haystack, index + 1))
            return
