"""A new control is a spec, a registry line and a template: nothing in the engine names it.

The control here exists only in this test: `<Verdict>` (pass or fail). Registered with one line (the
SPECS entry) and given a template in the prompts folder, it is parsed, asked, validated, turned into a
region and scored (token log-probabilities, or sampled answers) by the code every control goes through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_backend.core.config_types import Control
from llm_backend.core.controls import SPECS, ControlSpec, Dropped
from llm_backend.core.controls.base import Validator, Value
from llm_backend.settings import Settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer, Reply
from tests.test_scores import tokens

VERDICT = '<View><Text name="text" value="$text"/><Verdict name="verdict" toName="text"/></View>'
VERDICTS = ("pass", "fail")


class VerdictSpec(ControlSpec):
    tag = "Verdict"

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {"type": "string", "enum": list(VERDICTS)}

    def validator(self, control: Control) -> Validator:
        def validate(value: object, dropped: list[Dropped]) -> str:
            if value not in VERDICTS:
                raise ValueError(f"{value!r} is not \"pass\" or \"fail\"")
            return str(value)

        return validate

    def region_values(self, control: Control, answer: str) -> list[Value]:
        return [{"verdict": answer}]


@pytest.fixture
def verdict_backend(monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings],
                    tmp_path: Path) -> Callable[..., Any]:
    monkeypatch.setitem(SPECS, "verdict", VerdictSpec())  # the registry line
    template = tmp_path / "prompts" / "controls" / "verdict.j2"  # the template
    template.parent.mkdir(parents=True)
    template.write_text('- "{{ control.name }}": "pass" if <{{ control.to_name }}> keeps its promise, else "fail".')

    def predict(**overrides: Any) -> dict[str, Any]:
        client = create_app(make_settings(jobs_enabled=False, **overrides)).test_client()
        body = {"label_config": VERDICT, "tasks": [{"id": 1, "data": {"text": "It arrived on time."}}]}
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["results"][0]

    return predict


def test_a_control_known_only_to_the_registry_is_asked_and_scored_by_its_tokens(
    verdict_backend: Callable[..., Any], llm: FakeLLMServer
) -> None:
    content = '{"verdict": "pass"}'
    llm.set_default(Reply(content=content, logprobs=tokens(content, {"pass": -0.3})))
    item = verdict_backend()
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert '"verdict": "pass" if <text> keeps its promise' in prompt
    [region] = item["result"]
    assert (region["from_name"], region["to_name"], region["type"], region["value"]) == (
        "verdict", "text", "verdict", {"verdict": "pass"})
    assert region["score"] == pytest.approx(math.exp(-0.3), abs=1e-4)


def test_a_control_known_only_to_the_registry_is_scored_by_samples(
    verdict_backend: Callable[..., Any], llm: FakeLLMServer
) -> None:
    others = [{"content": f'{{"verdict": "{verdict}"}}'} for verdict in ("fail", "pass", "pass")]
    llm.set_default(Reply(content='{"verdict": "pass"}', more_choices=others))
    item = verdict_backend(confidence="samples", confidence_samples=4, llm_logprobs="off")
    [region] = item["result"]
    assert region["value"] == {"verdict": "pass"} and region["score"] == 0.75  # 3 of the 4 samples agree


def test_an_invalid_value_of_a_new_control_is_repaired_like_any_other(
    verdict_backend: Callable[..., Any], llm: FakeLLMServer
) -> None:
    llm.set_default(Reply(json={"verdict": "maybe"}))
    llm.add_rule("could not be used", Reply(json={"verdict": "fail"}))
    item = verdict_backend()
    assert "'maybe' is not \"pass\" or \"fail\"" in llm.requests[1]["messages"][-1]["content"]  # its own message
    assert item["result"][0]["value"] == {"verdict": "fail"}
