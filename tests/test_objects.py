"""Object tags read as text (Chat, Table, HyperText) and HyperText spans placed in the page."""

from __future__ import annotations

from typing import Any

import pytest

from llm_backend.core.html_text import HtmlText, readable_html
from llm_backend.core.objects import read_chat, read_table
from testkit.llm_server import FakeLLMServer, Reply

CHAT = [{"role": "user", "content": "How do I import tasks?", "createdAt": 1},
        {"role": "assistant", "content": [{"type": "text", "text": "Use the Import button."}]}]


def test_chat_is_read_as_one_line_per_message_with_its_role() -> None:
    assert read_chat(CHAT, {}) == "[1] user: How do I import tasks?\n[2] assistant: Use the Import button."
    with pytest.raises(ValueError, match="list of messages"):
        read_chat("hello", {})


def test_table_is_read_as_key_value_lines() -> None:
    assert read_table({"Card number": 18799210, "First name": "Max"}, {}) == "Card number: 18799210\nFirst name: Max"
    assert read_table([{"a": 1}, {"a": 2}], {}) == "a: 1\n\na: 2"
    with pytest.raises(ValueError, match="column"):
        read_table([1, 2], {})


@pytest.mark.parametrize(("markup", "quote", "expected"), [
    ("<h1>John works at Acme Inc.</h1><p>He lives in New York.</p>", "New York",
     ("/p[1]/text()[1]", 12, "/p[1]/text()[1]", 20, 35, 43)),
    ("<div>\n  <p>Mary  Smith is <b>employed</b> at BetaCorp.</p></div>", "Smith is employed",
     ("/div[1]/p[1]/text()[1]", 6, "/div[1]/p[1]/b[1]/text()[1]", 8, 9, 26)),
    ("<html><body><table><tr><td>A &amp; B</td></tr></table></body></html>", "A & B",
     ("/table[1]/tbody[1]/tr[1]/td[1]/text()[1]", 0, "/table[1]/tbody[1]/tr[1]/td[1]/text()[1]", 5, 0, 5)),
    ("<p>a<script>var x = 'Acme';</script> Acme<br/>Corp</p>", "Acme",
     ("/p[1]/text()[2]", 1, "/p[1]/text()[2]", 5, 17, 21)),
], ids=["two-blocks", "across-elements", "implied-tbody", "after-script"])
def test_a_span_of_the_visible_text_is_placed_in_the_page(markup: str, quote: str,
                                                          expected: tuple[Any, ...]) -> None:
    page = HtmlText(markup)
    assert page.text == readable_html(markup)
    start = page.text.index(quote)
    place = page.place(start, start + len(quote))
    assert place is not None
    assert (place.start, place.start_offset, place.end, place.end_offset, place.global_start,
            place.global_end) == expected
    # globalOffsets index the page's text content, as a browser's textContent does.
    content = "".join(node.data for node in page.nodes)
    assert content[place.global_start:place.global_end] == quote


HTML_NER = ('<View><HyperTextLabels name="ner" toName="text"><Label value="Person"/><Label value="Organization"/>'
            '</HyperTextLabels><HyperText name="text" value="$text"/></View>')


def test_html_ner_regions_point_into_the_page(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"ner": [{"text": "Mary Smith", "label": "Person"},
                                        {"text": "BetaCorp", "label": "Organization"},
                                        {"text": "Nobody", "label": "Person"}]}))
    task = {"data": {"text": "<div>Mary Smith is employed at <b>BetaCorp</b>.</div><p>In San Francisco.</p>"}}
    response = make_client().post("/predict", json={"label_config": HTML_NER, "tasks": [task]})
    [item] = response.get_json()["results"]
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "Mary Smith is employed at BetaCorp.\nIn San Francisco." in prompt and "<b>" not in prompt
    values = [region["value"] for region in item["result"]]
    assert [(v["text"], v["start"], v["startOffset"], v["end"], v["endOffset"], v["hypertextlabels"])
            for v in values] == [("Mary Smith", "/div[1]/text()[1]", 0, "/div[1]/text()[1]", 10, ["Person"]),
                                 ("BetaCorp", "/div[1]/b[1]/text()[1]", 0, "/div[1]/b[1]/text()[1]", 8,
                                  ["Organization"])]
    assert {region["type"] for region in item["result"]} == {"hypertextlabels"}


def test_chat_evaluation_predicts_over_the_conversation(make_client: Any, llm: FakeLLMServer) -> None:
    config = ('<View><Text name="instructions" value="$text"/><Chat name="chat" value="$chat"/>'
              '<Choices name="answered" toName="chat"><Choice value="Yes"/><Choice value="No"/></Choices>'
              '<TextArea name="comments" toName="chat"/></View>')
    llm.set_default(Reply(json={"answered": "Yes", "comments": ["Answered."]}))
    response = make_client().post("/predict", json={"label_config": config,
                                                    "tasks": [{"data": {"text": "Rate it", "chat": CHAT}}]})
    [item] = response.get_json()["results"]
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "[1] user: How do I import tasks?\n[2] assistant: Use the Import button." in prompt
    assert {r["from_name"]: r["value"] for r in item["result"]} == {"answered": {"choices": ["Yes"]},
                                                                     "comments": {"text": ["Answered."]}}


PER_MESSAGE = ('<View><Chat name="chat" value="$chat"/>'
               '<View visibleWhen="region-selected" whenRole="assistant">'
               '<Rating name="accuracy" toName="chat" perRegion="true" maxRating="5"/>'
               '<Choices name="style" toName="chat" perRegion="true" choice="multiple">'
               '<Choice value="Too verbose"/><Choice value="Too technical"/></Choices>'
               '<View visibleWhen="choice-selected" whenTagName="style" whenChoiceValue="Too verbose">'
               '<TextArea name="why" toName="chat" perRegion="true"/></View></View>'
               '<Choices name="user_risk" toName="chat" perRegion="true" whenRole="user" visibleWhen="region-selected">'
               '<Choice value="Benign"/><Choice value="Risky"/></Choices></View>')
TURNS = [*CHAT, {"role": "user", "content": "And exports?"}, {"role": "assistant", "content": "Use Export."}]


def test_per_message_controls_are_asked_about_each_message_of_their_role(make_client: Any, llm: FakeLLMServer
                                                                          ) -> None:
    from llm_backend.core.config import parse_label_config

    config = parse_label_config(PER_MESSAGE)
    assert {c.name: c.per_item for c in config.controls} == {"accuracy": "rating", "style": "choices",
                                                             "user_risk": "choices"}
    assert {s.name: s.reason for s in config.skipped} == {"why": "visibleWhen-conditional controls are not predicted"}
    llm.set_default(Reply(json={
        "accuracy": [{"message": 2, "value": 4}, {"message": 4, "value": 9}],  # 9 is over maxRating: left out
        "style": [{"message": 4, "value": ["Too verbose"]}, {"message": 3, "value": ["Too technical"]}],
        "user_risk": [{"message": 1, "value": "Benign"}, {"message": 3, "value": "Risky"}]}))
    response = make_client().post("/predict", json={"label_config": PER_MESSAGE, "tasks": [{"data": {"chat": TURNS}}]})
    [item] = response.get_json()["results"]
    request = llm.requests[0]
    schema = request["response_format"]["json_schema"]["schema"]["properties"]
    assert schema["accuracy"]["items"]["properties"]["message"]["enum"] == [2, 4]  # the assistant's messages
    assert schema["user_risk"]["items"]["properties"]["message"]["enum"] == [1, 3]
    prompt = request["messages"][-1]["content"]
    assert "[3] user: And exports?\n[4] assistant: Use Export." in prompt
    assert '"accuracy": a list with one object {"message": n, "value": ...} for each of the messages 2, 4' in prompt
    regions = item["result"]
    messages = {r["id"]: r["value"]["chatmessage"] for r in regions if r["type"] == "chatmessage"}
    # Each message answered about is one region of the Chat, listed once, whichever controls answer about it.
    assert sorted(messages.values(), key=str) == sorted([
        {"role": "assistant", "content": "Use the Import button."}, {"role": "assistant", "content": "Use Export."},
        {"role": "user", "content": "How do I import tasks?"}, {"role": "user", "content": "And exports?"}], key=str)
    assert all(r["from_name"] == r["to_name"] == "chat" for r in regions if r["type"] == "chatmessage")
    answers = {(r["from_name"], messages[r["id"]]["content"]): r["value"] for r in regions
               if r["type"] != "chatmessage"}
    assert {key: {k: v for k, v in value.items() if k != "chatmessage"} for key, value in answers.items()} == {
        ("accuracy", "Use the Import button."): {"rating": 4},
        ("style", "Use Export."): {"choices": ["Too verbose"]},  # message 3 is the user's: left out
        ("user_risk", "How do I import tasks?"): {"choices": ["Benign"]},
        ("user_risk", "And exports?"): {"choices": ["Risky"]}}
    assert all(value["chatmessage"] == messages[r["id"]] for r in regions if r["type"] != "chatmessage"
               for value in [r["value"]])


def test_a_chat_without_a_message_of_the_asked_role_asks_the_other_controls_only(
    make_client: Any, llm: FakeLLMServer
) -> None:
    llm.set_default(Reply(json={"user_risk": [{"message": 1, "value": "Benign"}]}))
    only_user = [{"role": "user", "content": "Hello?"}]
    response = make_client().post("/predict", json={"label_config": PER_MESSAGE,
                                                    "tasks": [{"data": {"chat": only_user}}, {"data": {"chat": []}}]})
    asked, empty = response.get_json()["results"]
    assert set(llm.requests[0]["response_format"]["json_schema"]["schema"]["properties"]) == {"user_risk"}
    assert [r["from_name"] for r in asked["result"]] == ["chat", "user_risk"]
    assert "result" not in empty and "anything to ask about" in empty["error"] and len(llm.requests) == 1


def test_every_object_read_as_text_has_an_example_task_its_reader_reads() -> None:
    """`prompts init` previews the prompt for an example task: each text object's example has its shape."""
    from llm_backend.cli.main import example_task
    from llm_backend.core.config import parse_label_config
    from llm_backend.core.objects import OBJECT_TAGS, TEXT
    from llm_backend.engine.inputs import task_texts

    tags = [kind.tag for kind in OBJECT_TAGS.values() if kind.medium == TEXT]
    objects = "".join(f'<{tag} name="o{i}" value="$f{i}"/>' for i, tag in enumerate(tags))
    controls = "".join(f'<TextArea name="c{i}" toName="o{i}"/>' for i in range(len(tags)))
    config = parse_label_config(f"<View>{objects}{controls}</View>")
    texts = task_texts(config, example_task(config))
    assert len(texts) == len(tags) and all("Acme" in text for text in texts.values())


DIALOGUE = ('<View><Paragraphs name="text" value="$text" nameKey="speaker" textKey="line"/>'
            '<ParagraphLabels name="label" toName="text"><Label value="Question"/><Label value="Name"/>'
            '</ParagraphLabels></View>')
UTTERANCES = [{"speaker": "Mia", "line": "Don't you hate that?"}, {"speaker": "Vincent", "line": "Hate what?"},
              {"speaker": "Mia", "line": "Uncomfortable silences."}]


def test_paragraph_spans_point_at_utterances_and_offsets_in_their_text(make_client: Any, llm: FakeLLMServer
                                                                       ) -> None:
    llm.set_default(Reply(json={"label": [
        {"text": "hate that?", "label": "Question"},
        {"text": "that?\nVincent: Hate what", "label": "Question"},  # across two utterances
        {"text": "Vincent", "label": "Name"},  # only a speaker's name: no utterance text to point at
        {"text": "silences", "label": "Question"}]}))
    task = {"data": {"text": UTTERANCES}}
    response = make_client().post("/predict", json={"label_config": DIALOGUE, "tasks": [task]})
    [item] = response.get_json()["results"]
    assert "Mia: Don't you hate that?\nVincent: Hate what?\nMia: Uncomfortable silences." in \
        llm.requests[0]["messages"][-1]["content"]
    assert [(r["type"], r["to_name"], r["value"]) for r in item["result"]] == [
        ("paragraphlabels", "text", {"start": "0", "end": "0", "startOffset": 10, "endOffset": 20,
                                     "text": "hate that?", "paragraphlabels": ["Question"]}),
        ("paragraphlabels", "text", {"start": "0", "end": "1", "startOffset": 15, "endOffset": 9,
                                     "text": "that?\nHate what", "paragraphlabels": ["Question"]}),
        ("paragraphlabels", "text", {"start": "2", "end": "2", "startOffset": 14, "endOffset": 22,
                                     "text": "silences", "paragraphlabels": ["Question"]})]
    for region in item["result"]:
        value = region["value"]
        if value["start"] == value["end"]:
            assert UTTERANCES[int(value["start"])]["line"][value["startOffset"]:value["endOffset"]] == value["text"]


WRITE_A_CHAT = ('<View><Text name="instructions" value="$text"/>'
                '<Chat name="chat" value="$chat" toName="chat" minMessages="4" messageroles="user,assistant"/></View>')


def test_a_chat_that_is_its_own_control_gets_the_conversation_written(make_client: Any, llm: FakeLLMServer
                                                                      ) -> None:
    from llm_backend.core.config import parse_label_config

    [control] = parse_label_config(WRITE_A_CHAT).controls
    assert (control.name, control.kind, control.to_name) == ("chat", "chat", ("chat",))
    llm.set_default(Reply(json={"chat": [{"role": "user", "content": "Hi, my import fails."},
                                         {"role": "Assistant", "content": "Which file type?"},
                                         {"role": "narrator", "content": "Not a role of this chat."},
                                         {"role": "user", "content": "CSV."}]}))
    task = {"data": {"text": "Play a customer and a helpful agent.", "chat": []}}
    response = make_client().post("/predict", json={"label_config": WRITE_A_CHAT, "tasks": [task]})
    [item] = response.get_json()["results"]
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "Play a customer and a helpful agent." in prompt and "at least 4 messages" in prompt
    assert [(r["from_name"], r["to_name"], r["type"], r["value"]) for r in item["result"]] == [
        ("chat", "chat", "chat", {"chatmessage": {"role": "user", "content": "Hi, my import fails."}}),
        ("chat", "chat", "chat", {"chatmessage": {"role": "assistant", "content": "Which file type?"}}),
        ("chat", "chat", "chat", {"chatmessage": {"role": "user", "content": "CSV."}})]


def test_html_behind_a_url_is_placed_in_the_page_it_fetched() -> None:
    """Was: a page given as a URL was read as text only, and every span on it was dropped."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from llm_backend.core.config import parse_label_config
    from llm_backend.core.controls import RegionInputs
    from llm_backend.core.regions import build_regions
    from llm_backend.core.schema import validate_answer
    from llm_backend.engine.fetch import MediaFetcher
    from llm_backend.engine.inputs import task_markup, task_texts

    page = b"<div>Mary Smith is employed at <b>BetaCorp</b>.</div>"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fetcher = MediaFetcher(label_studio=None, label_studio_url=None, allowed_hosts=("127.0.0.1",),
                               max_bytes=10_000, timeout=5)
        config = parse_label_config(HTML_NER.replace('value="$text"/>', 'value="$text" valueType="url"/>'))
        task = {"id": 1, "data": {"text": f"http://127.0.0.1:{server.server_address[1]}/page.html"}}
        texts, markup = task_texts(config, task, fetcher), task_markup(config, task, fetcher)
    finally:
        server.shutdown()
    assert markup == {"text": page.decode()} and texts["text"] == "Mary Smith is employed at BetaCorp."
    values, _dropped = validate_answer(config, {"ner": [{"text": "BetaCorp", "label": "Organization"}]})
    [region] = build_regions(config, values, RegionInputs(texts, markup=markup)).regions
    assert (region["value"]["start"], region["value"]["startOffset"], region["value"]["globalOffsets"]) == (
        "/div[1]/b[1]/text()[1]", 0, {"start": 26, "end": 34})
    assert task_markup(config, task) == {}  # no fetcher (a preview): no markup, never a guess
