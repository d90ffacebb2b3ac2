"""The reader on replies in the shapes public bug reports show (tests/fixtures/reply_corpus.json), and
the order it reads in: strict first, never a draft from the thinking, never a cut-off answer."""

from __future__ import annotations

from typing import Any

import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.core.reading import read_json, read_reply, split_reasoning
from llm_backend.engine.exchange import reply_problem
from llm_backend.errors import AnswerError, EmptyReplyError
from llm_backend.models.client import Completion
from tests.conftest import fixture_json

CORPUS: list[dict[str, Any]] = fixture_json("reply_corpus.json")["replies"]
READ = [entry for entry in CORPUS if "problem" not in entry]
PROBLEMS = [entry for entry in CORPUS if "problem" in entry]


def _id(entry: dict[str, Any]) -> str:
    return entry["source"].removeprefix("https://github.com/")


def test_every_corpus_entry_cites_a_public_thread() -> None:
    assert len(CORPUS) >= 25
    for entry in CORPUS:
        assert entry["source"].startswith("https://github.com/")
        assert "/issues/" in entry["source"] or "/pull/" in entry["source"]
        assert entry["shows"] and ("expect" in entry) + ("error" in entry) + ("problem" in entry) == 1


@pytest.mark.parametrize("entry", READ, ids=_id)
def test_the_reader_on_the_corpus(entry: dict[str, Any]) -> None:
    if "error" in entry:
        with pytest.raises(AnswerError) as failure:
            read_reply(entry["content"], entry.get("reasoning_content"), entry["keys"])
        assert entry["error"] in failure.value.message
        return
    reading = read_reply(entry["content"], entry.get("reasoning_content"), entry["keys"])
    assert reading.value == entry["expect"]
    assert list(reading.repairs) == entry["repairs"]


@pytest.mark.parametrize("entry", PROBLEMS, ids=_id)
def test_reply_problems_in_the_corpus_are_named_before_reading(entry: dict[str, Any]) -> None:
    config = parse_label_config('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="A"/>'
                                "</Choices></View>")
    completion = Completion(content=entry["content"] or "", finish_reason=entry.get("finish_reason", "stop"),
                            refusal=entry.get("refusal"), reasoning=entry.get("reasoning_content"))
    assert reply_problem(config, completion) == entry["problem"]


def test_a_clean_reply_needs_no_repair_and_keeps_its_offset() -> None:
    reading = read_json('  {"a": 1}', ["a"])
    assert reading.value == {"a": 1} and reading.repairs == () and reading.start == 2


def test_the_answer_after_the_thinking_wins_over_a_valid_looking_draft_inside_it() -> None:
    text = '<think>maybe {"sentiment": "Negative"}?</think>\n{"sentiment": "Positive"}'
    reading = read_json(text, ["sentiment"])
    assert reading.value == {"sentiment": "Positive"}
    assert text[reading.start:].startswith('{"sentiment": "Positive"}')


def test_thinking_that_never_closed_is_read_for_its_last_answer() -> None:
    reading = read_json('<think>First {"sentiment": "Neutral"}, then on reflection {"sentiment": "Positive"}',
                        ["sentiment"])
    assert reading.value == {"sentiment": "Positive"} and reading.repairs == ("reasoning", "prose")


def test_an_object_without_the_expected_keys_is_the_fallback_so_validation_can_name_them() -> None:
    assert read_json('Note {"x": 1} then {"label": "A"}', ["sentiment"]).value == {"x": 1}
    assert read_json('Note {"x": 1} then {"sentiment": "A"}', ["sentiment"]).value == {"sentiment": "A"}


@pytest.mark.parametrize(("text", "expected"), [
    ("no tags", ("", "no tags", 0)),
    ("<think>a</think>b", ("<think>a", "b", 16)),
    ("<THINKING>a</THINKING> b", ("<THINKING>a", " b", 22)),
    ("a</think>b</think>c", ("a</think>b", "c", 18)),
    ("<reasoning>open only", ("<reasoning>open only", "", 20)),
])
def test_split_reasoning(text: str, expected: tuple[str, str, int]) -> None:
    assert split_reasoning(text) == expected


def test_empty_replies_say_so() -> None:
    with pytest.raises(EmptyReplyError, match="the reply was empty"):
        read_reply("   ", None, ["a"])
    with pytest.raises(EmptyReplyError, match="its reasoning held no JSON object"):
        read_reply("", "just thinking", ["a"])


def test_an_answer_after_many_braces_in_prose_is_still_found() -> None:
    # Past the strict reader's bounded number of starts, json-repair still reads on to the answer.
    text = "{x} " * 100 + '{"sentiment": "Positive",}'
    assert read_json(text, ["sentiment"]).value == {"sentiment": "Positive"}
