"""Checks at start for a model setup that would only fail on the first prediction.

`serve` answers `/health` at once and imports LiteLLM in the background; a missing API key or a
model server nobody can reach would then look like success until Label Studio asks for
predictions. These checks run in that background thread, after the fork, and log one ERROR per
problem with its fix. Their result stays on `Services.startup` for whoever shows the backend's
state (a status page, /health).

    no API key        LiteLLM's own list of the variables a provider needs (`validate_environment`)
    unknown provider  a model string LiteLLM cannot route (`get_llm_provider`)
    unreachable base  LLM_API_BASE (or a deployment's api_base) refuses, times out or does not resolve

Any HTTP answer from a base URL counts as reachable: a 401 or 404 is the model server's to give.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from ..core.demo import is_demo
from ..netcheck import is_local, unreachable
from ..settings import Settings
from .failures import setup_problem
from .router import Routing

log = logging.getLogger(__name__)

_ENV_REF = "os.environ/"
EVERY_PREDICTION_FAILS = "every prediction fails until then"
_LOCAL_HINT = " (if this backend runs in a container, localhost is the container itself)"


@dataclass(frozen=True)
class ModelTarget:
    """One model the backend will call, named as the user configured it."""

    where: str  # e.g. "LLM_MODEL=openai/gpt-4o-mini", "model_list[1] (local: hosted_vllm/qwen)"
    model: str
    api_key: str | None
    api_base: str | None
    key_fix: str  # where the key goes, e.g. "set LLM_API_KEY"
    base_name: str = "LLM_API_BASE"


@dataclass(frozen=True)
class Problem:
    check: str  # "api_key" | "provider" | "api_base"
    message: str  # what is wrong, then the fix


def _env_value(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(_ENV_REF):
        return os.environ.get(value[len(_ENV_REF):]) or None
    return str(value) if value not in (None, "") else None


def model_targets(settings: Settings, routing: Routing) -> list[ModelTarget]:
    """The models `settings` and the routing file will call; none for the demo model."""
    if routing.config is not None:
        targets = []
        for index, deployment in enumerate(routing.config.model_list):
            params = deployment.get("litellm_params") or {}
            model = str(params.get("model", ""))
            targets.append(ModelTarget(
                f"{routing.config.path.name} model_list[{index}] ({deployment['model_name']}: {model})", model,
                _env_value(params.get("api_key")), _env_value(params.get("api_base")),
                "set api_key in its litellm_params (e.g. api_key: os.environ/OPENAI_API_KEY)", "its api_base"))
        return targets
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    names = dict.fromkeys([settings.llm_model, *settings.cascade_models])
    variable = {settings.llm_model: "LLM_MODEL"}
    return [ModelTarget(f"{variable.get(name, 'LLM_CASCADE')}={name}", name, key, settings.api_base,
                        "set LLM_API_KEY")
            for name in names if not is_demo(name)]


def base_problems(targets: list[ModelTarget], timeout: float) -> list[Problem]:
    problems, seen = [], set()
    for target in targets:
        if not target.api_base or target.api_base in seen:
            continue
        seen.add(target.api_base)
        failure = unreachable(target.api_base, timeout)
        if failure:
            whose = target.base_name if target.base_name == "LLM_API_BASE" else f"{target.where}: {target.base_name}"
            problems.append(Problem("api_base", (
                f"{whose} {target.api_base} is unreachable from here ({failure.detail}); start the model server, "
                f"or set it to the address this machine reaches it at{_LOCAL_HINT if is_local(target.api_base) else ''}"
                f"; {EVERY_PREDICTION_FAILS}")))
    return problems


def key_problems(litellm: ModuleType, targets: list[ModelTarget]) -> list[Problem]:
    """A model name LiteLLM cannot route, a key it needs and has not got (worded in models/failures.py)."""
    problems = []
    for target in targets:
        found = setup_problem(litellm, target.where, target.model, target.api_key, target.api_base, target.key_fix)
        if found:
            problems.append(Problem(found[0], f"{found[1]}; {EVERY_PREDICTION_FAILS}"))
    return problems


class StartupChecks:
    """The problems found at start; filled once by `run` in a background thread."""

    def __init__(self) -> None:
        self._problems: list[Problem] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    @property
    def problems(self) -> list[Problem]:
        with self._lock:
            return list(self._problems)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _add(self, problems: list[Problem]) -> None:
        for problem in problems:
            log.error("startup check failed: %s", problem.message)
        with self._lock:
            self._problems.extend(problems)

    def run(self, targets: list[ModelTarget], load: Callable[[], ModuleType] | None, timeout: float = 5.0) -> None:
        """Check `targets`; `load` imports LiteLLM (None: the demo model, nothing to import)."""
        try:
            self._add(base_problems(targets, timeout))
            if load is not None:
                litellm = load()
                self._add(key_problems(litellm, targets))
            if targets and not self._problems:
                log.info("startup checks passed: %s", "; ".join(target.where for target in targets))
        except Exception:  # a check must never take the worker down
            log.exception("startup checks stopped with an unexpected error")
        finally:
            self._done.set()
