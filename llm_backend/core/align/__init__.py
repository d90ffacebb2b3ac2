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

Which occurrence each quote gets is one rule for the whole answer (placement.py): every
listing's candidates are collected first, then chosen together.  A candidate is never a span
that splits a grapheme cluster (an accent from its letter, an emoji ZWJ sequence, a skin tone),
never the span another listing has, and never overlaps another listing's span unless their
quotes nest or overlap.  Among the rest, in this order of preference:

1. a whole-word hit (boundaries between grapheme clusters) over one widened to whole words --
   a hit inside a longer word is never exact: it is widened to the word(s) around it and kept
   as FUZZY with their score when that still reaches the threshold (a truncated quote), else
   dropped;
2. a free place over one inside (then one crossing) another listing's span;
3. a place not inside an occurrence of a longer quote of the same answer ("York" in "New York",
   横浜 in 横浜市: for scripts written without spaces the only word boundary there is);
4. an earlier step: exact, then case-insensitive, then normalised;
5. the position: nearest the hint if the model gave one, else the first in text order.

The tiers are walked from best to worst, and each tier visits the listings in the model's
order, so no listing takes a worse place while a better one is open to it, and of two listings
that want one place the one listed first gets it (the model's order is kept where it decides).
The places a repeated quote received are then handed to its listings in text order: the k-th
repeat of a quote has the k-th free occurrence.  Fuzzy matches (step 4) come after all of this
and take the first free copy of their best window.

Guarantees: ``text[span.start:span.end] == span.text`` for every aligned span; a
span never cuts a grapheme cluster; no ``(start, end)`` is handed out twice and
spans of the same quote never overlap (different quotes may nest or overlap, e.g.
"Bank of America" / "America", but only when no free occurrence exists); a quote
with no counterpart in the text stays UNALIGNED, and a quote whose verbatim
occurrences are all used up is a duplicate, not a typo, so it never goes to the
fuzzy step.  The derived texts are built once per call, steps
1-3 are ``str.find`` loops and the fuzzy step is one C-level scan per entity plus
a bounded refinement, so the cost is linear in the text length.
"""

# Where each part lives: textforms (folded and normalised text, word and grapheme
# boundaries), quotes (trimming a quote), occurrences (substring search), taken (spans
# handed out), exact (steps 1-3), placement (the rule above), fuzzy (step 4), aligner
# (the order of the steps).
from .aligner import align
from .options import AlignOptions
from .spans import ALIGNMENT_META, Entity, MatchKind, Span, aligned_spans

__all__ = ["ALIGNMENT_META", "AlignOptions", "Entity", "MatchKind", "Span", "align", "aligned_spans"]
