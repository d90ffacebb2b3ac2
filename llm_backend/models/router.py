"""Several deployments per model name, per-project models: LiteLLM's Router behind our client.

`LLM_ROUTER_CONFIG` points to a YAML file in LiteLLM Router's own format (`model_list`, plus
`router_settings` with the Router's arguments). It is parsed and checked when the app is built,
which is cheap (PyYAML, no LiteLLM), so `/setup` can validate model names in milliseconds; the
`litellm.Router` itself is built on the first model call, after LiteLLM has been imported.

Which layer retries what: the Router makes no retries of its own (`num_retries=0`, and the OpenAI
SDK's `max_retries=0`); it only picks a deployment, skips cooled-down ones and, when the picked
one fails, tries the configured fallback model groups once each. Our tenacity loop (inherited
from `LiteLLMClient`) retries a transient failure that survived that, and each retry is a fresh
Router call that avoids deployments cooled down in the meantime. So one task costs at most
`(LLM_MAX_RETRIES + 1) x (1 + fallback groups)` calls, and a single failing deployment next to a
healthy one costs at most one failed call per task.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.usage import Usage
from ..errors import BadRequestError, LLMError, SettingsError, TransientLLMError
from ..redact import register_secrets
from ..settings import Settings
from .aio import LOOP
from .client import NO_KEY, Completion, LiteLLMClient, LLMRequest, classify, load_litellm, needs_no_key
from .fastpath import Choice, FastPath, for_litellm
from .routed import ATTEMPTS, build_router, install_call_counter, path_of_group, routing_problem

log = logging.getLogger(__name__)

VARIABLE = "LLM_ROUTER_CONFIG"

# Router arguments accepted under `router_settings`: the ones that shape routing here. Others (Redis,
# budgets, alerting, ...) belong to a LiteLLM proxy, not to one backend process.
ROUTER_SETTINGS = frozenset({
    "routing_strategy", "routing_strategy_args", "allowed_fails", "allowed_fails_policy", "cooldown_time",
    "disable_cooldowns", "fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks",
    "max_fallbacks", "enable_pre_call_checks", "optional_pre_call_checks", "default_max_parallel_requests",
    "model_group_alias", "retry_after", "num_retries",
})
_FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
ROUTING_STRATEGIES = frozenset({
    "simple-shuffle", "least-busy", "usage-based-routing", "usage-based-routing-v2", "latency-based-routing",
    "cost-based-routing",
})
# Keys in a deployment's litellm_params that would add a retry layer under ours.
_RETRY_PARAMS = ("num_retries", "max_retries")
# Where LiteLLM reads a deployment's own price; a deployment without one and unknown to LiteLLM's
# price map would be billed as $0 by the Router, which we report as unknown instead.
_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token", "input_cost_per_second", "output_cost_per_second")
_ENV_REF = "os.environ/"
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


def _fail(path: Path, problem: str) -> SettingsError:
    return SettingsError(f"invalid configuration:\n  {VARIABLE}: {path}: {problem}")


@dataclass(frozen=True)
class RouterConfig:
    """A parsed, checked routing file. `model_list` and `router_settings` go to `litellm.Router` as they are."""

    path: Path
    model_list: tuple[dict[str, Any], ...]
    router_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(d["model_name"]) for d in self.model_list))

    def router_kwargs(self) -> dict[str, Any]:
        # Deep copies: the Router annotates the dicts it is given, and a test may build several Routers.
        kwargs: dict[str, Any] = {"allowed_fails": 0, **copy.deepcopy(self.router_settings)}
        kwargs["model_list"] = copy.deepcopy(list(self.model_list))
        for deployment in kwargs["model_list"]:
            params = deployment["litellm_params"]
            base = params.get("api_base")
            if isinstance(base, str) and base.startswith(_ENV_REF):
                base = os.environ.get(base[len(_ENV_REF):])
            if not params.get("api_key") and needs_no_key(str(params["model"]), base):
                params["api_key"] = NO_KEY  # an OpenAI-compatible server of your own, as with LLM_API_BASE
        kwargs["num_retries"] = 0
        return kwargs


def _check_fallbacks(path: Path, key: str, value: object, names: set[str]) -> None:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _fail(path, f'router_settings.{key} must be a list like [{{"local": ["gpt-4o-mini"]}}]')
    for item in value:
        for source, targets in item.items():
            targets = [targets] if isinstance(targets, str) else targets
            if not isinstance(targets, list):
                raise _fail(path, f"router_settings.{key}: the fallbacks of {source!r} must be a list of model names")
            unknown = [str(name) for name in [source, *targets] if name not in names and name != "*"]
            if unknown:
                raise _fail(path, f"router_settings.{key} names {', '.join(map(repr, unknown))}, which no "
                                  f"model_list entry has as model_name ({', '.join(sorted(names))})")


def parse_router_config(path: Path, text: str) -> RouterConfig:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise _fail(path, "must be a YAML mapping with a model_list")
    unknown = sorted(set(data) - {"model_list", "router_settings"})
    if unknown:
        raise _fail(path, f"unknown top-level key(s) {unknown}; allowed: model_list, router_settings "
                          "(fallbacks and the other Router arguments go under router_settings)")
    model_list = data.get("model_list")
    if not isinstance(model_list, list) or not model_list:
        raise _fail(path, "model_list must be a non-empty list of {model_name, litellm_params} entries")
    for index, deployment in enumerate(model_list):
        where = f"model_list[{index}]"
        if not isinstance(deployment, dict):
            raise _fail(path, f"{where} must be a mapping")
        if not isinstance(deployment.get("model_name"), str) or not deployment["model_name"].strip():
            raise _fail(path, f"{where}.model_name must be a non-empty string")
        params = deployment.get("litellm_params")
        if not isinstance(params, dict) or not isinstance(params.get("model"), str) or not params["model"].strip():
            raise _fail(path, f"{where}.litellm_params.model must be a LiteLLM model string, e.g. openai/gpt-4o-mini")
        for key in _RETRY_PARAMS:
            if params.get(key):
                raise _fail(path, f"{where}.litellm_params.{key} must be 0 or absent: LLM_MAX_RETRIES is the only "
                                  "retry layer (see README, 'which layer retries what')")
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict):
        raise _fail(path, "router_settings must be a mapping of LiteLLM Router arguments")
    unknown = sorted(set(settings) - ROUTER_SETTINGS)
    if unknown:
        raise _fail(path, f"router_settings: unsupported key(s) {unknown}; "
                          f"supported: {', '.join(sorted(ROUTER_SETTINGS))}")
    if settings.get("num_retries"):
        raise _fail(path, "router_settings.num_retries must be 0 or absent: retries are LLM_MAX_RETRIES, one layer, "
                          "so that Router retries and ours do not multiply")
    strategy = settings.get("routing_strategy")
    if strategy is not None and strategy not in ROUTING_STRATEGIES:
        raise _fail(path, f"router_settings.routing_strategy {strategy!r} is not one of "
                          f"{', '.join(sorted(ROUTING_STRATEGIES))}")
    names = {str(d["model_name"]) for d in model_list}
    for key in _FALLBACK_KEYS:
        if key in settings:
            _check_fallbacks(path, key, settings[key], names)
    default_fallbacks = settings.get("default_fallbacks")
    if default_fallbacks is not None and (
        not isinstance(default_fallbacks, list) or any(name not in names for name in default_fallbacks)
    ):
        raise _fail(path, f"router_settings.default_fallbacks must list model names of model_list ({sorted(names)})")
    return RouterConfig(path, tuple(model_list), settings)


def load_router_config(path: Path) -> RouterConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(path, f"cannot read it ({exc.strerror or exc})") from None
    config = parse_router_config(path, text)
    register_secrets(_secrets(config))
    return config


def _secrets(config: RouterConfig) -> list[str | None]:
    values: list[str | None] = []
    for deployment in config.model_list:
        key = deployment["litellm_params"].get("api_key")
        if isinstance(key, str):
            values.append(os.environ.get(key[len(_ENV_REF):]) if key.startswith(_ENV_REF) else key)
    return values


@dataclass(frozen=True)
class Routing:
    """What the app needs to know about models before any model call: the names it may route to."""

    config: RouterConfig | None
    names: tuple[str, ...]

    @property
    def source(self) -> str:
        return VARIABLE if self.config is not None else "LLM_MODEL and LLM_CASCADE"

    @property
    def routes(self) -> dict[str, tuple[str, ...]]:
        """Each model name -> the LiteLLM models of its deployments."""
        routes: dict[str, tuple[str, ...]] = {}
        for deployment in self.config.model_list if self.config else ():
            name = str(deployment["model_name"])
            routes[name] = (*routes.get(name, ()), str(deployment["litellm_params"]["model"]))
        return routes

    def client(self, settings: Settings) -> RouterClient | None:
        if self.config is None:
            return None
        return RouterClient(
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            retry_max_wait=settings.llm_retry_max_wait,
            config=self.config,
            fast=FastPath(enabled=settings.llm_fast_path == "on"),
        )


def load_routing(settings: Settings) -> Routing:
    """Parse LLM_ROUTER_CONFIG (if set) and check that LLM_MODEL and LLM_CASCADE name models it has."""
    cascade = settings.cascade_models
    if settings.llm_router_config is None:
        return Routing(None, tuple(dict.fromkeys((settings.llm_model, *cascade))))
    config = load_router_config(settings.llm_router_config)
    if settings.llm_api_base is not None:
        log.warning("LLM_API_BASE is ignored with %s: each deployment has its own api_base", VARIABLE)
    names = config.model_names
    known = ", ".join(names)
    if settings.llm_model not in names:
        raise SettingsError(f"invalid configuration:\n  LLM_MODEL: {settings.llm_model!r} is not a model_name in "
                            f"{VARIABLE} ({config.path}); its model names: {known}")
    unknown = [name for name in cascade if name not in names]
    if unknown:
        raise SettingsError(f"invalid configuration:\n  LLM_CASCADE: {', '.join(map(repr, unknown))} not a model_name "
                            f"in {VARIABLE} ({config.path}); its model names: {known}")
    return Routing(config, names)


@dataclass
class RouterClient(LiteLLMClient):
    """`LiteLLMClient`'s retries around `litellm.Router.completion` instead of `litellm.completion`."""

    config: RouterConfig | None = None
    _router: Any = field(default=None, init=False, repr=False)
    _slow: str | None = field(default=None, init=False, repr=False)  # why its calls are LiteLLM calls (None: fast)
    _attempts: threading.local = field(default_factory=threading.local, init=False, repr=False)
    _priced: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def router(self) -> Any:
        if self._router is None:
            with self._lock:
                if self._router is None:
                    if self.config is None:
                        raise SettingsError(f"{VARIABLE} is not set")
                    litellm = load_litellm()
                    install_call_counter(litellm)
                    self._priced = frozenset(
                        d["litellm_params"]["model"] for d in self.config.model_list if _has_price(litellm, d)
                    )
                    self._router, self._slow = build_router(self.config.router_kwargs(), self.fast)
                    log.info("LiteLLM Router built from %s: %s (%s)", self.config.path,
                             ", ".join(self.config.model_names), self._slow or "fast path where a deployment allows")
        return self._router

    def path_of(self, request: LLMRequest) -> Choice:
        if self.config is None:
            raise SettingsError(f"{VARIABLE} is not set")
        problem = ("the fast path is off (LLM_FAST_PATH=off)" if not self.fast.enabled
                   else routing_problem(self.config.router_settings))
        group = [d for d in self.config.router_kwargs()["model_list"] if d["model_name"] == request.model]
        return path_of_group(self.fast, problem, group, self._request_kwargs(request))

    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        # Calls, not Router calls, are what the metrics and the batch summary count: a deployment that
        # failed before a fallback answered is one call, a deployment skipped while cooling down none.
        self._attempts.count = 0
        try:
            completion = super().complete(request, deadline)
        except LLMError as exc:
            calls = self._attempts.count
            raise exc.with_usage(Usage(calls=calls, retries=max(0, calls - 1))) from exc.__cause__
        completion.attempts = max(1, self._attempts.count)
        return completion

    async def _routed(self, router: Any, kwargs: dict[str, Any], counter: list[int]) -> Any:
        ATTEMPTS.set(counter)  # this call's task's own context: its attempts count here
        return await router.acompletion(**kwargs)

    def _call_once(self, request: LLMRequest) -> Completion:
        router = self.router()
        litellm = load_litellm()
        # No api_base/api_key: each deployment carries its own, and passing one would override them all.
        kwargs = for_litellm(self._request_kwargs(request))
        counter = [0]
        fallbacks = int(self.config.router_settings.get("max_fallbacks") or 5) if self.config else 5
        try:
            # On the process's event loop (models/aio.py), as every model call; the safety net allows a call per
            # fallback group.
            response = LOOP.run(self._routed(router, kwargs, counter), timeout=(fallbacks + 1) * self.timeout + 30)
        except Exception as exc:
            raise (self._refusal_of(exc, kwargs) or router_error(exc)) from exc
        finally:
            self._attempts.count = getattr(self._attempts, "count", 0) + counter[0]
        completion = self._completion(litellm, response)
        hidden = getattr(response, "_hidden_params", None) or {}
        group = str((hidden.get("additional_headers") or {}).get("x-litellm-model-group") or request.model)
        if group != request.model:
            log.info("%s answered for %s (Router fallback)", group, request.model)
        completion.model = group
        cost = hidden.get("response_cost")
        completion.cost = float(cost) if cost is not None and hidden.get("litellm_model_name") in self._priced else None
        return completion


def _has_price(litellm: ModuleType, deployment: dict[str, Any]) -> bool:
    params, info = deployment["litellm_params"], deployment.get("model_info") or {}
    if any(params.get(key) is not None or info.get(key) is not None for key in _PRICE_KEYS):
        return True
    # A $0 entry is what a Router registers for a model it has no price for (in this process, for good):
    # only a non-zero price in LiteLLM's map counts. Free models say so with input_cost_per_token: 0.
    model = str(params["model"])
    for key in (model, model.split("/", 1)[-1]):
        entry = litellm.model_cost.get(key) or {}
        if any(entry.get(price) for price in _PRICE_KEYS):
            return True
    return False


def router_error(exc: BaseException) -> LLMError:
    """`classify`, plus the Router's own "no deployment available" errors, which are worth a wait."""
    text = str(exc)
    if "No deployments available" in text:
        match = _TRY_AGAIN.search(text)
        # Cooldowns and rpm/tpm limits end by themselves; the Router says when, if it knows.
        return TransientLLMError(f"{type(exc).__name__}: {text.splitlines()[0][:300]}",
                                 retry_after=float(match.group(1)) if match else None)
    return classify(exc)


@dataclass
class ModelChoice:
    """One project's choice from Label Studio's "Extra params": a model name and sampling overrides."""

    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


_EXTRA_PARAMS_EXAMPLE = '{"model": "big", "temperature": 0.2}'


def parse_extra_params(raw: object, routing: Routing) -> ModelChoice:
    """Validate `extra_params` from /setup: null, a JSON object, or a string holding one."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return ModelChoice()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise BadRequestError(f"extra_params must be a JSON object like {_EXTRA_PARAMS_EXAMPLE}; "
                                  f"got text that is not JSON") from None
    if not isinstance(raw, dict):
        raise BadRequestError(f"extra_params must be a JSON object like {_EXTRA_PARAMS_EXAMPLE}, "
                              f"got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"model", "temperature", "max_tokens"})
    if unknown:
        raise BadRequestError(f"extra_params: unknown key(s) {unknown}; allowed: model, temperature, max_tokens")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or model not in routing.names):
        raise BadRequestError(f"extra_params.model {model!r} is not a model this backend knows; "
                              f"known models: {', '.join(routing.names)} (from {routing.source})")
    params: dict[str, Any] = {}
    temperature = raw.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise BadRequestError(f"extra_params.temperature must be a number from 0 to 2, got {temperature!r}")
        params["temperature"] = float(temperature)
    max_tokens = raw.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequestError(f"extra_params.max_tokens must be a positive integer, got {max_tokens!r}")
        params["max_tokens"] = max_tokens
    return ModelChoice(model, params)
