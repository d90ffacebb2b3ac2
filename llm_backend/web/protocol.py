"""The Label Studio ML backend protocol as plain functions: JSON bodies in, JSON bodies out.

No web framework here (Flask's `sansio` idea): `app.py` turns HTTP requests into these calls and
their results or `LLMBackendError`s into responses. What `/setup` learns about a project goes to
the project store, so every worker and every restart sees it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..core.config import LabelConfig, parse_label_config
from ..core.controls import SPECS
from ..engine.pipeline import PredictRequest
from ..engine.projects import ProjectState, project_id, update
from ..errors import BadRequestError
from ..models.router import ModelChoice, Routing, parse_extra_params
from ..models.vision import deployments_support, vision_support
from ..services import Services

log = logging.getLogger(__name__)


def _config(body: dict[str, Any], key: str, state: ProjectState | None) -> LabelConfig:
    xml = body.get(key)
    if xml is None and state is not None:
        xml = state.label_config
    if not isinstance(xml, str):
        raise BadRequestError(f"\"{key}\" (the label config XML) is missing or not a string")
    config = parse_label_config(xml)
    for skipped in config.skipped:
        log.info("control %s <%s> is skipped: %s", skipped.name, skipped.tag, skipped.reason)
    if not config.controls:
        kinds = "; ".join(f"{s.name} <{s.tag}>: {s.reason}" for s in config.skipped)
        raise BadRequestError(f"label config has no control this backend can predict ({kinds})")
    return config


def check_vision(config: LabelConfig, model: str, mode: str, routing: Routing | None = None) -> None:
    """An image project on a model that cannot see images fails at /setup, not with garbage later."""
    if not config.needs_vision:
        return
    deployments = routing.routes.get(model) if routing is not None else None
    support = deployments_support(deployments, mode) if deployments else vision_support(model, mode)
    if support is False:
        raise BadRequestError(
            f"this project labels images but {model} does not accept images; choose a vision model "
            "(e.g. openai/gpt-4o-mini, hosted_vllm/Qwen/Qwen2.5-VL-7B-Instruct, ollama_chat/llava) or set "
            "LLM_VISION=on if this one does"
        )
    if support is None:
        log.warning("image project on %s, whose image support is unknown; set LLM_VISION=on/off to be explicit",
                    model)


def instruction(params: object) -> str | None:
    """Label Studio's interactive mode: text the annotator typed (a TextArea) becomes an instruction."""
    if not isinstance(params, dict) or not isinstance(params.get("context"), dict):
        return None
    texts: list[str] = []
    for region in params["context"].get("result") or []:
        spec = SPECS.get(str(region.get("type"))) if isinstance(region, dict) else None
        if spec is not None and isinstance(region.get("value"), dict):
            texts.extend(spec.typed_text(region["value"]))
    return "\n".join(texts)[:4000] or None


class ProtocolHandler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings

    def _state(self, project: str | None) -> ProjectState | None:
        return self.services.projects.get(project) if project else None

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        project = project_id(body.get("project"))
        config = _config(body, "schema", self._state(project))
        choice = parse_extra_params(body.get("extra_params"), self.services.routing)
        check_vision(config, choice.model or self.settings.llm_model, self.settings.llm_vision, self.services.routing)
        version = self.services.predictor.model_version(config, project, choice.model, choice.params)
        if project:
            update(self.services.projects, project, label_config=config.xml, choice=choice, model_version=version)
        return {"model_version": version}

    def predict(self, body: dict[str, Any], started: float | None = None) -> dict[str, Any]:
        started = time.time() if started is None else started
        settings = self.settings
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequestError("\"tasks\" must be a list of Label Studio task objects")
        if len(tasks) > settings.max_tasks_per_request:
            raise BadRequestError(f"{len(tasks)} tasks in one request is over MAX_TASKS_PER_REQUEST="
                                  f"{settings.max_tasks_per_request}; select fewer tasks or use label-project")
        project = project_id(body.get("project"))
        state = self._state(project)
        config = _config(body, "label_config", state)
        # The model the project chose at /setup, whichever worker answered it and even after a restart.
        choice = state.choice if state is not None else ModelChoice()
        version = self.services.predictor.model_version(config, project, choice.model, choice.params)
        if project and (state is None or state.model_version != version):
            update(self.services.projects, project, model_version=version)
        request = PredictRequest(config, project, version, tasks, started, choice.model, dict(choice.params),
                                 instruction(body.get("params")))
        return {"results": self.services.pipeline.predict(request), "model_version": version}

    def versions(self) -> dict[str, Any]:
        states = [state for state in self.services.projects.all() if state.model_version]
        snapshots = {state.project: [snapshot.summary() for snapshot in self.services.examples.snapshots(state.project)]
                     for state in states}
        versions = {state.project: state.model_version for state in states}
        return {"versions": sorted(set(versions.values())), "projects": versions, "snapshots": snapshots}

    def evaluation(self, project: str | None) -> dict[str, Any]:
        if project:
            state = self._state(project)
            return state.evaluation or {} if state is not None else {}
        return {state.project: state.evaluation for state in self.services.projects.all() if state.evaluation}
