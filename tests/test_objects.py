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
    assert read_chat(CHAT, {}) == "user: How do I import tasks?\nassistant: Use the Import button."
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
              '<Choices name="per_message" toName="chat" perRegion="true"><Choice value="Good"/></Choices>'
              '<TextArea name="comments" toName="chat"/></View>')
    llm.set_default(Reply(json={"answered": "Yes", "comments": ["Answered."]}))
    response = make_client().post("/predict", json={"label_config": config,
                                                    "tasks": [{"data": {"text": "Rate it", "chat": CHAT}}]})
    [item] = response.get_json()["results"]
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "user: How do I import tasks?\nassistant: Use the Import button." in prompt
    assert {r["from_name"]: r["value"] for r in item["result"]} == {"answered": {"choices": ["Yes"]},
                                                                     "comments": {"text": ["Answered."]}}


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
