"""Shared fixtures: the test LLM server, settings pointed at it, and apps built from them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from llm_backend.app import create_app  # noqa: E402
from llm_backend.settings import Settings  # noqa: E402
from tests.llm_server import FakeLLMServer  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

CHOICES_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
</View>"""

ALL_CONTROLS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive" hint="the author likes it"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="Sports"/><Choice value="Politics" alias="POL"/><Choice value="Tech"/>
  </Choices>
  <Labels name="ner" toName="text">
    <Label value="Person"/><Label value="Organization"/><Label value="Location"/>
  </Labels>
  <TextArea name="summary" toName="text" placeholder="One sentence summary"/>
  <Rating name="quality" toName="text" maxRating="5"/>
  <Number name="year" toName="text" min="1900" max="2100" step="1"/>
  <Taxonomy name="category" toName="text">
    <Choice value="News"><Choice value="World"/><Choice value="Local"/></Choice>
    <Choice value="Opinion"/>
  </Taxonomy>
</View>"""


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The shared test LLM server, reset before each test."""
    llm_server.reset()
    llm_server.latency = 0.0
    yield llm_server
    llm_server.reset()


@pytest.fixture
def make_settings(tmp_path: Path, llm_server: FakeLLMServer) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "llm_model": "openai/test-model",
            "llm_api_base": llm_server.base_url,
            "llm_api_key": "sk-test-not-a-secret",
            "llm_timeout": 10,
            "llm_retry_max_wait": 2,
            "cache_dir": tmp_path / "cache",
            "prompts_dir": REPO / "prompts",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """A Flask test client for an app built with the given setting overrides."""

    def make(**overrides: Any) -> Any:
        return create_app(make_settings(**overrides)).test_client()

    return make
