"""What a model costs and how fast it may be called, before and after calling it.

Prices come from the routing file first (a deployment's `input_cost_per_token`,
`output_cost_per_token`, their `_batches` variants, in `litellm_params` or `model_info`, and
`model_info.hourly_cost` for a machine rented by the hour), then from LiteLLM's cost map. A price
nobody states is unknown (None), never $0. Provider batches are billed at the map's `_batches`
price where it has one, else at half the regular price (what LiteLLM's own batch cost calculator
assumes; OpenAI, Anthropic, Vertex and Bedrock all charge half).

Rate limits are the routing file's `rpm`/`tpm`, summed over a model name's deployments (LiteLLM
reads them from the deployment, its `litellm_params` or its `model_info`).

`Pricing.prompt_tokens(request)` is the one place that counts the tokens of a request before it is
sent (LiteLLM's `token_counter`, which picks the model's tokenizer); the context-window planning of
long documents (models/context.py) counts with it too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from .client import LLMRequest, load_litellm
from .router import Routing

log = logging.getLogger(__name__)

_TOKEN_KEYS = ("input_cost_per_token", "output_cost_per_token", "input_cost_per_token_batches",
               "output_cost_per_token_batches")
HOURLY_KEY = "hourly_cost"
# Providers that add a structured-output schema to the prompt, where it is billed as prompt tokens.
# Servers that enforce it by guided decoding (vLLM, Ollama) do not.
SCHEMA_IN_PROMPT = ("openai", "azure", "azure_ai", "text-completion-openai")


@dataclass(frozen=True)
class Price:
    """USD per token (regular and in a provider batch), and per hour for a rented machine; None: unknown."""

    input: float | None = None
    output: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    hourly: float | None = None
    source: str = "unknown"

    @property
    def per_token(self) -> bool:
        return self.input is not None and self.output is not None

    def cost(self, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float | None:
        rates = (self.batch_input, self.batch_output) if batch else (self.input, self.output)
        if rates[0] is None or rates[1] is None:
            return None
        return prompt_tokens * rates[0] + completion_tokens * rates[1]


@dataclass(frozen=True)
class RateLimits:
    rpm: int | None = None
    tpm: int | None = None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _batch_rate(explicit: float | None, regular: float | None) -> float | None:
    if explicit is not None:
        return explicit
    return None if regular is None else regular / 2


def price_from(entry: dict[str, Any], source: str) -> Price | None:
    """A price from one mapping of LiteLLM's price keys (a deployment's, or the cost map's); None without one."""
    rates = {key: _number(entry.get(key)) for key in _TOKEN_KEYS}
    hourly = _number(entry.get(HOURLY_KEY))
    if all(rate is None for rate in rates.values()) and hourly is None:
        return None
    regular_in, regular_out = rates["input_cost_per_token"], rates["output_cost_per_token"]
    return Price(regular_in, regular_out, _batch_rate(rates["input_cost_per_token_batches"], regular_in),
                 _batch_rate(rates["output_cost_per_token_batches"], regular_out), hourly, source)


class Pricing:
    """Prices, rate limits and token counts per model name (LLM_MODEL, a cascade step, a routing name)."""

    def __init__(self, settings: Settings, routing: Routing) -> None:
        self.settings = settings
        self.routing = routing

    def deployments(self, model: str) -> list[dict[str, Any]]:
        config = self.routing.config
        if config is None:
            return [{"model_name": model, "litellm_params": {"model": model}}]
        return [d for d in config.model_list if d["model_name"] == model]

    def target(self, model: str) -> str:
        """The LiteLLM model a name stands for (the first deployment's): its tokenizer and its cost-map entry."""
        deployments = self.deployments(model)
        return str(deployments[0]["litellm_params"]["model"]) if deployments else model

    def price(self, model: str) -> Price:
        deployments = self.deployments(model)
        for deployment in deployments:
            merged = {**(deployment.get("model_info") or {}), **deployment["litellm_params"]}
            stated = price_from(merged, "routing file")
            if stated is not None:
                hourly = sum(_number((d.get("model_info") or {}).get(HOURLY_KEY)) or 0.0 for d in deployments)
                return Price(stated.input, stated.output, stated.batch_input, stated.batch_output,
                             hourly or None, stated.source)
        return self._map_price(self.target(model))

    @staticmethod
    def _map_price(target: str) -> Price:
        litellm = load_litellm()
        for key in (target, target.split("/", 1)[-1]):
            entry = litellm.model_cost.get(key) or {}
            # A $0 entry is what a Router registers for a model it has no price for: only a non-zero one counts.
            if any(entry.get(name) for name in _TOKEN_KEYS):
                found = price_from(entry, "LiteLLM cost map")
                if found is not None:
                    return found
        return Price()

    def limits(self, model: str) -> RateLimits:
        totals: dict[str, int | None] = {"rpm": None, "tpm": None}
        for deployment in self.deployments(model):
            places = (deployment, deployment["litellm_params"], deployment.get("model_info") or {})
            for name in totals:
                value = next((_number(place.get(name)) for place in places if place.get(name) is not None), None)
                if value is not None:
                    totals[name] = int((totals[name] or 0) + value)
        return RateLimits(totals["rpm"], totals["tpm"])

    def provider(self, model: str) -> str:
        litellm = load_litellm()
        try:
            return str(litellm.get_llm_provider(self.target(model))[1])
        except Exception:  # an unknown provider: treated as one that does not bill the schema
            return ""

    def prompt_tokens(self, request: LLMRequest, model: str | None = None) -> int:
        """Prompt tokens of `request` as the provider bills them: the messages, and the answer's schema
        where the provider puts it into the prompt."""
        litellm = load_litellm()
        target = self.target(model or request.model)
        tokens = int(litellm.token_counter(model=target, messages=list(request.messages),
                                           use_default_image_token_count=True))
        schema = (request.response_format or {}).get("json_schema")
        if isinstance(schema, dict) and self.provider(model or request.model) in SCHEMA_IN_PROMPT:
            tokens += self.text_tokens(json.dumps(schema.get("schema"), ensure_ascii=False), target)
        return tokens

    def text_tokens(self, text: str, model: str) -> int:
        return int(load_litellm().token_counter(model=self.target(model), text=text))
