"""How many tokens of text a part may hold, and how much a part the provider refused must shrink.

Pure arithmetic over counts. Our counts come from LiteLLM's tokenizer for the model name; the
provider counts with its own, so a learned `ratio` (the provider's tokens per one of ours, at
least 1) converts what its window leaves into our tokens.
"""

from __future__ import annotations

MARGIN = 0.9  # of the room left for text: our count and the provider's tokenizer may still differ


def text_budget(window: int, reserve: int, overhead: int, examples: int, ratio: float = 1.0) -> int:
    """Tokens of text (our count) one part may hold: the window less the answer's room, in our tokens,
    less the prompt around the text and the room for few-shot examples, with the margin."""
    return int(((window - reserve) / max(ratio, 1.0) - overhead - examples) * MARGIN)


def overlap_for(budget: int) -> int:
    """Tokens a part of `budget` tokens re-reads before its first new character: about a twelfth of it, 32 to
    512, so an entity cut by one part's end is whole in the next. Parts cut smaller after a refusal re-read
    less, as parts planned that small would."""
    return min(512, max(32, budget // 12))


def provider_prompt(prompt_tokens: int | None, requested_tokens: int | None, answer_room: int | None) -> int | None:
    """The provider's count of a refused prompt: stated, or what it requested less the answer's room."""
    if prompt_tokens:
        return prompt_tokens
    if requested_tokens:
        return max(1, requested_tokens - (answer_room or 0))
    return None


def shrunk_budget(part_tokens: int, room: int, theirs: int | None, budget: int, floor: int) -> int:
    """The text budget of the pieces of a refused part: smaller by at least room / theirs with the margin
    (half when the provider gave no count), and never over what the learned ratio leaves (`budget`)."""
    factor = min(room / theirs, 1.0) if theirs else 0.5
    return max(floor, min(budget, int(part_tokens * factor * MARGIN)))
