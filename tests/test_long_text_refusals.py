"""Long texts against a provider that counts tokens its own way, and parts that fail: an explicit window
beats LiteLLM's map, a refused part shrinks by what the provider's count says and teaches the ratio, and
one failed part leaves the others' entities while naming the characters no part read."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llm_backend.core.fitting import provider_prompt, shrunk_budget, text_budget
from llm_backend.core.gaps import Gap, gap_score, read_share, unread
from llm_backend.models.context import ContextWindows
from llm_backend.models.failures import context_window_error
from llm_backend.web.app import services_of
from testkit.documents import Planted, gazetteer_for, planted_document
from testkit.llm_server import FakeLLMServer, Reply
from testkit.provider_tokens import char_prompt_tokens, char_refusal

NER_CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="Person"/>'
              '<Label value="Organization"/><Label value="Location"/></Labels></View>')
MARKER = "xylophone"  # a word the filler never uses: the provider refuses every part that shows it
REFUSAL = ("This model's maximum context length is 2048 tokens. However, your messages resulted in 2300 tokens. "
           "Please reduce the length of the messages.")


def _predict(client: Any, text: str, task_id: int = 1, project: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"label_config": NER_CONFIG, "tasks": [{"id": task_id, "data": {"text": text}}]}
    if project:
        payload["project"] = project
    [result] = client.post("/predict", json=payload).get_json()["results"]
    return dict(result)


def _spans(result: dict[str, Any], text: str) -> set[tuple[int, int, str]]:
    assert "result" in result, result.get("error")
    spans = set()
    for region in result["result"]:
        value = region["value"]
        assert text[value["start"] : value["end"]] == value["text"]
        spans.add((value["start"], value["end"], value["labels"][0]))
    return spans


def _truth(planted: list[Planted]) -> set[tuple[int, int, str]]:
    return {(p.start, p.end, p.label) for p in planted}


@pytest.mark.parametrize(("text", "window", "prompt", "requested"), [
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 8810 tokens. "
     "Please reduce the length of the messages.", 8192, 8810, None),
    ("This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (7000 in the "
     "messages, 2000 in the completion). Please reduce the length of the messages or completion.", 8192, 7000, 9000),
    ("This model's maximum context length is 4096 tokens. However, you requested 5000 tokens. Please reduce the "
     "length of the messages or completion.", 4096, None, 5000),
    ("context_length_exceeded", None, None, None),
], ids=["messages", "messages-and-completion", "requested-only", "no-numbers"])
def test_the_providers_count_is_read_from_its_error(text: str, window: int | None, prompt: int | None,
                                                    requested: int | None) -> None:
    error = context_window_error("refused", text)
    assert (error.window, error.prompt_tokens, error.requested_tokens) == (window, prompt, requested)


def test_the_test_server_counts_characters_and_words_its_refusal_as_openai_does() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 700}], "max_tokens": 100}
    assert char_prompt_tokens(body, 3.5) == 3 + 3 + 200
    assert char_refusal(body, 400, 3.5) is None
    over = char_refusal(body, 250, 3.5)
    assert over is not None and over["error"]["message"] == (
        "This model's maximum context length is 250 tokens. However, you requested 306 tokens (206 in the "
        "messages, 100 in the completion). Please reduce the length of the messages or completion.")
    refused = char_refusal(body, 200, 3.5)
    assert refused is not None and "However, your messages resulted in 206 tokens." in refused["error"]["message"]


def test_part_budgets_and_shrinking() -> None:
    assert text_budget(8192, 2048, 144, 0) == int((8192 - 2048 - 144) * 0.9)
    assert text_budget(8192, 2048, 144, 0, ratio=1.5) == int(((8192 - 2048) / 1.5 - 144) * 0.9)
    assert text_budget(8192, 2048, 144, 0, ratio=0.5) == text_budget(8192, 2048, 144, 0)  # never above our count
    assert provider_prompt(8810, None, 2048) == 8810 and provider_prompt(None, 9000, 2000) == 7000
    assert provider_prompt(None, None, 2000) is None
    # A part of 10,000 tokens the provider counted as 8,810 against 6,144 of room: at least 6144/8810 smaller.
    assert shrunk_budget(10_000, 6144, 8810, 50_000, 64) == int(10_000 * 6144 / 8810 * 0.9)
    assert shrunk_budget(10_000, 6144, 8810, 3000, 64) == 3000  # the learned ratio may ask for less still
    assert shrunk_budget(10_000, 6144, None, 50_000, 64) == 4500  # no count: halved, with the margin
    assert shrunk_budget(50, 6144, 8810, 3000, 64) == 64


def test_gaps_are_what_no_answered_part_read() -> None:
    read = [(0, 100), (90, 200), (400, 500)]
    assert unread(read, [(180, 420, "refused")]) == [Gap(200, 400, "refused")]
    assert unread(read, [(50, 150, "refused")]) == []  # its neighbours' overlaps read it all
    assert unread([], [(0, 10, "a"), (5, 20, "a")]) == [Gap(0, 20, "a")]
    assert unread([], [(0, 10, "a"), (5, 20, "b")]) == [Gap(0, 10, "a"), Gap(10, 20, "b")]
    gaps = [Gap(200, 400, "refused")]
    assert read_share(1000, gaps) == pytest.approx(0.8)
    assert gap_score(0.9, 1000, gaps) == pytest.approx(0.72) and gap_score(None, 1000, gaps) == pytest.approx(0.8)
    assert gap_score(0.9, 1000, []) == 0.9


def test_an_explicit_window_beats_the_map_and_the_set_window_names_its_source() -> None:
    windows = ContextWindows(8192)
    window = windows.window("openai/gpt-4o-mini")  # 128,000 in LiteLLM's map
    assert window is not None and (window.tokens, window.source) == (8192, "LLM_CONTEXT_TOKENS")
    routed = ContextWindows.from_model_list(8192, [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"},
                                                    "model_info": {"max_input_tokens": 4000}}])
    assert routed.window("m") is not None and routed.window("m").tokens == 4000  # type: ignore[union-attr]
    mapped = ContextWindows(None).window("openai/gpt-4o-mini")
    assert mapped is not None and (mapped.tokens, mapped.source) == (128_000, "LiteLLM's model map")
    assert windows.ratio("m") is None and not windows.fitted("m")
    assert windows.learn_ratio("m", 1200, 1000) == pytest.approx(1.2)
    assert windows.learn_ratio("m", 900, 1000) == pytest.approx(1.2)  # the largest seen is kept
    assert windows.fitted("m")


@pytest.mark.parametrize(("setting", "chars_per_token"), [(8192, 3.5), (8192, 2.5), (None, 3.5)],
                         ids=["set-window-counting-near-ours", "set-window-counting-more", "map-window-too-large"])
def test_a_provider_with_its_own_tokenizer_refuses_at_most_one_part(
        make_client: Any, llm: FakeLLMServer, caplog: pytest.LogCaptureFixture, setting: int | None,
        chars_per_token: float) -> None:
    text, planted = planted_document(seed=31, chars=150_000, entities=120)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens, llm.chars_per_token = 8192, chars_per_token
    # A name LiteLLM's map gives 128,000 tokens, served with an 8,192-token window that counts characters / N.
    client = make_client(llm_model="openai/gpt-4o-mini", llm_context_tokens=setting)
    caplog.set_level("INFO", logger="llm_backend")
    found = _spans(_predict(client, text), text)
    assert found == _truth(planted)  # every planted entity at its exact offset, no false span
    statuses = [request["_status"] for request in llm.requests]
    assert all(status == 200 for status in statuses[1:]) and len(statuses) > 5  # after at most one refusal
    learned = " ".join(record.getMessage() for record in caplog.records)
    if setting is None:  # the map's window: the whole text was sent, refused once, and taught the window
        assert statuses[0] == 400 and "8,192 tokens, from the provider's error" in learned
    if chars_per_token == 2.5:
        assert "of its tokens per one of ours" in learned
    # The next document is cut with what was learned: no refusal at all.
    other, planted_other = planted_document(seed=32, chars=80_000, entities=60)
    llm.set_gazetteer(gazetteer_for(planted_other, cut_edges=True))
    before = len(llm.requests)
    assert _spans(_predict(client, other, task_id=2), other) == _truth(planted_other)
    assert all(request["_status"] == 200 for request in llm.requests[before:])


def test_a_part_refused_whatever_its_size_leaves_the_others_and_names_what_was_not_read(
        make_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=33, chars=40_000, entities=40)
    middle = text.index(" the ", len(text) // 2) + 1
    text = text[:middle] + MARKER + " " + text[middle:]
    shift = len(MARKER) + 1
    planted = [Planted(p.start + shift * (p.start >= middle), p.end + shift * (p.start >= middle), p.label, p.text)
               for p in planted]
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens = 2048
    llm.add_rule(MARKER, Reply(status=400, error_message=REFUSAL))
    client = make_client(llm_context_tokens=2048)
    result = _predict(client, text, project="9")
    found, truth = _spans(result, text), _truth(planted)
    match = re.search(r"characters ([\d,]+)-([\d,]+) of text not read \(refused as too long after 3 "
                                    r"re-splits: ", result["error"])
    assert match is not None, result["error"]
    start, end = (int(group.replace(",", "")) for group in match.groups())
    assert start <= middle and middle + len(MARKER) <= end and end - start < 2000  # only the smallest piece
    assert {span for span in truth if span[1] <= start or span[0] >= end} <= found <= truth
    assert result["score"] == pytest.approx(1 - (end - start) / len(text), abs=1e-3)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'start="{start}"' in metrics and f'end="{end}"' in metrics and 'task="1"' in metrics
    [row] = services_of(client.application).metrics.unread_rows()
    assert (row["project"], row["task"], row["start"], row["end"]) == ("9", "1", start, end)
    page = client.get("/").get_data(as_text=True)
    assert f"characters {start:,}–{end:,} of text not read" in page


def test_the_task_fails_only_when_no_part_was_answered(make_client: Any, llm: FakeLLMServer) -> None:
    text, _planted = planted_document(seed=34, chars=20_000, entities=10)
    llm.context_tokens = 2048
    llm.set_default(Reply(status=400, error_message="the model is not available for this key"))
    result = _predict(make_client(llm_context_tokens=2048), text)
    assert "result" not in result and "no part was answered" in result["error"]


def test_doctor_shows_the_window_its_source_and_the_map_it_overrides(make_settings: Any) -> None:
    from llm_backend.offline.doctor import check_context

    check = check_context(make_settings(llm_model="openai/gpt-4o-mini", llm_context_tokens=8192))
    assert check.status == "pass" and "(8,192 tokens, from LLM_CONTEXT_TOKENS) (LiteLLM's map says 128,000 for " \
        "this name; the setting wins)" in check.detail
    mapped = check_context(make_settings(llm_model="openai/gpt-4o-mini"))
    assert "(128,000 tokens, from LiteLLM's model map)" in mapped.detail and "the setting wins" not in mapped.detail
