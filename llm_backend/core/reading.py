"""Read one JSON object out of what a model wrote: strictly when we can, carefully when we must.

Models that enforce `response_format` reply with bare JSON. Local and OpenAI-compatible ones often
do not: a `<think>` block first, a code fence, a sentence before and after, trailing commas, Python's
single quotes and `True`/`None`, comments, raw newlines inside strings. Reading goes from strict to
tolerant and stops at the first object that looks like an answer (it has one of the expected keys):

1. the thinking is set aside: everything up to the last `</think>` (`</thinking>`, `</reasoning>`)
   is the model thinking aloud, and a draft object in it must never win over the answer after it;
2. the whole text as JSON;
3. each fenced block (```json ... ```) as JSON;
4. each object in the prose (the standard decoder's `raw_decode`, from every "{");
5. json-repair, a library made for LLM output, on the fenced blocks, then on the text from each "{".

Only when the text after the thinking holds no object is the thinking itself read (its last
answer-like object: a model may put its answer there when its template never closes the block).
Every step beyond 2 is named in `Reading.repairs`, so the task's log line and the metrics say what
it took. Reading never decides what is valid: the object is then validated against the label
config exactly as strictly as a clean reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import json_repair

from ..errors import AnswerError, EmptyReplyError

REASONING_TAGS = ("think", "thinking", "reasoning")
# The repairs a reading can need, in the order they are tried (see the module docstring).
REPAIRS = ("reasoning_block", "code_fence", "prose", "json_repair", "reasoning")
# A reply is not a document: bounded work even for a long reasoning with many braces.
MAX_OBJECT_STARTS = 64
MAX_REPAIR_STARTS = 8

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class Reading:
    """The object read, the repairs it took, and where it began in the text when that is known."""

    value: dict[str, Any]
    repairs: tuple[str, ...] = ()
    start: int | None = None


def split_reasoning(text: str) -> tuple[str, str, int]:
    """(thinking, the rest, the offset of the rest in `text`); no thinking: ("", text, 0)."""
    lowered = text.lower()
    close_at, rest_at = -1, 0
    for tag in REASONING_TAGS:
        at = lowered.rfind(f"</{tag}>")
        if at > close_at:
            close_at, rest_at = at, at + len(tag) + 3
    if close_at != -1:
        return text[:close_at], text[rest_at:], rest_at
    if lowered.lstrip().startswith(tuple(f"<{tag}>" for tag in REASONING_TAGS)):
        return text, "", len(text)  # the thinking never closed: cut off, or the answer is inside it
    return "", text, 0


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """The object itself, or the objects of a list (`[{...}]`, or several objects json-repair found)."""
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _brace_starts(text: str, limit: int) -> list[int]:
    starts: list[int] = []
    at = text.find("{")
    while at != -1 and len(starts) < limit:
        starts.append(at)
        at = text.find("{", at + 1)
    return starts


def _repaired(text: str) -> Any:
    try:
        return json_repair.repair_json(text, return_objects=True, skip_json_loads=True)
    except Exception:  # a third-party reader must never fail a task: nothing read is the worst case
        return None


def _candidates(text: str, offset: int, repairs: tuple[str, ...]) -> Iterator[Reading]:
    """Every object in `text`, most trustworthy reading first (see the module docstring)."""
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    try:
        for value in _objects(json.loads(stripped)):
            yield Reading(value, repairs, offset + lead)
    except ValueError:
        pass
    fences = [(match.group(1), match.start(1)) for match in _FENCE.finditer(text)]
    for body, at in fences:
        try:
            for value in _objects(json.loads(body)):
                yield Reading(value, (*repairs, "code_fence"), offset + at + len(body) - len(body.lstrip()))
        except ValueError:
            continue
    skip_to = 0
    for start in _brace_starts(text, MAX_OBJECT_STARTS):
        if start < skip_to:
            continue  # inside an object already read: its inner objects are not answers
        try:
            value, end = _decoder.raw_decode(text, start)
        except ValueError:
            continue
        skip_to = end
        around = ("prose",) if text[:start].strip() or text[end:].strip() else ()
        for item in _objects(value):
            yield Reading(item, (*repairs, *around), offset + start)
    for body, _at in fences:
        for value in _objects(_repaired(body)):
            yield Reading(value, (*repairs, "code_fence", "json_repair"))
    for start in _brace_starts(text, MAX_REPAIR_STARTS):
        around = ("prose",) if text[:start].strip() else ()
        for value in _objects(_repaired(text[start:])):
            yield Reading(value, (*repairs, *around, "json_repair"))


def _choose(candidates: Iterator[Reading], keys: Collection[str], last: bool) -> Reading | None:
    """The first (or last) object with one of `keys`; failing that, the first object at all, so
    validation can say what is missing."""
    fallback: Reading | None = None
    chosen: Reading | None = None
    for candidate in candidates:
        repaired = "json_repair" in candidate.repairs
        if last and chosen is not None and repaired and "json_repair" not in chosen.repairs:
            break  # json-repair's readings come last: an exact reading already found is the better one
        fallback = fallback or candidate
        if not keys or any(key in candidate.value for key in keys):
            chosen = candidate
            if not last:
                break
    return chosen or fallback


def read_json(text: str | None, keys: Collection[str] = (), *, last: bool = False) -> Reading:
    """The answer object in `text`; `keys` are the names an answer has, `last` prefers the last one.

    Raises AnswerError (written for the model: it is sent back in the repair round) when there is none.
    """
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("the reply was empty; answer with one JSON object", content=text)
    thinking, rest, offset = split_reasoning(text)
    found = _choose(_candidates(rest, offset, ("reasoning_block",) if thinking else ()), keys, last)
    if found is None and thinking.strip():
        found = _choose(_candidates(thinking, 0, ("reasoning",)), keys, last=True)
        found = Reading(found.value, found.repairs) if found is not None else None
    if found is None:
        raise AnswerError("the reply did not contain a JSON object; answer with one JSON object only", content=text)
    return found


def read_reply(content: str | None, reasoning: str | None = None, keys: Collection[str] = ()) -> Reading:
    """The answer object of a reply: from its content or, when the content is empty, from the reasoning
    the server returned beside it (LM Studio, llama.cpp and vLLM put a whole answer there at times)."""
    if content and content.strip():
        return read_json(content, keys)
    if reasoning and reasoning.strip():
        try:
            found = read_json(reasoning, keys, last=True)
        except AnswerError:
            raise EmptyReplyError("the reply had no answer: its content was empty and its reasoning held no JSON "
                                  "object; answer with one JSON object", content=content) from None
        return Reading(found.value, ("reasoning_content", *found.repairs))
    raise EmptyReplyError("the reply was empty; answer with one JSON object", content=content)
