"""Options a control takes from each task's data (`<Choices value="$options">`, dynamic labels): read per
task, so the schema, the prompt and validation allow exactly the options that task gives (issue 31)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.core.schema import json_schema, validate_answer
from llm_backend.core.task_options import for_task
from testkit.llm_server import FakeLLMServer, Reply

TEXT_TO_IMAGE = ('<View><Text name="prompt" value="$prompt"/>'
                 '<Choices name="images" toName="prompt" value="$images" choice="multiple"/></View>')
GENOME = ('<View><Image name="image" value="$image"/>'
          '<RectangleLabels name="regions" toName="image" value="$regions"/></View>')


def test_a_control_with_options_from_the_task_is_predicted_not_skipped() -> None:
    config = parse_label_config(TEXT_TO_IMAGE)
    [control] = config.controls
    assert control.task_options and control.options == () and config.skipped == ()


@pytest.mark.parametrize(("options", "expected"), [
    ([{"value": "id#0", "html": "<img src='a.jpg'/><b>A horse</b>"}, {"value": "id#1", "hint": "second"}],
     [("id#0", None, "A horse"), ("id#1", None, "second")]),
    (["red", "green", "red"], [("red", None, None), ("green", None, None)]),  # a repeat is used once
    ([{"value": "Pos", "alias": "P"}], [("Pos", "P", None)]),
], ids=["objects-with-html", "plain-strings", "alias"])
def test_each_task_gives_its_own_options(options: list[Any], expected: list[tuple[Any, ...]]) -> None:
    config = for_task(parse_label_config(TEXT_TO_IMAGE), {"data": {"prompt": "p", "images": options}})
    [control] = config.controls
    assert [(o.value, o.alias, o.hint) for o in control.options] == expected
    assert config.problems == ()
    schema = json_schema(config)["properties"]["images"]
    assert schema["items"]["enum"] == [value for value, _alias, _hint in expected]


def test_the_answer_is_held_to_the_options_of_its_own_task() -> None:
    parsed = parse_label_config(TEXT_TO_IMAGE)
    first = for_task(parsed, {"data": {"images": [{"value": "a"}, {"value": "b"}]}})
    second = for_task(parsed, {"data": {"images": [{"value": "c"}]}})
    assert validate_answer(first, {"images": ["b", "c"]})[0] == {"images": ["b"]}
    assert validate_answer(second, {"images": ["b", "c"]})[0] == {"images": ["c"]}
    assert for_task(parse_label_config(GENOME), {"data": {"regions": ["x"]}}).controls[0].options[0].value == "x"


@pytest.mark.parametrize("data", [{}, {"images": []}, {"images": [{"html": "<img/>"}]}, {"images": "a,b"}],
                         ids=["missing", "empty", "no-value", "not-a-list"])
def test_a_task_without_usable_options_is_that_tasks_error(data: dict[str, Any]) -> None:
    config = for_task(parse_label_config(TEXT_TO_IMAGE), {"data": {"prompt": "p", **data}})
    [problem] = config.problems
    assert problem.startswith('control "images": ') and "images" in problem


def test_predict_asks_each_task_with_its_options_and_fails_only_the_bad_task(
    make_client: Any, llm: FakeLLMServer
) -> None:
    llm.add_rule("A cat", Reply(json={"images": ["id#1"]}))
    llm.add_rule("A dog", Reply(json={"images": ["id#9", "id#7"]}))  # id#9 is another task's option
    tasks = [{"id": 1, "data": {"prompt": "A cat", "images": [{"value": "id#0"}, {"value": "id#1"}]}},
             {"id": 2, "data": {"prompt": "A dog", "images": [{"value": "id#7"}, {"value": "id#8"}]}},
             {"id": 3, "data": {"prompt": "A cow"}}]
    response = make_client().post("/predict", json={"label_config": TEXT_TO_IMAGE, "tasks": tasks})
    assert response.status_code == 200
    first, second, third = response.get_json()["results"]
    assert [r["value"] for r in first["result"]] == [{"choices": ["id#1"]}]
    assert [r["value"] for r in second["result"]] == [{"choices": ["id#7"]}]
    assert "result" not in third and 'task data field "images"' in third["error"]
    assert len(llm.requests) == 2  # the task without options was not sent
    schemas = [request["response_format"]["json_schema"]["schema"]["properties"]["images"]["items"]["enum"]
               for request in llm.requests]
    assert sorted(schemas) == [["id#0", "id#1"], ["id#7", "id#8"]]  # LLM_OUTPUT_MODE=schema: one per task
    prompts = " ".join(request["messages"][-1]["content"] for request in llm.requests)
    assert '"id#0"' in prompts and '"id#8"' in prompts


ASR = ('<View><Audio name="audio" value="$audio"/>'
       '<Choices name="transcriptions" toName="audio" value="$transcriptions" selection="highlight"/></View>')


def test_hypotheses_of_an_audio_are_chosen_from_their_text_alone(make_client: Any, llm: FakeLLMServer) -> None:
    """The <Audio> is not read, but the options the task gives are text: choosing the most plausible ASR
    hypothesis is a language model's job (n-best rescoring), so the control is predicted, not skipped."""
    [control] = parse_label_config(ASR).controls
    assert (control.name, control.task_options, control.shown) == ("transcriptions", True, False)
    # Options on an unread object only suffice when they come from the task.
    written = ASR.replace(' value="$transcriptions"', "").replace("/></View>", '><Choice value="A"/></Choices></View>')
    fixed = parse_label_config(written)
    assert fixed.controls == () and fixed.skipped[0].reason == "<Audio> is not read by this backend"
    llm.set_default(Reply(json={"transcriptions": "school-based clinics were established"}))
    task = {"data": {"audio": "https://example.org/a.wav", "transcriptions": [
        {"value": "school based clinics war establish"}, {"value": "school-based clinics were established"}]}}
    response = make_client().post("/predict", json={"label_config": ASR, "tasks": [task]})
    [item] = response.get_json()["results"]
    assert [r["value"] for r in item["result"]] == [{"choices": ["school-based clinics were established"]}]
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "<audio> itself is not shown to you" in prompt and "a.wav" not in prompt.split("Annotate")[0]
