"""Texts longer than the model's context window, end to end over real HTTP: the test LLM server
enforces a context limit as OpenAI does and quotes the planted entities each part shows."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.engine.predictor import PredictionJob
from llm_backend.models.context import ContextWindows
from llm_backend.settings import Settings
from llm_backend.web.app import services_of
from testkit.documents import Planted, gazetteer_for, planted_document
from testkit.llm_server import FakeLLMServer, Reply, default_content

LABELS = '<Label value="Person"/><Label value="Organization"/><Label value="Location"/>'
NER_CONFIG = f'<View><Text name="text" value="$text"/><Labels name="ner" toName="text">{LABELS}</Labels></View>'
FULL_CONFIG = f"""<View><Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Labels name="ner" toName="text">{LABELS}</Labels>
  <TextArea name="summary" toName="text"/>
  <Rating name="quality" toName="text" maxRating="5"/>
</View>"""
WINDOW = 2048
PART_NOTE = "The text above is one part of a longer document"


def _predict(client: Any, text: str, config: str = NER_CONFIG, task_id: int = 1, **body: Any) -> dict[str, Any]:
    payload = {"label_config": config, "tasks": [{"id": task_id, "data": {"text": text}}], **body}
    [result] = client.post("/predict", json=payload).get_json()["results"]
    return dict(result)


def _spans(result: dict[str, Any], text: str) -> list[tuple[int, int, str]]:
    assert "result" in result, result.get("error")
    spans = []
    for region in result["result"]:
        if region["type"] == "labels":
            value = region["value"]
            assert text[value["start"] : value["end"]] == value["text"]  # what Label Studio shows is the text
            spans.append((value["start"], value["end"], value["labels"][0]))
    return sorted(spans)


def _truth(planted: list[Planted]) -> list[tuple[int, int, str]]:
    return sorted((p.start, p.end, p.label) for p in planted)


def _user(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


def _shown(request: dict[str, Any]) -> str:
    prompt = _user(request)
    return prompt[prompt.index("<text>\n") + 7 : prompt.rindex("\n</text>")]


def _schema(request: dict[str, Any]) -> set[str]:
    return set(request["response_format"]["json_schema"]["schema"]["properties"])


@pytest.fixture
def long_client(make_client: Callable[..., Any], llm: FakeLLMServer) -> Callable[..., Any]:
    def make(window: int | None = WINDOW, server_window: int | None = WINDOW, **overrides: Any) -> Any:
        llm.context_tokens = server_window
        return make_client(llm_context_tokens=window, **overrides)

    return make


def test_entities_of_a_long_text_come_back_at_their_exact_offsets(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=11, chars=60_000, entities=80)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    client = long_client()
    result = _predict(client, text)
    assert _spans(result, text) == _truth(planted)
    assert llm.count(400) == 0 and llm.calls > 4  # every part fitted the window; the text needed several
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "llm_backend_long_texts_total 1.0" in metrics
    assert f"llm_backend_long_text_parts_total {llm.calls}.0" in metrics
    assert all(PART_NOTE in _user(r) for r in llm.requests)
    shown = [_shown(r) for r in llm.requests]
    assert "".join(piece for piece in shown) != text and all(piece in text for piece in shown)
    assert sum(len(piece) for piece in shown) < 1.2 * len(text)  # overlaps re-read little


def test_entities_cut_by_a_part_edge_are_taken_from_the_part_that_read_them_whole(
        make_settings: Any, llm: FakeLLMServer) -> None:
    from llm_backend.services import build_services

    text, planted = planted_document(seed=23, chars=40_000, entities=120)
    flat = re.sub(r"[.!?。\n]", " ", text)  # no sentence or line to cut at: parts end at spaces, inside names too
    gazetteer = gazetteer_for(planted, cut_edges=True)
    llm.set_gazetteer(gazetteer)
    llm.context_tokens = 1024
    services = build_services(make_settings(llm_context_tokens=1024))
    outcome = services.predictor.predict(PredictionJob(parse_label_config(NER_CONFIG), None,
                                                       {"id": 1, "data": {"text": flat}}))
    regions = outcome.to_result("v")
    assert _spans(regions, flat) == sorted(gazetteer.occurrences(flat))
    assert outcome.long_text is not None and outcome.long_text.cut_off > 0 and outcome.long_text.duplicates > 0
    assert outcome.unaligned == 0 and llm.count(400) == 0


def test_a_prompt_that_fits_is_one_call_as_before(long_client: Any, make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"ner": [{"text": "Anna Berg", "label": "Person"}]}))
    text = "Yesterday Anna Berg opened the new office."
    result = _predict(long_client(), text)
    assert _spans(result, text) == [(10, 19, "Person")] and llm.calls == 1
    assert PART_NOTE not in _user(llm.requests[0])
    # A backend without any window (as before this feature) finds the very same request in the cache.
    again = _predict(make_client(llm_context_tokens=None), text, task_id=2)
    assert again["result"] == result["result"] and llm.calls == 1


def test_a_rerun_pays_nothing_and_an_edit_pays_only_for_its_part(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=12, chars=60_000, entities=60)
    llm.set_gazetteer(gazetteer_for(planted))
    client = long_client()
    first = _predict(client, text)
    parts = llm.calls
    assert _predict(client, text) == first and llm.calls == parts  # all from the cache
    middle = text.index(" the ", len(text) // 2)
    insert = " the freshly edited"
    edited = text[:middle] + insert + text[middle:]
    moved = [Planted(p.start + len(insert) * (p.start > middle), p.end + len(insert) * (p.start > middle), p.label,
                     p.text) for p in planted]
    assert _spans(_predict(client, edited), edited) == _truth(moved)
    assert 1 <= llm.calls - parts <= 2  # the edited part, and its neighbour when the edit sits in their overlap


def test_the_window_is_learned_from_the_providers_error(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=13, chars=40_000, entities=40)
    llm.set_gazetteer(gazetteer_for(planted))
    client = long_client(window=None)  # a model LiteLLM does not know, and no LLM_CONTEXT_TOKENS
    assert _spans(_predict(client, text), text) == _truth(planted)
    assert llm.count(400) == 1 and llm.requests[0]["_status"] == 400  # asked whole once, refused, never retried
    assert llm.requests[0]["messages"][-1]["content"].count(text) == 1
    calls = llm.calls
    other, planted_other = planted_document(seed=14, chars=40_000, entities=40)
    llm.set_gazetteer(gazetteer_for(planted_other))
    assert _spans(_predict(client, other, task_id=2), other) == _truth(planted_other)
    assert llm.count(400) == 1 and llm.calls > calls  # the next task was planned with the learned window


def test_a_part_the_provider_refuses_is_asked_again_in_smaller_parts(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=15, chars=40_000, entities=40)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    # The provider's window is smaller than the one configured (another tokenizer, a smaller deployment).
    result = _predict(long_client(window=4096, server_window=2600), text)
    assert _spans(result, text) == _truth(planted)
    assert llm.count(400) >= 1 and llm.count(200) > llm.count(400)


@pytest.mark.parametrize(("window", "server_window", "overrides", "message", "calls"), [
    (1024, None, {"llm_max_tokens": 900},
     "openai/test-model's context window (1,024 tokens, from LLM_CONTEXT_TOKENS) leaves no room for the text", 0),
    (None, 300, {},
     "openai/test-model's context window (300 tokens, from the provider's error) leaves no room for the text", 1),
], ids=["configured", "from-the-provider"])
def test_a_window_too_small_for_the_prompt_is_an_error_naming_it(
        long_client: Any, llm: FakeLLMServer, window: int | None, server_window: int | None,
        overrides: dict[str, Any], message: str, calls: int) -> None:
    text, _planted = planted_document(seed=16, chars=5_000, entities=5)
    result = _predict(long_client(window=window, server_window=server_window, **overrides), text)
    assert "result" not in result and message in result["error"]
    assert llm.calls == calls


def _document_model(gazetteer: Any) -> Callable[[dict[str, Any]], Reply]:
    """A model: entities from the gazetteer; a gloomy part is Negative; a part's summary is its first words."""
    def reply(body: dict[str, Any]) -> Reply:
        prompt = "\n".join(str(m["content"]) for m in body["messages"])
        if "what was written about each consecutive part" in prompt:
            return Reply(json={"summary": ["the whole document, summarised"]})
        answer = json.loads(gazetteer.answer(prompt, default_content(body)) or "{}")
        shown = _shown(body)
        if "sentiment" in answer:
            answer["sentiment"] = "Negative" if "gloom" in shown else "Positive"
        if "quality" in answer:
            answer["quality"] = 1 + shown.count("!") % 5
        if "summary" in answer:
            answer["summary"] = [" ".join(shown.split()[:3])]
        return Reply(json=answer)

    return reply


def _gloomy(text: str, every: int = 3) -> str:
    paragraphs = text.split("\n\n")
    return "\n\n".join(p + (" All gloom." if i % every == 0 else "") for i, p in enumerate(paragraphs))


def test_other_controls_are_combined_over_the_parts(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=17, chars=50_000, entities=40)
    gazetteer = gazetteer_for(planted)
    text = _gloomy(text)
    llm.set_default(_document_model(gazetteer))
    result = _predict(long_client(), text, config=FULL_CONFIG)
    assert _spans(result, text) == sorted(gazetteer.occurrences(text)) and len(planted) == 40
    parts = [r for r in llm.requests if PART_NOTE in _user(r)]
    shown = [_shown(r) for r in sorted(parts, key=lambda r: text.index(_shown(r)))]
    votes = ["Negative" if "gloom" in piece else "Positive" for piece in shown]
    winner = max(["Positive", "Negative"], key=lambda value: (votes.count(value), -votes.index(value)
                                                               if value in votes else 0))
    regions = {r["from_name"]: r for r in result["result"] if r["type"] != "labels"}
    assert regions["sentiment"]["value"] == {"choices": [winner]}
    assert regions["sentiment"]["score"] == pytest.approx(votes.count(winner) / len(votes), abs=1e-3)
    ratings = sorted(1 + piece.count("!") % 5 for piece in shown)
    assert regions["quality"]["value"] == {"rating": ratings[(len(ratings) - 1) // 2]}
    assert regions["summary"]["value"] == {"text": ["the whole document, summarised"]}
    [summary] = [r for r in llm.requests if "what was written about each consecutive part" in _user(r)]
    assert _schema(summary) == {"summary"}
    listed = [" ".join(piece.split()[:3]) for piece in shown]
    assert _shown(summary) == "\n\n".join(f"[Part {i}]\n{line}" for i, line in enumerate(listed, 1))


def test_head_and_tail_answer_the_other_controls_when_asked_to(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=18, chars=50_000, entities=40)
    llm.set_default(_document_model(gazetteer_for(planted)))
    result = _predict(long_client(long_text_strategy="head_tail"), text, config=FULL_CONFIG)
    assert _spans(result, text) == _truth(planted)
    parts = [r for r in llm.requests if PART_NOTE in _user(r)]
    [head] = [r for r in llm.requests if "the beginning and the end of a longer document" in _user(r)]
    assert all(_schema(r) == {"ner"} for r in parts) and _schema(head) == {"sentiment", "summary", "quality"}
    shown = _shown(head)
    beginning, end = shown.split("\n\n[...]\n\n")
    assert text.startswith(beginning) and text.endswith(end)
    assert f"its middle ({len(text) - len(beginning) - len(end)} characters)" in _user(head)
    regions = {r["from_name"]: r["value"] for r in result["result"] if r["type"] != "labels"}
    assert regions["summary"] == {"text": [" ".join(shown.split()[:3])]}
    assert llm.calls == len(parts) + 1


def test_further_passes_find_what_the_first_one_missed(long_client: Any, llm: FakeLLMServer,
                                                       make_settings: Any) -> None:
    text, planted = planted_document(seed=19, chars=60_000, entities=80)
    gazetteer = gazetteer_for(planted)

    def careless(body: dict[str, Any]) -> Reply:
        # A model that overlooks the entities in the last third of whatever it is shown.
        shown = _shown(body)
        seen = [(s, e, label) for s, e, label in gazetteer.occurrences(shown) if s < len(shown) * 2 // 3]
        return Reply(json={"ner": [{"text": shown[s:e], "label": label} for s, e, label in seen]})

    llm.set_default(careless)
    truth = set(_truth(planted))
    one = set(_spans(_predict(long_client(), text), text))
    calls = llm.calls
    two = set(_spans(_predict(long_client(ner_passes=2, cache_dir=make_settings().cache_dir / "2"), text), text))
    assert one < two <= truth  # more found, nothing false, nothing twice (sets of exact spans)
    assert llm.calls - calls > calls  # the first pass again (another cache), then smaller parts


def test_parts_share_the_process_wide_limit_and_never_deadlock(long_client: Any, llm: FakeLLMServer) -> None:
    documents = [planted_document(seed=20 + i, chars=30_000, entities=20) for i in range(3)]
    llm.set_gazetteer(gazetteer_for([p for _text, planted in documents for p in planted]))
    llm.latency = 0.05
    client = long_client(llm_concurrency=2)
    tasks = [{"id": i, "data": {"text": text}} for i, (text, _planted) in enumerate(documents)]
    tasks += [{"id": 10 + i, "data": {"text": f"a short note number {i}"}} for i in range(3)]
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(
        client.post("/predict", json={"label_config": NER_CONFIG, "tasks": tasks}).get_json()))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the batch did not finish: parts and tasks deadlocked"
    results = answers[0]["results"]
    for (text, planted), result in zip(documents, results, strict=False):
        assert _spans(result, text) == _truth(planted)
    assert all("result" in result for result in results)
    assert llm.max_in_flight_seen <= 2 and llm.calls > 6  # more parts than workers, never more than 2 calls


def test_the_annotators_instruction_and_examples_go_with_every_part(long_client: Any, llm: FakeLLMServer) -> None:
    text, planted = planted_document(seed=21, chars=40_000, entities=30)
    llm.set_gazetteer(gazetteer_for(planted))
    client = long_client(fewshot_k=2, fewshot_max_tokens=200)
    services = services_of(client.application)
    for task_id, example in ((1, "Anna Berg runs Acme Corp."), (2, "Otto Novak visited Oslo.")):
        body = {"action": "ANNOTATION_CREATED", "project": {"id": 7, "label_config": NER_CONFIG},
                "task": {"id": 100 + task_id, "data": {"text": example}},
                "annotation": {"id": task_id, "result": [{"from_name": "ner", "to_name": "text", "type": "labels",
                                                          "value": {"start": 0, "end": 9, "text": example[:9],
                                                                    "labels": ["Person"]}}]}}
        assert client.post("/webhook", json=body).status_code == 200
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
    services.events.wait()
    context = {"result": [{"type": "textarea", "value": {"text": ["Label only the people"]}}]}
    result = _predict(client, text, project="7", params={"context": context})
    assert _spans(result, text) == _truth(planted)
    assert llm.count(400) == 0 and llm.calls > 2
    for request in llm.requests:
        assert "Additional instruction from the annotator for this item: Label only the people" in _user(request)
        assert "Examples annotated by the team" in _user(request) and PART_NOTE in _user(request)


def test_only_resources_limit_a_task_now(make_client: Any, llm: FakeLLMServer) -> None:
    assert Settings().max_task_chars == 5_000_000
    result = _predict(make_client(), "x" * 5_000_001)
    assert "result" not in result and "5000001 characters, over MAX_TASK_CHARS=5000000" in result["error"]
    assert llm.calls == 0


def test_windows_per_model_name_router_deployments_and_the_setting() -> None:
    model_list = [
        {"model_name": "local", "litellm_params": {"model": "hosted_vllm/my-model"},
         "model_info": {"max_input_tokens": 16384}},
        {"model_name": "local", "litellm_params": {"model": "openai/gpt-4"}},  # 8,192 in LiteLLM's map
        {"model_name": "big", "litellm_params": {"model": "openai/gpt-4o-mini"}},
        {"model_name": "unmapped", "litellm_params": {"model": "hosted_vllm/other"}},
    ]
    windows = ContextWindows.from_model_list(None, model_list)
    local = windows.window("local")
    assert local is not None and (local.tokens, local.source) == (8192, "LiteLLM's model map")
    big = windows.window("big")
    assert big is not None and big.tokens == 128_000 and big.max_answer == 16_384
    assert windows.window("unmapped") is None
    configured = ContextWindows.from_model_list(32_768, model_list)
    assert configured.window("unmapped") == configured.window("ollama_chat/unknown-model")
    assert configured.window("ollama_chat/llama3.1") is not None  # the map lists it as ollama/llama3.1
    windows.learn("unmapped", 4096)
    learned = windows.window("unmapped")
    assert learned is not None and (learned.tokens, learned.source) == (4096, "the provider's error")


def test_a_text_is_over_a_token_count_exactly_when_the_tokenizer_says_so(make_settings: Any,
                                                                           llm: FakeLLMServer) -> None:
    from llm_backend.models.context import LiteLLMTokenizer
    from llm_backend.models.loader import load_litellm
    from llm_backend.models.pricing import Pricing
    from llm_backend.models.router import load_routing

    settings = make_settings()
    tokenizer = LiteLLMTokenizer(Pricing(settings, load_routing(settings)), "openai/gpt-4o-mini")
    prose, _ = planted_document(5, 40_000, 10)
    # Prose (about 4 characters a token), digits (about 3 a token: one look decides) and runs a token holds many
    # of (more than 6 characters a token: the first look does not reach the end, the next one must).
    for text in (prose, "0123456789 " * 3000, "=" * 60_000, prose[:3000] + "-" * 50_000):
        tokens = len(load_litellm().encode(model="openai/gpt-4o-mini", text=text))  # what `fit` cuts with
        for limit in (tokens // 8, tokens - 1, tokens, tokens + 1):
            assert tokenizer.exceeds(text, limit) == (tokens > limit), (text[:20], limit, tokens)


def test_the_outcome_reports_what_ran_for_the_log(make_settings: Any, llm: FakeLLMServer) -> None:
    from llm_backend.services import build_services

    text, planted = planted_document(seed=22, chars=40_000, entities=30)
    llm.context_tokens = WINDOW
    llm.set_default(_document_model(gazetteer_for(planted)))
    services = build_services(make_settings(llm_context_tokens=WINDOW))
    outcome = services.predictor.predict(PredictionJob(parse_label_config(FULL_CONFIG), None,
                                                       {"id": 5, "data": {"text": text}}))
    report = outcome.long_text
    assert report is not None and report.parts == llm.calls - 1 and report.passes == 1
    assert report.controls["sentiment"].startswith(f"majority of {report.parts} parts")
    assert report.controls["quality"].startswith("median of") and report.controls["summary"].startswith("summary of")
    assert "2,048 tokens, from LLM_CONTEXT_TOKENS" in report.describe() and outcome.usage.calls == llm.calls


def test_a_long_pages_entities_are_placed_in_the_page(long_client: Any, llm: FakeLLMServer) -> None:
    """Was: a HyperText page longer than the window lost every span (its parts had no markup to place them in)."""
    import html

    from llm_backend.core.html_text import HtmlText

    text, planted = planted_document(seed=12, chars=30_000, entities=40)
    paragraphs = text.split("\n")
    page = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    config = (f'<View><HyperText name="text" value="$text"/><HyperTextLabels name="ner" toName="text">{LABELS}'
              '</HyperTextLabels></View>')
    result = _predict(long_client(), page, config)
    assert "result" in result, result.get("error")
    assert llm.calls > 2  # the page needed several parts
    content = "".join(node.data for node in HtmlText(page).nodes)
    regions = [r for r in result["result"] if r["type"] == "hypertextlabels"]
    assert len(regions) == len(planted)
    for region in regions:
        value = region["value"]
        assert content[value["globalOffsets"]["start"]:value["globalOffsets"]["end"]] == value["text"]
    assert sorted((r["value"]["text"], r["value"]["hypertextlabels"][0]) for r in regions) == \
        sorted((p.text, p.label) for p in planted)
