"""A reply is read once: a fresh reply once, a cache hit in the same process not again.

Reading a reply (core/reading.py: thinking set aside, fences, prose, json-repair) is the costly part of
turning it into an answer. The spy counts every reading of every reply content, over real HTTP to the
test server, for fresh and cached tasks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import llm_backend.core.answer as answer_module
from llm_backend.core.config import parse_label_config
from llm_backend.engine.job import PredictionJob
from llm_backend.services import Services, build_services
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG

TWO_CONTROLS = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/>
  </Choices>
  <Rating name="stars" toName="text" maxRating="5"/>
</View>"""


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each reply content was read."""
    counted: Counter[str] = Counter()
    real = answer_module.read_reply

    def spy(content: str | None, reasoning: str | None, keys: Any) -> Any:
        counted[f"{content or ''}|{reasoning or ''}"] += 1
        return real(content, reasoning, keys)

    monkeypatch.setattr(answer_module, "read_reply", spy)
    return counted


@pytest.fixture
def services(make_settings: Callable[..., Any]) -> Iterator[Callable[..., Services]]:
    built: list[Services] = []

    def make(**overrides: Any) -> Services:
        built.append(build_services(make_settings(**overrides)))
        return built[-1]

    yield make
    for service in built:
        service.close()


def _predict(services: Services, config_xml: str, text: str) -> Any:
    job = PredictionJob(parse_label_config(config_xml), None, {"id": 1, "data": {"text": text}})
    return services.predictor.predict(job)


def test_a_fresh_reply_is_read_once_and_a_cache_hit_not_again(
    llm: FakeLLMServer, services: Callable[..., Services], readings: Counter[str]
) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    backend = services()
    assert _predict(backend, CHOICES_CONFIG, "fresh words").status == "ok"
    assert sum(readings.values()) == 1
    for _ in range(3):
        assert _predict(backend, CHOICES_CONFIG, "fresh words").status == "cached"
    assert sum(readings.values()) == 1  # the three cache hits reused the first reading
    assert llm.count(200) == 1


def test_a_cache_hit_in_another_process_is_read_once_there(
    llm: FakeLLMServer, services: Callable[..., Services], readings: Counter[str]
) -> None:
    llm.set_default(Reply(json={"sentiment": "Negative"}))
    assert _predict(services(), CHOICES_CONFIG, "shared cache").status == "ok"
    other = services()  # another process's predictor: the same cache file, nothing read yet
    readings.clear()
    for _ in range(3):
        assert _predict(other, CHOICES_CONFIG, "shared cache").status == "cached"
    assert sum(readings.values()) == 1


def test_an_answer_in_the_reasoning_is_read_once(
    llm: FakeLLMServer, services: Callable[..., Services], readings: Counter[str]
) -> None:
    llm.set_default(Reply(content="", reasoning_content='{"sentiment": "Positive"}'))
    backend = services()
    outcome = _predict(backend, CHOICES_CONFIG, "thinking only")
    assert outcome.status == "ok" and outcome.regions[0]["value"] == {"choices": ["Positive"]}
    assert _predict(backend, CHOICES_CONFIG, "thinking only").status == "cached"
    assert list(readings.values()) == [1]


def test_each_reply_of_a_repair_round_is_read_once(
    llm: FakeLLMServer, services: Callable[..., Services], readings: Counter[str]
) -> None:
    # Both replies hold a valid rating beside an invalid sentiment: the answer is partial, from the repaired one.
    llm.set_default(Reply(json={"sentiment": "Ecstatic", "stars": 4}))
    llm.add_rule("could not be used", Reply(json={"sentiment": "Thrilled", "stars": 5}))
    backend = services()
    outcome = _predict(backend, TWO_CONTROLS, "half right")
    assert outcome.status == "ok" and outcome.invalid_controls == 1
    assert outcome.usage.repairs == 1
    assert _predict(backend, TWO_CONTROLS, "half right").status == "cached"
    assert sorted(readings.values()) == [1, 1]  # the first reply and the repaired one, each read once


def test_the_samples_of_a_cached_confidence_request_are_not_read_again(
    llm: FakeLLMServer, services: Callable[..., Services], readings: Counter[str]
) -> None:
    others = [{"content": f'{{"sentiment": "{label}"}}'} for label in ("Negative", "Positive", "Positive")]
    llm.set_default(Reply(json={"sentiment": "Positive"}, more_choices=others))
    backend = services(confidence="samples", confidence_samples=4, llm_logprobs="off")
    outcome = _predict(backend, CHOICES_CONFIG, "sampled")
    assert outcome.status == "ok" and outcome.score == 0.75  # 3 of the 4 samples agree
    first = sum(readings.values())
    assert first == 5  # the answer, and each of the four samples
    again = _predict(backend, CHOICES_CONFIG, "sampled")
    assert again.status == "cached" and again.score == 0.75
    assert sum(readings.values()) == first
