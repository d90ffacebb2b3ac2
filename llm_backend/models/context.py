"""How much a model can read: its context window, and token counts from LiteLLM's counter.

Where a window comes from, per deployment, first found wins:

1. the provider's own error ("maximum context length is N tokens"), learned while running;
2. `model_info.max_input_tokens` of the deployment in LLM_ROUTER_CONFIG (LiteLLM's own key);
3. LLM_CONTEXT_TOKENS: an explicit setting beats the map, since a gateway or a local server may serve
   another model under a name the map knows (its window is not the map's);
4. LiteLLM's model map (`max_input_tokens`), read without importing LiteLLM, when nothing is set.

Providers count tokens with their own tokenizer, not the one LiteLLM picks for a name: the ratio of
the provider's count to ours is learned from its context-length errors (`learn_ratio`), per model,
and later parts are cut with it.

Tokens are counted where the cost plan counts them (`Pricing.prompt_tokens`, LiteLLM's counter with
the model's tokenizer where LiteLLM has it); `LiteLLMTokenizer` adds what splitting a text needs:
how much of a text fits a number of tokens.

A routing-file name served by several deployments gets the smallest of their windows: the Router
may send a prompt to any of them. When nothing is known the window is None and a task is sent
whole, as before; a context-length error then teaches the window and the task is split.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .client import LLMRequest, load_litellm
from .model_map import model_entry
from .pricing import Pricing

log = logging.getLogger(__name__)

ROUTER_SOURCE = "model_info in LLM_ROUTER_CONFIG"
MAP_SOURCE = "LiteLLM's model map"
SETTING_SOURCE = "LLM_CONTEXT_TOKENS"
ERROR_SOURCE = "the provider's error"


@dataclass(frozen=True)
class Window:
    """A model's context window: prompt and answer together, in tokens."""

    tokens: int
    source: str
    max_answer: int | None = None  # the map's max_output_tokens, when it has one

    def describe(self, model: str) -> str:
        return f"{model}'s context window ({self.tokens:,} tokens, from {self.source})"


def _positive(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _deployment_window(model: str, info: Mapping[str, Any], context_tokens: int | None) -> Window | None:
    routed = _positive(info.get("max_input_tokens"))
    if routed is not None:
        return Window(routed, ROUTER_SOURCE, _positive(info.get("max_output_tokens")))
    entry = model_entry(model) or {}
    if context_tokens:
        return Window(context_tokens, SETTING_SOURCE, _positive(entry.get("max_output_tokens")))
    mapped = _positive(entry.get("max_input_tokens")) or _positive(entry.get("max_tokens"))
    if mapped is not None:
        return Window(mapped, MAP_SOURCE, _positive(entry.get("max_output_tokens")))
    return None


def map_window(model: str) -> int | None:
    """The window LiteLLM's map gives a model name, whatever is set (doctor shows what a setting overrides)."""
    entry = model_entry(model) or {}
    return _positive(entry.get("max_input_tokens")) or _positive(entry.get("max_tokens"))


class ContextWindows:
    """Context windows by model name (LLM_MODEL, a cascade step, a routing file's model_name)."""

    def __init__(self, context_tokens: int | None = None,
                 deployments: Mapping[str, Iterable[tuple[str, Mapping[str, Any]]]] | None = None) -> None:
        self.context_tokens = context_tokens
        # model name -> (LiteLLM model, model_info) of each deployment, from LLM_ROUTER_CONFIG
        self.deployments = {name: tuple(items) for name, items in (deployments or {}).items()}
        self._learned: dict[str, int] = {}
        self._ratios: dict[str, float] = {}  # model -> the provider's token count / ours, from its errors
        self._fitted: set[str] = set()  # models that answered a part cut by our count without refusing it
        self._lock = threading.Lock()

    @classmethod
    def from_model_list(cls, context_tokens: int | None, model_list: Iterable[Mapping[str, Any]]) -> ContextWindows:
        deployments: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for deployment in model_list:
            deployments.setdefault(str(deployment["model_name"]), []).append(
                (str(deployment["litellm_params"]["model"]), deployment.get("model_info") or {}))
        return cls(context_tokens, deployments)

    def window(self, model: str) -> Window | None:
        with self._lock:
            learned = self._learned.get(model)
        if learned is not None:
            return Window(learned, ERROR_SOURCE)
        targets = self.deployments.get(model) or ((model, {}),)
        windows = [_deployment_window(target, info, self.context_tokens) for target, info in targets]
        known = [window for window in windows if window is not None]
        return min(known, key=lambda window: window.tokens) if known else None

    def learn(self, model: str, tokens: int) -> Window:
        """Remember the window a provider's error named; later tasks are planned with it."""
        with self._lock:
            if self._learned.get(model) != tokens:
                log.warning("%s: the provider says its context window is %d tokens; long texts are split to fit",
                            model, tokens)
            self._learned[model] = tokens
        return Window(tokens, ERROR_SOURCE)

    def fitted(self, model: str) -> bool:
        """Whether parts cut by our count are known to fit this model: one was answered, or a ratio learned."""
        with self._lock:
            return model in self._fitted or model in self._ratios

    def note_fit(self, model: str) -> None:
        with self._lock:
            self._fitted.add(model)

    def ratio(self, model: str) -> float | None:
        """The provider's token count over ours for this model, once an error stated both; None before."""
        with self._lock:
            return self._ratios.get(model)

    def learn_ratio(self, model: str, theirs: int, ours: int) -> float:
        """Remember how many of the provider's tokens one of ours is (never less than 1: a provider that
        counts fewer did not refuse for that reason). The largest seen wins: parts must fit every time."""
        ratio = max(1.0, theirs / max(ours, 1))
        with self._lock:
            ratio = max(ratio, self._ratios.get(model, 1.0))
            self._ratios[model] = ratio
        return ratio


@dataclass(frozen=True)
class LiteLLMTokenizer:
    """A model name's tokens: counted as the cost plan counts them, and cut with the same tokenizer."""

    pricing: Pricing
    model: str  # a model name: LLM_MODEL, a cascade step, a routing file's model_name

    def count(self, text: str) -> int:
        return self.pricing.text_tokens(text, self.model)

    def count_request(self, request: LLMRequest) -> int:
        """The prompt's tokens: the messages, and the answer's schema where the provider puts it in the prompt."""
        return self.pricing.prompt_tokens(request, self.model)

    def exceeds(self, text: str, tokens: int) -> bool:
        """Whether `text` has more than `tokens` tokens, tokenising no more of it than it takes to tell. The first
        look reaches 6 characters a token: prose runs 4-5, so a long one is told in one look (from 4 characters a
        token it took a second look 4 times as long: 12 ms of a 1 MB document's first call)."""
        length = tokens * 6 + 64
        while True:
            window = text[:length]
            if self.fit(window, tokens) < len(window):
                return True
            if len(window) == len(text):
                return False
            length *= 4

    def fit(self, text: str, tokens: int) -> int:
        """How many leading characters of `text` fit in `tokens` tokens (all of them when the text fits)."""
        litellm, target = load_litellm(), self.pricing.target(self.model)
        ids = litellm.encode(model=target, text=text)
        if len(ids) <= tokens:
            return len(text)
        return min(len(text), len(litellm.decode(model=target, tokens=ids[:tokens])))
