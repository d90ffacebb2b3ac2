"""Turn entities quoted by an LLM into character offsets in the source text.

Label Studio needs ``start``/``end`` with ``text[start:end]`` equal to the labelled
span (Python ``str`` indices, i.e. code points).  Each quote is trimmed of what
models wrap around it (quotation marks, a sentence's full stop) and looked up by
the first step that finds it:

1. exact -- ``str.find`` on the text;
2. case-insensitive -- on a case-folded copy of the text with the text's exact
   length (``ß``, ``İ`` and the like fold to one character), so offsets carry over;
3. normalised -- NFKC, full case folding, Latin/Greek/Cyrillic accents dropped,
   curly quotes and dashes made plain, whitespace runs (``\\r\\n`` included)
   collapsed, surrounding punctuation stripped from the quote; every normalised
   character maps back to the original characters it came from;
4. fuzzy -- only for quotes of ``min_fuzzy_length``+ characters that steps 1-3
   found nowhere: rapidfuzz finds the best window in the normalised text, its
   edges are re-cut at word boundaries, and the span must still score
   ``fuzz.ratio >= fuzzy_threshold`` against the quote, lack no more of the
   quote's characters than a typo or two, and start and end with words that
   resemble the quote's first and last words.

Among several hits, a whole-word hit beats one inside a longer word, a free one
beats one overlapping another entity's span, an earlier step beats a later one;
then the hit nearest the position hint wins or, without a hint, the first one,
so the k-th listing of a quote gets its k-th occurrence.  A hit that cuts a word
(truncated quote "Microsof") is widened to whole words if that still scores above
the threshold, and is then reported as FUZZY.

Guarantees: ``text[span.start:span.end] == span.text`` for every aligned span; a
span never separates a character from its combining marks; no ``(start, end)`` is
handed out twice and spans of the same quote never overlap (different quotes may
nest or overlap, e.g. "Bank of America" / "America", but only when no free
occurrence exists); a quote with no counterpart in the text stays UNALIGNED, and
a quote whose verbatim occurrences are all used up is a duplicate, not a typo, so
it never goes to the fuzzy step.  The derived texts are built once per call, steps
1-3 are ``str.find`` loops and the fuzzy step is one C-level scan per entity plus
a bounded refinement, so the cost is linear in the text length.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import unicodedata
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

__all__ = ["AlignOptions", "Entity", "MatchKind", "Span", "align", "aligned_spans"]

log = logging.getLogger(__name__)


class MatchKind(str, enum.Enum):
    EXACT = "exact"
    CASE_INSENSITIVE = "case_insensitive"
    NORMALISED = "normalised"
    FUZZY = "fuzzy"
    UNALIGNED = "unaligned"


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    position: int | None = None  # approximate char offset claimed by the model


@dataclass(frozen=True)
class Span:
    entity: Entity
    kind: MatchKind
    start: int | None
    end: int | None
    text: str | None
    score: float

    @property
    def aligned(self) -> bool:
        return self.kind is not MatchKind.UNALIGNED


@dataclass(frozen=True)
class AlignOptions:
    # On fuzz.ratio (indel-based, 0-100).  85 accepts one typo in an 8+ char
    # quote but rejects "Jane Smith" for "John Smith" (80).
    fuzzy_threshold: float = 85.0
    all_occurrences: bool = False
    # Shorter quotes are too ambiguous for fuzzy matching ("Ann" ~ "Anne").
    min_fuzzy_length: int = 4
    # A fuzzy quote with a position hint is first looked for this close to it.
    hint_window: int = 500

    def __post_init__(self) -> None:
        if not 0.0 <= self.fuzzy_threshold <= 100.0:
            raise ValueError("fuzzy_threshold must be within 0-100")
        if self.min_fuzzy_length < 1 or self.hint_window < 0:
            raise ValueError("min_fuzzy_length must be >= 1 and hint_window >= 0")


_DEFAULT_OPTIONS = AlignOptions()


def aligned_spans(spans: Iterable[Span]) -> list[Span]:
    """The spans that carry offsets, in their original order."""
    return [s for s in spans if s.aligned]


# --------------------------------------------------------------------------- text forms

_WS_TABLE = {o: " " for o in range(0x3001) if chr(o).isspace()}
_PUNCT_TABLE = {
    **{ord(c): "'" for c in "\u2018\u2019\u201a\u201b\u2032\u00b4"},
    **{ord(c): '"' for c in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"},
    **{ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"},
}
_DROP = frozenset("\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff")


def _accented(o: int) -> bool:
    return any(0x300 <= ord(c) <= 0x36F for c in unicodedata.normalize("NFD", chr(o)))


# Characters whose normalised form is not a 1:1 image (accents to drop, invisible
# characters); their runs take the slow per-cluster path.
_SLOW_RE = re.compile(
    "["
    + "".join(re.escape(chr(o)) for o in (*range(0xC0, 0x530), *range(0x1E00, 0x2000)) if _accented(o))
    + "\u0300-\u036f"
    + "".join(sorted(_DROP))
    + "]"
)
# Runs of 2+ whitespace collapse; non-ASCII runs (with the character before them,
# which may be the base of a combining mark) may need real normalisation.
# Everything else maps 1:1 and is handled by a single slice + translate.
_SPECIAL_RE = re.compile(r"\s{2,}|\S?[^\x00-\x7f\s]+")
# Scripts written without spaces: every character edge is a word edge.
_NO_SPACE = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x2E80, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x20000, 0x3FFFF),
)


def _is_mark(c: str) -> bool:
    return c >= "\u0300" and unicodedata.category(c)[0] == "M"


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_" or _is_mark(c)


def _no_space(c: str) -> bool:
    o = ord(c)
    return o >= 0x0E00 and any(lo <= o <= hi for lo, hi in _NO_SPACE)


def _is_boundary(s: str, i: int) -> bool:
    if i <= 0 or i >= len(s):
        return True
    a, b = s[i - 1], s[i]
    if _is_mark(b):
        return False
    return not (_is_word(a) and _is_word(b)) or _no_space(a) or _no_space(b)


@functools.lru_cache(maxsize=8192)
def _fold_char(c: str) -> str:
    for f in (c.casefold(), c.lower()):
        if len(f) == 1:
            return f
    return c.casefold()[0]  # 'İ' -> 'i' + U+0307: keep the letter


def _fold(s: str) -> str:
    f = s.casefold()
    # casefold never deletes characters, so equal length means 1:1 everywhere.
    return f if len(f) == len(s) else "".join(map(_fold_char, s))


@functools.lru_cache(maxsize=8192)
def _norm_cluster(cluster: str) -> str:
    d = unicodedata.normalize("NFKD", cluster)
    d = "".join(c for c in d if not ("\u0300" <= c <= "\u036f" or c in _DROP))
    d = unicodedata.normalize("NFKC", d.casefold())
    return d.translate(_PUNCT_TABLE).translate(_WS_TABLE)


class _NormMap:
    """A normalised text plus, per segment, where it came from in the original.

    Linear segments map character i to original character i; other segments are
    one cluster whose every normalised character maps to the whole cluster.
    """

    def __init__(self, source: str) -> None:
        self._n: list[int] = []
        self._o: list[int] = []
        self._nlen: list[int] = []
        self._olen: list[int] = []
        self._linear: list[bool] = []
        parts: list[str] = []
        self._size = 0
        pos = 0
        for m in _SPECIAL_RE.finditer(source):
            a, b = m.span()
            if a > pos:
                self._add(parts, source[pos:a].lower().translate(_WS_TABLE), pos, a - pos, True)
            chunk = m.group()
            if chunk[0].isspace():
                self._add(parts, " ", a, b - a, False)
            elif (
                unicodedata.is_normalized("NFKC", chunk)
                and len(chunk.casefold()) == len(chunk)
                and not _SLOW_RE.search(chunk)
            ):
                self._add(parts, chunk.casefold().translate(_PUNCT_TABLE), a, b - a, True)
            else:
                i = 0
                while i < len(chunk):
                    j = i + 1
                    while j < len(chunk) and _is_mark(chunk[j]):
                        j += 1
                    self._add(parts, _norm_cluster(chunk[i:j]), a + i, j - i, False)
                    i = j
            pos = b
        if pos < len(source):
            self._add(parts, source[pos:].lower().translate(_WS_TABLE), pos, len(source) - pos, True)
        self.text = "".join(parts)

    def _add(self, parts: list[str], piece: str, o: int, olen: int, linear: bool) -> None:
        if not piece:
            return  # dropped characters map nowhere
        if self._linear and linear and self._linear[-1] and self._o[-1] + self._olen[-1] == o:
            self._nlen[-1] += len(piece)
            self._olen[-1] += olen
        else:
            self._n.append(self._size)
            self._o.append(o)
            self._nlen.append(len(piece))
            self._olen.append(olen)
            self._linear.append(linear)
        parts.append(piece)
        self._size += len(piece)

    def orig_start(self, p: int) -> int:
        i = bisect_right(self._n, p) - 1
        return self._o[i] + (p - self._n[i] if self._linear[i] else 0)

    def orig_end(self, p: int) -> int:
        """Original end offset of a normalised slice ending (exclusively) at p."""
        i = bisect_right(self._n, p - 1) - 1
        if self._linear[i]:
            return self._o[i] + (p - self._n[i])
        return self._o[i] + self._olen[i]

    def to_norm(self, o: int) -> int:
        i = bisect_right(self._o, o) - 1
        if i < 0:
            return 0
        if self._linear[i]:
            return self._n[i] + min(o - self._o[i], self._nlen[i])
        return self._n[i] if o == self._o[i] else self._n[i] + self._nlen[i]


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Quote:
    raw: str  # trimmed quote, searched verbatim and case-folded
    folded: str
    norm: str  # normalised raw
    core: str  # norm without surrounding punctuation; identifies "the same quote"


_OPEN_QUOTES = "\"'\u2018\u201c\u00ab\u2039\u300c\u300e"
_CLOSE_QUOTES = "\"'\u2019\u201d\u00bb\u203a\u300d\u300f"
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_OPENER = {c: o for o, c in _PAIRS.items()}
_TRAILING = ",;:.\u2026\u3002\uff0c\u3001"
# A final period that belongs to the name: initials, dotted acronyms, company and
# title abbreviations.  Any other final period was copied from the sentence.
_ABBREVIATION = re.compile(r"(?:\b\w|\w\.\w|\b(?:Inc|Ltd|Co|Corp|Jr|Sr|Dr|Mr|Mrs|Ms|St|Bros|Plc|Prof|No))\.$", re.I)


def _trim(quote: str) -> str:
    """Drop what models wrap around or append to a quote -- quotation marks,
    unbalanced or enclosing brackets, a sentence's comma or full stop, an
    ellipsis -- so that "Paris." labels "Paris" but "Acme Inc." keeps its period."""
    q = quote.strip()
    while q:
        first, last = q[0], q[-1]
        if first in _PAIRS and last == _PAIRS[first] and q.count(first) == 1:
            q = q[1:-1]
        elif (first in _OPEN_QUOTES or (first in _PAIRS and _PAIRS[first] not in q)) and len(q) > 1:
            q = q[1:]
        elif (
            last in _CLOSE_QUOTES
            or (last in _OPENER and _OPENER[last] not in q)
            or (last in _TRAILING and not (last == "." and _ABBREVIATION.search(q)))
        ):
            q = q[:-1]
        else:
            return q
        q = q.strip()
    return q


def _prepare(quote: str) -> _Quote | None:
    raw = _trim(quote)
    norm = _NormMap(raw).text.strip()
    core = norm
    while core and (core[0].isspace() or unicodedata.category(core[0])[0] == "P"):
        core = core[1:]
    while core and (core[-1].isspace() or unicodedata.category(core[-1])[0] == "P"):
        core = core[:-1]
    return _Quote(raw, _fold(raw), norm, core) if core else None


@dataclass(frozen=True)
class _Cand:
    start: int
    end: int
    kind: MatchKind
    score: float
    whole: bool  # starts and ends on word boundaries
    widened: bool  # cut a word and was widened to whole words


_STEP_KINDS = (MatchKind.EXACT, MatchKind.CASE_INSENSITIVE, MatchKind.NORMALISED)


def _find_all(hay: str, needle: str) -> Iterator[int]:
    i = hay.find(needle)
    while i != -1:
        yield i
        i = hay.find(needle, i + 1)


class _Taken:
    """Spans handed out so far, sorted by start for cheap overlap queries."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, str]] = []
        self._maxlen = 0

    def add(self, s: int, e: int, key: str) -> None:
        insort(self.items, (s, e, key))
        self._maxlen = max(self._maxlen, e - s)

    def conflict(self, s: int, e: int, key: str) -> int:
        """0 free; 1 nests with another quote's span; 2 crosses one; 3 forbidden."""
        lo = bisect_right(self.items, (s - self._maxlen, 1 << 62, ""))  # earlier ones end before s
        worst = 0
        for a, b, k in self.items[lo : bisect_left(self.items, (e, -1, ""))]:
            if b > s:
                if (a, b) == (s, e) or k == key:
                    return 3
                worst = max(worst, 1 if (a <= s and e <= b) or (s <= a and b <= e) else 2)
        return worst


def _plausible(quote: str, found: str) -> bool:
    """Reject spans the ratio alone lets through.

    The ratio accepts "John Smith" for "John Smithson" and "Grace Schneider was"
    for "Grace Schneiderson": a span may hold characters the quote cut off
    (truncation), but not lack more of the quote's characters than a typo or
    two, and its first and last words must resemble the quote's -- a neighbouring
    word that happens to supply a few letters is not part of the entity.
    """
    if len(quote) - LCSseq.similarity(quote, found) > max(2, len(quote) // 10):
        return False
    qw, fw = re.findall(r"\w+", quote), re.findall(r"\w+", found)
    if not (qw and fw):
        return bool(qw) == bool(fw)
    return fuzz.ratio(qw[0], fw[0]) >= 50 and fuzz.ratio(qw[-1], fw[-1]) >= 50


_LONG = 64  # quotes longer than this are costly to re-scan and often contain other entities
_MAX_HITS = 200
_PIECEWISE, _PIECE = 160, 48  # longer quotes are searched for by pieces of this length


@functools.lru_cache(maxsize=1024)
def _word_re(needle: str) -> re.Pattern[str]:
    """needle where no letter or digit touches an edge that is one (a filter:
    hits are re-checked by _is_boundary).  The literal comes first so that re
    uses its fast substring search; the lookbehind spans the needle."""
    right = r"(?!\w)" if needle[-1].isalnum() else ""
    left = rf"(?<!\w.{{{len(needle)}}})" if needle[0].isalnum() else ""
    return re.compile(re.escape(needle) + right + left, re.S)


def _occurrences(hay: str, needle: str) -> Iterator[int]:
    """Every occurrence, but past _MAX_HITS only whole-word ones: a quote like
    "e" or "the" must not cost a Python step per letter of the text.  (Past that
    point a word glued to a CJK character is missed; \\w counts CJK as letters.)"""
    for n, i in enumerate(_find_all(hay, needle)):
        yield i
        if n + 1 == _MAX_HITS:
            yield from (m.start() for m in _word_re(needle).finditer(hay, i + 1))
            return


class _Aligner:
    def __init__(self, text: str, options: AlignOptions) -> None:
        self.text = text
        self.opt = options
        self.taken = _Taken()
        self.exhausted: set[str] = set()

    @functools.cached_property
    def folded(self) -> str:
        return _fold(self.text)

    @functools.cached_property
    def norm(self) -> _NormMap:
        return _NormMap(self.text)

    # -- steps 1-3

    def _hits(self, q: _Quote, step: int) -> Iterator[tuple[int, int]]:
        """Occurrences of the quote for one step, in text order (original offsets)."""
        if step < 2:
            hay, needles = (self.text, (q.raw,)) if step == 0 else (self.folded, (q.folded,))
        else:
            hay, needles = self.norm.text, tuple(dict.fromkeys((q.norm, q.core)))
        for needle in needles:
            for i in _occurrences(hay, needle):
                if step < 2:
                    yield i, i + len(needle)
                else:
                    yield self.norm.orig_start(i), self.norm.orig_end(i + len(needle))

    def _evaluate(self, s: int, e: int, step: int, q: _Quote) -> _Cand | None:
        text = self.text
        if _is_boundary(text, s) and _is_boundary(text, e):
            return _Cand(s, e, _STEP_KINDS[step], 100.0, True, False)
        wide = self._widen(s, e, q)
        if wide is not None:
            return wide
        if (s < len(text) and _is_mark(text[s])) or (e < len(text) and _is_mark(text[e])):
            return None  # would split a character from its accents
        return _Cand(s, e, _STEP_KINDS[step], 100.0, False, False)

    def _widen(self, s: int, e: int, q: _Quote) -> _Cand | None:
        text, reach = self.text, len(q.core) // 2 + 2
        short = len(q.core) < self.opt.min_fuzzy_length
        if short and not ((s < len(text) and _is_mark(text[s])) or (e < len(text) and _is_mark(text[e]))):
            return None  # short quotes are only widened over combining marks; skip the costly checks
        s2, e2 = s, e
        while not _is_boundary(text, s2) and s - s2 < reach:
            s2 -= 1
        while not _is_boundary(text, e2) and e2 - e < reach:
            e2 += 1
        if not (_is_boundary(text, s2) and _is_boundary(text, e2)):
            return None
        got = _NormMap(text[s2:e2]).text.strip()
        if got in (q.norm, q.core):  # only accents or a combining mark were cut
            return _Cand(s2, e2, MatchKind.NORMALISED, 100.0, True, True)
        if short:
            return None
        score = fuzz.ratio(q.core, got, score_cutoff=self.opt.fuzzy_threshold)
        return _Cand(s2, e2, MatchKind.FUZZY, score, True, True) if score else None

    def candidates(self, q: _Quote) -> Iterator[tuple[int, _Cand]]:
        seen: set[tuple[int, int]] = set()
        for step in range(3):
            for s, e in self._hits(q, step):
                if (s, e) not in seen:
                    seen.add((s, e))
                    c = self._evaluate(s, e, step, q)
                    if c is not None:
                        yield step, c

    def deterministic(self, q: _Quote, hint: int | None) -> tuple[_Cand | None, bool]:
        """Best usable hit of steps 1-3, and whether the quote occurs at all."""
        best: _Cand | None = None
        best_rank: tuple[bool, bool, int, int, int] | None = None
        found = False
        for step, c in self.candidates(q):
            found = True
            if (
                best_rank is not None
                and best_rank[:3] == (False, False, 0)
                and (hint is None or step > best_rank[3] or c.start - hint >= best_rank[4])
            ):
                break  # hits come in step and text order: none of the rest can rank higher
            conflict = self.taken.conflict(c.start, c.end, q.core)
            if conflict == 3:
                continue
            rank = (not c.whole, c.widened, conflict, step, abs(c.start - hint) if hint is not None else c.start)
            if best_rank is None or rank < best_rank:
                best, best_rank = c, rank
        return best, found

    # -- step 4

    def fuzzy(self, q: _Quote, hint: int | None) -> _Cand | None:
        core, size = q.core, len(self.norm.text)
        if len(core) < self.opt.min_fuzzy_length or not size or core in self.exhausted:
            return None
        c = self._fuzzy(core, size, hint)
        if c is None:
            self.exhausted.add(core)  # spans are only ever added: a repeat of this quote fails too
        return c

    def _fuzzy(self, core: str, size: int, hint: int | None) -> _Cand | None:
        if hint is not None:
            # Widen the search around the hint step by step, so the nearest
            # acceptable occurrence wins over an equally good distant one.
            h, m, radius = self.norm.to_norm(hint), len(core), 0
            while True:
                lo, hi = max(0, h - radius - m), min(size, h + radius + 2 * m)
                c = self._search(core, self._free(lo, hi))
                if c is not None and self.taken.conflict(c.start, c.end, core) == 0:
                    return c
                if radius >= self.opt.hint_window or (lo, hi) == (0, size):
                    break
                radius = min(max(4 * radius, m), self.opt.hint_window)
        c = self._search(core, [(0, size)])
        if c is None:
            return None
        # rapidfuzz reports *a* best window, not the first, and repeated mentions
        # are usually verbatim copies: the first free copy of the matched text
        # keeps "k-th listing -> k-th occurrence" without another fuzzy scan.
        c = self._first_free_copy(c) or c
        conflict = self.taken.conflict(c.start, c.end, core)
        if conflict == 0 or (conflict == 1 and len(core) > _LONG):
            return c
        if self.taken.items:  # every copy of the best window is in use: look where nothing is taken
            free = self._search(core, self._free(0, size))
            if free is not None and self.taken.conflict(free.start, free.end, core) == 0:
                return free
        return c if conflict < 3 else None

    def _first_free_copy(self, c: _Cand) -> _Cand | None:
        nm = self.norm
        needle = nm.text[nm.to_norm(c.start) : nm.to_norm(c.end)]
        for i in _find_all(nm.text, needle):
            j = i + len(needle)
            if _is_boundary(nm.text, i) and _is_boundary(nm.text, j):
                s, e = nm.orig_start(i), nm.orig_end(j)
                if self.taken.conflict(s, e, "") == 0:
                    return _Cand(s, e, c.kind, c.score, True, False)
        return None

    def _free(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Stretches of normalised text in [lo, hi) not covered by a taken span."""
        out, pos, nm = [], lo, self.norm
        for s, e, _ in self.taken.items:
            ns, ne = nm.to_norm(s), nm.to_norm(e)
            if ns >= hi:
                break
            if ns > pos:
                out.append((pos, ns))
            pos = max(pos, ne)
        if pos < hi:
            out.append((pos, hi))
        return out

    def _search(self, core: str, segments: list[tuple[int, int]]) -> _Cand | None:
        """Best refined fuzzy match inside the given normalised stretches."""
        text, thr = self.norm.text, self.opt.fuzzy_threshold
        # A stretch shorter than this cannot reach the threshold against the quote.
        min_len = int(len(core) * thr / (200.0 - thr)) if thr < 100 else len(core)
        segments = [(a, b) for a, b in segments if b - a >= min_len]
        windows = []
        for a, b in segments:
            if b - a <= len(core):
                windows.append((fuzz.ratio(core, text[a:b]), a, b, a, b))
            elif len(core) > _PIECEWISE:
                windows.extend(self._piece_windows(core, a, b))
            else:
                r = fuzz.partial_ratio_alignment(core, text[a:b], score_cutoff=max(0.0, thr - 15))
                if r is not None:
                    windows.append((r.score, a, b, a + r.dest_start, a + r.dest_end))
        windows.sort(key=lambda t: -t[0])  # stable: equal scores stay in text order
        found = [c for w in windows[:8] if (c := self._refine(core, *w[1:])) is not None]
        return max(found, key=lambda c: c.score, default=None)

    def _piece_windows(self, core: str, a: int, b: int) -> list[tuple[float, int, int, int, int]]:
        """Windows for a long quote from where its head, middle and tail land.

        partial_ratio slows down sharply with the needle's length (seconds for a
        5,000-character quote that is nowhere); short pieces are cheap to find.
        """
        m, seg, thr = len(core), self.norm.text[a:b], self.opt.fuzzy_threshold
        hits = []  # (implied start, piece offset, piece start, piece end, score)
        for off in (0, (m - _PIECE) // 2, m - _PIECE):
            r = fuzz.partial_ratio_alignment(core[off : off + _PIECE], seg, score_cutoff=thr)
            if r is not None:
                hits.append((a + r.dest_start - off, off, a + r.dest_start, a + r.dest_end, r.score))
        hits.sort()
        groups: list[list[tuple[int, int, int, int, float]]] = []
        for h in hits:  # pieces that agree on where the quote starts
            if groups and h[0] - groups[-1][-1][0] <= m // 4:
                groups[-1].append(h)
            else:
                groups.append([h])
        windows = []
        for g in groups:
            first, last = min(g, key=lambda h: h[1]), max(g, key=lambda h: h[1])
            # The head piece fixes the start and the tail piece the end.
            ds, de = first[2] - first[1], last[3] + (m - last[1] - _PIECE)
            windows.append((sum(h[4] for h in g) / 3, a, b, ds, de))
        return windows

    def _refine(self, core: str, a: int, b: int, ds: int, de: int) -> _Cand | None:
        """Re-cut a window at word boundaries near its edges; keep the best ratio.

        partial_ratio_alignment's window is exactly as wide as the quote, so with
        insertions or deletions its edges are off by a few characters.
        """
        text, m, thr = self.norm.text, len(core), self.opt.fuzzy_threshold
        w = min(max(3, m // 4 + 2), 48)
        starts = [
            p for p in range(max(a, ds - w), min(b - 1, ds + w) + 1) if not text[p].isspace() and _is_boundary(text, p)
        ]
        ends = [
            p
            for p in range(max(a + 1, de - w), min(b, de + w) + 1)
            if not text[p - 1].isspace() and _is_boundary(text, p)
        ]
        if m > _LONG and starts and ends:
            # Trying every start/end pair costs too much for a long quote; its
            # edges are far apart, so each is settled against its own end of it.
            p = min(m // 2, 32)
            starts = [max(starts, key=lambda s: (fuzz.ratio(core[:p], text[s : s + p]), -abs(s - ds)))]
            ends = [max(ends, key=lambda e: (fuzz.ratio(core[-p:], text[e - p : e]), -abs(e - de)))]
        best: tuple[float, int, int, int] | None = None  # (score, -drift, start, end)
        for s in starts:
            for e in ends:
                n = e - s
                if n <= 0 or 200.0 * min(n, m) / (n + m) < thr:
                    continue  # the length difference alone rules it out
                score = fuzz.ratio(core, text[s:e], score_cutoff=thr)
                if not score or not _plausible(core, text[s:e]):
                    continue
                key = (score, -abs(s - ds) - abs(e - de), s, e)
                if best is None or key[:2] > best[:2]:
                    best = key
        if best is None:
            return None
        nm = self.norm
        return _Cand(nm.orig_start(best[2]), nm.orig_end(best[3]), MatchKind.FUZZY, best[0], True, False)

    # -- all_occurrences

    def expand(self, primary: _Cand, q: _Quote) -> list[_Cand]:
        """Free occurrences of the quote (of the matched text, for a fuzzy match)."""
        fuzzy = primary.kind is MatchKind.FUZZY
        needle = _prepare(self.text[primary.start : primary.end]) if fuzzy else q
        if needle is None:
            return []
        out = []
        for _, c in sorted(self.candidates(needle), key=lambda t: (t[1].start, t[0])):
            if (c.whole or not primary.whole) and self.taken.conflict(c.start, c.end, "") == 0:
                self.taken.add(c.start, c.end, q.core)
                # A copy of a fuzzy match is as far from the quote as the match is.
                out.append(_Cand(c.start, c.end, primary.kind, primary.score, c.whole, c.widened) if fuzzy else c)
        return out


def align(text: str, entities: Sequence[Entity], options: AlignOptions = _DEFAULT_OPTIONS) -> list[Span]:
    """Align each quoted entity to offsets in ``text``; see the module docstring.

    Returns one Span per entity in input order (UNALIGNED where nothing fits);
    with ``options.all_occurrences`` an aligned entity yields one Span per
    occurrence, ordered by start.
    """
    al = _Aligner(text, options)
    quotes = [(i, q) for i, e in enumerate(entities) if e.text and (q := _prepare(e.text)) is not None]
    hints = [None if e.position is None else min(max(e.position, 0), len(text)) for e in entities]
    chosen: list[_Cand | None] = [None] * len(entities)
    needs_fuzzy: list[tuple[int, _Quote]] = []
    # Verbatim hits are placed for every entity before any fuzzy search, so a
    # typo'd quote can never take the occurrence an exact quote needs.
    for i, q in quotes:
        c, found = al.deterministic(q, hints[i])
        if c is not None:
            chosen[i] = c
            al.taken.add(c.start, c.end, q.core)
        elif not found:
            needs_fuzzy.append((i, q))
    for i, q in needs_fuzzy:
        chosen[i] = c = al.fuzzy(q, hints[i])
        if c is not None:
            al.taken.add(c.start, c.end, q.core)
    # Extra occurrences only after every entity has its own span.
    extra: list[list[_Cand]] = [[] for _ in entities]
    for i, q in quotes if options.all_occurrences else ():
        if (c := chosen[i]) is not None:
            extra[i] = al.expand(c, q)

    spans: list[Span] = []
    for entity, c, more in zip(entities, chosen, extra, strict=True):
        if c is None:
            log.debug("unaligned entity %r (%s): no acceptable match in text", entity.text, entity.label)
            spans.append(Span(entity, MatchKind.UNALIGNED, None, None, None, 0.0))
        else:
            spans.extend(
                Span(entity, k.kind, k.start, k.end, text[k.start : k.end], k.score)
                for k in sorted([c, *more], key=lambda k: k.start)
            )
    return spans
