"""The knobs of the aligner."""

from __future__ import annotations

from dataclasses import dataclass


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


DEFAULT_OPTIONS = AlignOptions()
