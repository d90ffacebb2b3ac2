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

# Where each part lives: textforms (folded and normalised text, word boundaries),
# quotes (trimming a quote), occurrences (substring search), taken (spans handed
# out), exact (steps 1-3), fuzzy (step 4), aligner (the order entities are placed in).
from .aligner import align
from .options import AlignOptions
from .spans import Entity, MatchKind, Span, aligned_spans

__all__ = ["AlignOptions", "Entity", "MatchKind", "Span", "align", "aligned_spans"]
