"""The forms of a text the aligner searches -- case-folded and normalised -- and the
character classes that decide where a word begins and ends."""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_right

import regex

_WHITESPACE_TABLE = {codepoint: " " for codepoint in range(0x3001) if chr(codepoint).isspace()}
_PUNCTUATION_TABLE = {
    **{ord(char): "'" for char in "\u2018\u2019\u201a\u201b\u2032\u00b4"},
    **{ord(char): '"' for char in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"},
    **{ord(char): "-" for char in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"},
}
_DROPPED = frozenset("\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff")


def _accented(codepoint: int) -> bool:
    return any(0x300 <= ord(char) <= 0x36F for char in unicodedata.normalize("NFD", chr(codepoint)))


# Characters whose normalised form is not a 1:1 image (accents to drop, invisible
# characters); their runs take the slow per-cluster path.
_SLOW_RE = re.compile(
    "["
    + "".join(
        re.escape(chr(codepoint)) for codepoint in (*range(0xC0, 0x530), *range(0x1E00, 0x2000)) if _accented(codepoint)
    )
    + "\u0300-\u036f"
    + "".join(sorted(_DROPPED))
    + "]"
)
# Runs of 2+ whitespace collapse; non-ASCII runs (with the character before them,
# which may be the base of a combining mark) may need real normalisation.
# Everything else maps 1:1 and is handled by a single slice + translate.
_SPECIAL_RE = re.compile(r"\s{2,}|\S?[^\x00-\x7f\s]+")
# Scripts written without spaces: every character edge is a word edge.
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x2E80, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x20000, 0x3FFFF),
)


def is_mark(char: str) -> bool:
    return char >= "\u0300" and unicodedata.category(char)[0] == "M"


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_" or is_mark(char)


def _written_without_spaces(char: str) -> bool:
    codepoint = ord(char)
    return codepoint >= 0x0E00 and any(low <= codepoint <= high for low, high in _NO_SPACE_RANGES)


_CLUSTER = regex.compile(r"\X")  # an extended grapheme cluster (UAX #29)
_CLUSTER_REACH = 64  # code points looked back for a cluster start: longer emoji sequences are not written


def is_cluster_boundary(string: str, index: int) -> bool:
    """Whether ``index`` falls between two grapheme clusters (never inside "e" + U+0301, an emoji
    ZWJ sequence, a skin-tone modifier, a flag or CR LF)."""
    if index <= 0 or index >= len(string):
        return True
    before, after = string[index - 1], string[index]
    if before < "\x80" and after < "\x80":
        return not (before == "\r" and after == "\n")
    # A printable ASCII character starts a cluster (only a rare Prepend mark could glue it to the
    # one before): segment from the nearest one back, which is cheap and exact where it matters.
    low = index - 1
    while low > 0 and index - low < _CLUSTER_REACH and not (" " <= string[low] < "\x7f"):
        low -= 1
    for match in _CLUSTER.finditer(string, low, min(len(string), index + _CLUSTER_REACH)):
        if match.end() >= index:
            return match.end() == index
    return True


def _cluster_base(string: str, index: int) -> str:
    """The first character of the grapheme cluster that ends at ``index``."""
    low = index - 1
    while low > 0 and not is_cluster_boundary(string, low):
        low -= 1
    return string[low]


def is_boundary(string: str, index: int) -> bool:
    """Whether a word may begin or end at ``index``: on a grapheme cluster boundary, and not between
    two word clusters unless one is of a script written without spaces."""
    if index <= 0 or index >= len(string):
        return True
    before, after = string[index - 1], string[index]
    if before < "\x80" and after < "\x80":  # the common case, ASCII on both sides
        return not (_is_word_char(before) and _is_word_char(after)) and not (before == "\r" and after == "\n")
    if is_mark(after) or not is_cluster_boundary(string, index):
        return False
    if before >= "\u0300" and not before.isalnum():
        before = _cluster_base(string, index)  # a mark, joiner or modifier ends the cluster: its base decides
    return (
        not (_is_word_char(before) and _is_word_char(after))
        or _written_without_spaces(before)
        or _written_without_spaces(after)
    )


@functools.lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    for folded in (char.casefold(), char.lower()):
        if len(folded) == 1:
            return folded
    return char.casefold()[0]  # 'İ' -> 'i' + U+0307: keep the letter


def fold(string: str) -> str:
    """Case-fold ``string`` keeping its length, so offsets into it are offsets into ``string``."""
    folded = string.casefold()
    # casefold never deletes characters, so equal length means 1:1 everywhere.
    return folded if len(folded) == len(string) else "".join(map(_fold_char, string))


@functools.lru_cache(maxsize=8192)
def _normalise_cluster(cluster: str) -> str:
    decomposed = unicodedata.normalize("NFKD", cluster)
    decomposed = "".join(char for char in decomposed if not ("\u0300" <= char <= "\u036f" or char in _DROPPED))
    normalised = unicodedata.normalize("NFKC", decomposed.casefold())
    return normalised.translate(_PUNCTUATION_TABLE).translate(_WHITESPACE_TABLE)


class NormMap:
    """A normalised text plus, per segment, where it came from in the original.

    Linear segments map character i to original character i; other segments are
    one cluster whose every normalised character maps to the whole cluster.
    """

    def __init__(self, source: str) -> None:
        # Parallel lists, one entry per segment, sorted by both offsets.
        self._norm_starts: list[int] = []
        self._orig_starts: list[int] = []
        self._norm_lengths: list[int] = []
        self._orig_lengths: list[int] = []
        self._linear: list[bool] = []
        parts: list[str] = []
        self._size = 0
        pos = 0
        for match in _SPECIAL_RE.finditer(source):
            start, end = match.span()
            if start > pos:
                self._add(parts, source[pos:start].lower().translate(_WHITESPACE_TABLE), pos, start - pos, True)
            chunk = match.group()
            if chunk[0].isspace():
                self._add(parts, " ", start, end - start, False)
            elif (
                unicodedata.is_normalized("NFKC", chunk)
                and len(chunk.casefold()) == len(chunk)
                and not _SLOW_RE.search(chunk)
            ):
                self._add(parts, chunk.casefold().translate(_PUNCTUATION_TABLE), start, end - start, True)
            else:
                i = 0
                while i < len(chunk):
                    j = i + 1
                    while j < len(chunk) and is_mark(chunk[j]):
                        j += 1
                    self._add(parts, _normalise_cluster(chunk[i:j]), start + i, j - i, False)
                    i = j
            pos = end
        if pos < len(source):
            self._add(parts, source[pos:].lower().translate(_WHITESPACE_TABLE), pos, len(source) - pos, True)
        self.text = "".join(parts)

    def _add(self, parts: list[str], piece: str, orig_start: int, orig_length: int, linear: bool) -> None:
        if not piece:
            return  # dropped characters map nowhere
        if (
            self._linear
            and linear
            and self._linear[-1]
            and self._orig_starts[-1] + self._orig_lengths[-1] == orig_start
        ):
            self._norm_lengths[-1] += len(piece)
            self._orig_lengths[-1] += orig_length
        else:
            self._norm_starts.append(self._size)
            self._orig_starts.append(orig_start)
            self._norm_lengths.append(len(piece))
            self._orig_lengths.append(orig_length)
            self._linear.append(linear)
        parts.append(piece)
        self._size += len(piece)

    def orig_start(self, pos: int) -> int:
        """Original start offset of a normalised slice starting at ``pos``."""
        i = bisect_right(self._norm_starts, pos) - 1
        return self._orig_starts[i] + (pos - self._norm_starts[i] if self._linear[i] else 0)

    def orig_end(self, pos: int) -> int:
        """Original end offset of a normalised slice ending (exclusively) at ``pos``."""
        if pos <= 0:
            return 0  # an empty slice at the start; bisect would give -1, i.e. the last segment
        i = bisect_right(self._norm_starts, pos - 1) - 1
        if self._linear[i]:
            return self._orig_starts[i] + (pos - self._norm_starts[i])
        return self._orig_starts[i] + self._orig_lengths[i]

    def to_norm(self, orig: int) -> int:
        """Normalised offset of original offset ``orig``; one inside a cluster maps past the cluster."""
        i = bisect_right(self._orig_starts, orig) - 1
        if i < 0:
            return 0
        if self._linear[i]:
            return self._norm_starts[i] + min(orig - self._orig_starts[i], self._norm_lengths[i])
        if orig == self._orig_starts[i]:
            return self._norm_starts[i]
        return self._norm_starts[i] + self._norm_lengths[i]


class TextForms:
    """A text and its derived forms, each built on first use: a call whose quotes
    are all found verbatim never pays for the normalised text."""

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def folded(self) -> str:
        return fold(self.text)

    @functools.cached_property
    def norm(self) -> NormMap:
        return NormMap(self.text)
