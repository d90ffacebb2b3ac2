"""The fast path: a model call through LiteLLM's provider mapping, without `litellm.acompletion` around it.

`litellm.acompletion` spent about 6 ms of CPU per call here (its OpenAI-SDK transport, logging payloads,
cost calculation, a price-map search per reply); on 2 cores that, not the model, set the pace. What we need
from LiteLLM is its knowledge of each provider: which URL and headers, how the parameters map, how a
reply reads. So each (model, parameters) is resolved once with LiteLLM's own mapping (`get_llm_provider`,
`get_optional_params`, the provider's chat config with `validate_environment` and `get_complete_url`), and
each call runs only the provider config's `transform_request`, a POST over one shared aiohttp session per
event loop (keep-alive, a bounded pool) and its `transform_response`. A failed status becomes the
provider's own error (`get_error_class`) mapped by LiteLLM's `exception_type`, the very exception
`acompletion` raises, so `failures.classify` sees what it always saw. The cost is the model's price,
found once with LiteLLM's own calculator, times the reply's token counts.

Only providers whose `acompletion` does exactly that are taken: OpenAI, vLLM (`hosted_vllm/`) and Ollama
(`ollama_chat/`), checked request for request and reply for reply by tests/test_fastpath_contract.py.
Everything else stays a LiteLLM call, chosen per model when it is resolved: providers that sign each
request (Bedrock, Vertex, Azure AD), ones with SDKs of their own, OpenAI models LiteLLM sends to the
Responses API, settings the mapping does not cover, and anything the mapping raises on.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .. import fastjson
from .aio import sessions
from .loader import load_litellm

log = logging.getLogger(__name__)

FAST = "fast path"
LITELLM = "LiteLLM call"
# Providers whose acompletion is exactly resolve + transform_request + POST + transform_response.
FAST_PROVIDERS = frozenset({"openai", "hosted_vllm", "ollama_chat"})
# completion() arguments the fast path maps; any other (from LiteLLMClient.extra) means a LiteLLM call.
_KNOWN = frozenset({"model", "messages", "temperature", "timeout", "num_retries", "max_retries", "drop_params",
                    "response_format", "max_tokens", "max_completion_tokens", "logprobs", "n", "api_base", "api_key",
                    "input_cost_per_token", "output_cost_per_token"})  # the last two: a routing file's own price
_PARAMS = ("temperature", "response_format", "max_tokens", "max_completion_tokens", "logprobs", "n")
# Where a reply's price depends on more than its two token counts (cached prompt tokens, a long-context
# tier), that reply is priced by LiteLLM's own calculator, so the figure stays what it was.
_TIER = re.compile(r"above_(\d+)(k?)_tokens")
_MAX_ROUTES = 512


class _NoLogging:
    """What transform_response needs of LiteLLM's logging object: nothing is logged per call."""

    def __init__(self) -> None:
        self.model_call_details: dict[str, Any] = {}

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        return None

    def pre_call(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_LOGGING = _NoLogging()


@dataclass(frozen=True)
class Choice:
    """Which path a model's calls take, and why."""

    path: str  # FAST or LITELLM
    why: str
    route: Route | None = None


@dataclass(frozen=True)
class Route:
    """One (model, parameters) resolved by LiteLLM's mapping: everything a call needs but its messages."""

    provider: str
    model: str  # as the provider names it
    requested: str  # as configured (e.g. openai/gpt-4o-mini): what the price is looked up by
    url: str
    headers: Mapping[str, str]
    optional_params: Mapping[str, Any]
    litellm_params: Mapping[str, Any]
    json_mode: bool
    api_key: str | None
    timeout: float
    config: Any  # the provider's chat config (a litellm BaseConfig)
    rates: tuple[float, float] | None  # USD per prompt and per completion token, as LiteLLM prices them; None: unknown
    cache_priced: bool  # the map prices cached prompt tokens apart
    tier_from: int | None  # prompt tokens above which the map has another price

    @functools.cached_property
    def _post_options(self) -> dict[str, Any]:
        """session.post's options but the body: headers, timeout and the proxy HTTP(S)_PROXY and NO_PROXY name for
        this URL, with its credentials (from the proxy URL or ~/.netrc), as acompletion's httpx and aiohttp's trust_env
        find it, but found once per route: trust_env looks it up again on a thread for every request, which cost
        1.5-2 ms of CPU a call (bench/batch.py, C=16)."""
        import aiohttp
        from aiohttp.helpers import get_env_proxy_for_url
        from yarl import URL

        options: dict[str, Any] = {"headers": dict(self.headers), "timeout": aiohttp.ClientTimeout(total=self.timeout)}
        try:
            proxy, auth = get_env_proxy_for_url(URL(self.url))
        except LookupError:  # none named, or NO_PROXY covers this host
            return options
        options["proxy"] = proxy
        if auth is not None:  # aiohttp sends proxy_headers only on an https URL's CONNECT; a plain one carries them
            key = "proxy_headers" if self.url.startswith("https:") else "headers"
            options[key] = {**options.get(key, {}), "Proxy-Authorization": auth.encode()}
        return options

    @functools.cached_property
    def _sent(self) -> Any:
        """The request a reply is read as the answer to (transform_response reads only the reply): one per route,
        as building an httpx.Request per call cost 30 µs."""
        import httpx

        return httpx.Request("POST", self.url)

    def body(self, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The request body for `messages`, with the parameter dicts transform_request was given (it edits them)."""
        optional, litellm_params = dict(self.optional_params), dict(self.litellm_params)
        data = self.config.transform_request(model=self.model, messages=messages, optional_params=optional,
                                             litellm_params=litellm_params, headers=dict(self.headers))
        return data, optional, litellm_params

    async def call(self, messages: list[dict[str, Any]]) -> Any:
        """POST the request and read the reply as LiteLLM's ModelResponse; a failed status raises what acompletion
        raises for it."""
        import httpx

        litellm = load_litellm()
        messages = [dict(message) for message in messages]  # transform_request may edit them
        data, optional, litellm_params = self.body(messages)
        session = sessions.get()
        try:
            async with session.post(self.url, data=fastjson.dumps_bytes(data), **self._post_options) as answer:
                raw = await answer.read()
                status, headers = answer.status, dict(answer.headers)
        except TimeoutError:  # as acompletion reports it (a connection refused or broken is classified as it is)
            raise litellm.Timeout(message=f"Request timed out after {self.timeout:g} seconds", model=self.model,
                                  llm_provider=self.provider) from None
        if status >= 400:
            cut_off = self.output_limit_reply(raw.decode("utf-8", "replace"), status, data)
            if cut_off is None:
                raise self.error(litellm, raw.decode("utf-8", "replace"), status, headers)
            status, raw = 200, cut_off
        response = litellm.ModelResponse()
        response.usage = litellm.Usage()
        raw_response = httpx.Response(status, headers=headers, content=raw, request=self._sent)
        response = self.config.transform_response(
            model=self.model, raw_response=raw_response, model_response=response, logging_obj=_NO_LOGGING,
            request_data=data, messages=messages, optional_params=optional, litellm_params=litellm_params,
            encoding=None, api_key=self.api_key, json_mode=self.json_mode)
        response._hidden_params["response_cost"] = self.cost(litellm, response)
        return response

    def output_limit_reply(self, text: str, status: int, data: dict[str, Any]) -> bytes | None:
        """OpenAI refuses with a 400 an output budget too small for one visible token; acompletion turns that into
        the empty reply cut off at the limit that a slightly larger budget gets (finish_reason "length", the prompt's
        tokens counted), which the exchange then asks again with more room. The same here."""
        if self.provider != "openai" or status != 400:
            return None
        try:
            from litellm.litellm_core_utils.token_counter import usage_tokenizer_model
            from litellm.llms.openai.common_utils import (
                _OUTPUT_TOKEN_LIMIT_ERROR_MARKER,
                _output_token_limit_completion,
            )
            from litellm.utils import token_counter
        except ImportError:  # another LiteLLM: the 400 is reported as it is
            return None
        if _OUTPUT_TOKEN_LIMIT_ERROR_MARKER not in _sdk_message(text).lower():
            return None
        model = str(data.get("model", ""))
        prompt = token_counter(model=usage_tokenizer_model(model, None), messages=data.get("messages"))
        return str(_output_token_limit_completion(model, prompt).model_dump_json()).encode()

    def error(self, litellm: Any, text: str, status: int, headers: dict[str, str]) -> BaseException:
        if self.provider == "openai":
            text = _sdk_message(text)
        provider_error = self.config.get_error_class(error_message=text, status_code=status, headers=headers)
        try:
            mapped = litellm.exception_type(model=self.model, original_exception=provider_error,
                                            custom_llm_provider=self.provider)
        except Exception as exc:  # exception_type raises the mapped exception rather than returning it
            return exc
        return mapped if isinstance(mapped, BaseException) else provider_error

    def cost(self, litellm: Any, response: Any) -> float | None:
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "prompt_tokens", 0) or 0
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0
        if (self.cache_priced and cached) or (self.tier_from is not None and prompt > self.tier_from):
            try:
                return float(litellm.completion_cost(completion_response=response, model=self.requested))
            except Exception:  # LiteLLM has no price after all: unknown, not zero
                return None
        if self.rates is None:
            return None
        return prompt * self.rates[0] + (getattr(usage, "completion_tokens", 0) or 0) * self.rates[1]


def _sdk_message(text: str) -> str:
    """What the OpenAI SDK keeps of an error body, and LiteLLM's OpenAI errors quote: its `error.message`."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else text


_KEYED = tuple(sorted(_KNOWN - {"messages"}))


def for_litellm(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with a response_format of their own, for LiteLLM code that may edit it: every task of a config
    shares one schema object (core/schema.py `shared_json_schema`)."""
    if kwargs.get("response_format") is None:
        return kwargs
    return {**kwargs, "response_format": copy.deepcopy(kwargs["response_format"])}


def _key(kwargs: Mapping[str, Any]) -> str:
    # repr, not sorted JSON: 9 against 16 µs a call here. Equal values written in another order (a dict's
    # keys) only resolve once more.
    return repr(tuple(kwargs.get(name) for name in _KEYED))


@dataclass
class FastPath:
    """Resolves each (model, parameters) once; `choose` then answers from memory."""

    enabled: bool = True
    _choices: dict[str, Choice] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _said: set[str] = field(default_factory=set, init=False, repr=False)

    def choose(self, kwargs: Mapping[str, Any]) -> Choice:
        if not self.enabled:
            return Choice(LITELLM, "the fast path is off (LLM_FAST_PATH=off)")
        key = _key(kwargs)
        choice = self._choices.get(key)
        if choice is None:
            choice = self._resolve(kwargs)
            with self._lock:
                if len(self._choices) >= _MAX_ROUTES:
                    self._choices.clear()
                self._choices[key] = choice
                said = kwargs["model"] in self._said
                self._said.add(kwargs["model"])
            if not said:
                log.info("%s: %s (%s)", kwargs["model"], choice.path, choice.why)
        return choice

    def _resolve(self, kwargs: Mapping[str, Any]) -> Choice:
        unknown = sorted(set(kwargs) - _KNOWN)
        if unknown:
            return Choice(LITELLM, f"parameters the fast path does not map: {', '.join(unknown)}")
        try:
            return resolve(load_litellm(), for_litellm(dict(kwargs)))
        except Exception as exc:  # the mapping cannot say how to call it: acompletion can, or says why not
            return Choice(LITELLM, f"LiteLLM's mapping raised {type(exc).__name__}: {str(exc)[:200]}")


def _api_base_and_key(litellm: Any, provider: str, api_base: str | None, api_key: str | None,
                      dynamic_key: str | None) -> tuple[str | None, str | None]:
    """The base URL and key acompletion would use for `provider` (main.py's per-provider branches)."""
    from litellm.secret_managers.main import get_secret_str

    if provider == "openai":
        from litellm.responses.bridge_check import _resolve_openai_api_base

        return (_resolve_openai_api_base(api_base),
                api_key or dynamic_key or litellm.api_key or litellm.openai_key or get_secret_str("OPENAI_API_KEY"))
    if provider == "hosted_vllm":
        return api_base or litellm.api_base or get_secret_str("HOSTED_VLLM_API_BASE"), dynamic_key or api_key
    # ollama_chat
    return (litellm.api_base or api_base or get_secret_str("OLLAMA_API_BASE") or "http://localhost:11434",
            api_key or litellm.ollama_key or os.environ.get("OLLAMA_API_KEY") or litellm.api_key)


def _rates(litellm: Any, model: str) -> tuple[float, float] | None:
    """LiteLLM's price of one prompt and one completion token of `model` (what acompletion bills a reply at);
    None where it has none (a reply's cost is then unknown, not zero)."""
    try:
        prompt, _ = litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=0)
        _, completion = litellm.cost_per_token(model=model, prompt_tokens=0, completion_tokens=1)
    except Exception:  # LiteLLM's "model isn't mapped": acompletion reports no cost for it either
        return None
    return float(prompt), float(completion)


def resolve(litellm: Any, kwargs: Mapping[str, Any]) -> Choice:
    """LiteLLM's mapping for one (model, parameters): a Route, or why it stays a LiteLLM call."""
    from litellm.types.utils import LlmProviders
    from litellm.utils import ProviderConfigManager, get_optional_params

    requested = str(kwargs["model"])
    model, provider, dynamic_key, api_base = litellm.get_llm_provider(
        model=requested, api_base=kwargs.get("api_base"), api_key=kwargs.get("api_key"))
    if provider not in FAST_PROVIDERS:
        return Choice(LITELLM, f"{provider} requests go through litellm.acompletion (signing, SDKs, mappings "
                               "the fast path does not reproduce)")
    if litellm.headers or getattr(litellm, "organization", None) or os.environ.get("OPENAI_ORGANIZATION"):
        return Choice(LITELLM, "LiteLLM's global headers or an OpenAI organization are set")
    if provider == "openai":
        from litellm.responses.bridge_check import responses_api_bridge_check

        info, _ = responses_api_bridge_check(model=model, custom_llm_provider=provider, api_base=api_base)
        if info.get("mode") == "responses":
            return Choice(LITELLM, f"LiteLLM sends {model} to OpenAI's Responses API")
    api_base, api_key = _api_base_and_key(litellm, provider, api_base, kwargs.get("api_key"), dynamic_key)
    if provider == "openai" and not api_key:
        # The OpenAI SDK refuses to send it; acompletion's error is the one the setup check words with its fix.
        return Choice(LITELLM, "no OpenAI API key is set")
    optional = get_optional_params(
        model=model, custom_llm_provider=provider, drop_params=kwargs.get("drop_params"), stream=None,
        max_retries=kwargs.get("num_retries", kwargs.get("max_retries")), messages=list(kwargs.get("messages") or []),
        **{name: kwargs[name] for name in _PARAMS if kwargs.get(name) is not None})
    json_mode = bool(optional.pop("json_mode", False))
    if optional.pop("extra_body", None):
        return Choice(LITELLM, "the mapping adds an extra_body")
    config = ProviderConfigManager.get_provider_chat_config(model=model, provider=LlmProviders(provider))
    if config is None or (getattr(config, "uses_async_transform_request", False) and provider != "openai"):
        return Choice(LITELLM, f"LiteLLM has no plain chat config for {provider}")
    litellm_params = {"api_base": api_base, "drop_params": kwargs.get("drop_params"),
                      "max_retries": kwargs.get("num_retries"), "custom_llm_provider": provider}
    headers: dict[str, str] = {}
    if provider == "ollama_chat" and api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    headers = config.validate_environment(headers=headers, model=model, messages=[], optional_params=optional,
                                          litellm_params=litellm_params, api_key=api_key, api_base=api_base)
    url = config.get_complete_url(api_base=api_base, api_key=api_key, model=model, optional_params=optional,
                                  litellm_params=litellm_params, stream=False)
    entry = next((litellm.model_cost.get(key) for key in (requested, requested.split("/", 1)[-1])
                  if litellm.model_cost.get(key)), None) or {}
    tiers = [int(match[1]) * (1000 if match[2] else 1) for match in map(_TIER.search, entry) if match]
    rates, cache_priced = _rates(litellm, requested), "cache_read_input_token_cost" in entry
    own = (kwargs.get("input_cost_per_token"), kwargs.get("output_cost_per_token"))
    if own != (None, None):  # a deployment's price from a routing file, which acompletion bills its replies at
        if None in own:
            return Choice(LITELLM, "the deployment's price names only one of input_cost_per_token and "
                                   "output_cost_per_token")
        # A reply with cached prompt tokens is left to LiteLLM's calculator, which knows how it prices those.
        rates, cache_priced, tiers = (float(own[0]), float(own[1])), True, []  # type: ignore[arg-type]
    route = Route(provider, model, requested, url, MappingProxyType(dict(headers)), MappingProxyType(optional),
                  MappingProxyType(litellm_params), json_mode, api_key, float(kwargs.get("timeout") or 600),
                  config, rates, cache_priced, min(tiers) if tiers else None)
    return Choice(FAST, f"{provider} at {url}", route)
