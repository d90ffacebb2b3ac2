"""The Label Studio ML backend protocol over Flask: /health, /setup, /predict, /webhook, /versions.

`create_app(settings)` builds everything at call time and nothing at import. It does not import
LiteLLM: `/health` and `/setup` answer in milliseconds; the model client loads on first use or in
the warm-up thread that `serve` starts in each worker.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .batch import BatchRunner
from .cache import Cache, open_cache
from .cascade import CascadePredictor
from .errors import BadRequestError, LLMBackendError
from .examples import ExampleStore, open_example_store
from .fetch import MediaFetcher
from .label_config import LabelConfig, parse_label_config
from .label_studio_api import LabelStudioClient
from .llm import CompletionClient, LiteLLMClient, litellm_loaded, load_litellm
from .metrics import Metrics
from .predictor import PredictionJob, Predictor, TaskOutcome, project_id
from .prompts import PromptLibrary
from .redact import redact, register_secrets
from .router import ModelChoice, Routing, load_routing, parse_extra_params
from .settings import Settings, load_settings
from .vision import deployments_support, vision_support
from .webhooks import EventHandler

log = logging.getLogger(__name__)


@dataclass
class Backend:
    """The long-lived objects of one app, built once and handed to the views."""

    settings: Settings
    predictor: Predictor
    runner: BatchRunner
    metrics: Metrics
    prompts: PromptLibrary
    cache: Cache
    examples: ExampleStore
    events: EventHandler | None = None
    started: float = field(default_factory=time.time)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    project_configs: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # project -> latest model_version
    routing: Routing = field(default_factory=lambda: Routing(None, ()))
    project_models: dict[str, ModelChoice] = field(default_factory=dict)  # project -> its /setup extra_params

    def evaluate_project(self, project: str, xml: str | None) -> None:
        """The "Train" button: score the prompts on the annotated examples, with and without few-shot."""
        xml = xml or self.project_configs.get(project)
        if xml is None:
            log.info("project %s: no label config known; evaluation skipped", project)
            return
        from .training import evaluate_snapshot

        report = evaluate_snapshot(self, parse_label_config(xml), project)
        self.evaluations[project] = report
        log.info("project %s evaluation: %s", project, report.get("summary"))

    def warm_up(self) -> threading.Thread:
        """Import LiteLLM in the background so the first prediction does not pay for it."""
        thread = threading.Thread(target=load_litellm, name="litellm-warm-up", daemon=True)
        thread.start()
        return thread


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise BadRequestError("request body is not valid JSON")
    if not isinstance(body, dict):
        raise BadRequestError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _config_from(backend: Backend, body: dict[str, Any], key: str) -> LabelConfig:
    xml = body.get(key)
    project = project_id(body.get("project"))
    if xml is None and project is not None:
        xml = backend.project_configs.get(project)
    if not isinstance(xml, str):
        raise BadRequestError(f"\"{key}\" (the label config XML) is missing or not a string")
    config = parse_label_config(xml)
    for skipped in config.skipped:
        log.info("control %s <%s> is skipped: %s", skipped.name, skipped.tag, skipped.reason)
    if not config.controls:
        kinds = "; ".join(f"{s.name} <{s.tag}>: {s.reason}" for s in config.skipped)
        raise BadRequestError(f"label config has no control this backend can predict ({kinds})")
    return config


def _check_vision(config: LabelConfig, model: str, mode: str, routing: Routing | None = None) -> None:
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


def _instruction(params: object) -> str | None:
    """Label Studio's interactive mode: TextArea text the annotator typed becomes an instruction."""
    if not isinstance(params, dict) or not isinstance(params.get("context"), dict):
        return None
    texts: list[str] = []
    for region in params["context"].get("result") or []:
        if isinstance(region, dict) and region.get("type") == "textarea":
            value = region.get("value") or {}
            texts.extend(str(t) for t in value.get("text") or [] if str(t).strip())
    return "\n".join(texts)[:4000] or None


def build_backend(
    settings: Settings | None = None,
    *,
    client: CompletionClient | None = None,
    cache: Cache | None = None,
) -> Backend:
    """The long-lived objects without the web layer (also used by the offline commands)."""
    settings = settings or load_settings()
    register_secrets(settings.secret_values())
    metrics = Metrics()
    prompts = PromptLibrary(settings.prompts_dir)
    prompts.check()  # a broken default template stops the start, with file and line
    cache = cache if cache is not None else open_cache(settings.cache_enabled, settings.cache_dir, settings.cache_url)
    routing = load_routing(settings)  # LLM_ROUTER_CONFIG is parsed and checked now; the Router built on first use
    if client is None:
        client = routing.client(settings) or LiteLLMClient(
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            retry_max_wait=settings.llm_retry_max_wait,
        )
    label_studio = (
        LabelStudioClient(settings.ls_url, settings.label_studio_api_key.get_secret_value())
        if settings.ls_url and settings.label_studio_api_key else None
    )
    fetcher = MediaFetcher(label_studio=label_studio, label_studio_url=settings.ls_url,
                           allowed_hosts=settings.media_hosts, max_bytes=settings.media_max_bytes,
                           timeout=settings.media_timeout)
    examples = open_example_store(settings.cache_dir, settings.cache_url)
    predictor_class = CascadePredictor if settings.cascade_models else Predictor
    predictor = predictor_class(settings, prompts, client, cache, metrics, fetcher, examples)
    predictor.routes = routing.routes
    backend = Backend(settings, predictor, BatchRunner(predictor, settings.llm_concurrency), metrics, prompts, cache,
                      examples)
    backend.routing = routing
    backend.events = EventHandler(examples, snapshot_every=settings.fewshot_snapshot_every,
                                  on_training=backend.evaluate_project)
    return backend


def create_app(
    settings: Settings | None = None,
    *,
    client: CompletionClient | None = None,
    cache: Cache | None = None,
) -> Flask:
    backend = build_backend(settings, client=client, cache=cache)
    settings, predictor, metrics = backend.settings, backend.predictor, backend.metrics

    app = Flask("llm_backend")
    # Werkzeug answers 413 from Content-Length alone, before reading the body.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["llm_backend"] = backend

    @app.errorhandler(LLMBackendError)
    def backend_error(exc: LLMBackendError) -> tuple[Response, int]:
        return _error(exc.status if exc.status < 500 else 500, exc.code, redact(exc.message))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return _error(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal_error", "internal error; see the backend's log")

    @app.before_request
    def authenticate() -> tuple[Response, int] | None:
        if request.path == "/webhook":
            # Label Studio sends webhooks without basic auth; a shared secret header protects them instead.
            if settings.webhook_secret is not None:
                given = request.headers.get("X-Webhook-Secret", "").encode()
                if not hmac.compare_digest(given, settings.webhook_secret.get_secret_value().encode()):
                    return _error(401, "unauthorized", "missing or wrong X-Webhook-Secret header")
            return None
        if request.method == "GET" and request.path in ("/", "/health"):
            return None  # container and load-balancer health checks carry no credentials
        if settings.basic_auth_user and settings.basic_auth_pass:
            auth = request.authorization
            user_ok = hmac.compare_digest(((auth.username or "") if auth else "").encode(),
                                          settings.basic_auth_user.encode())
            pass_ok = hmac.compare_digest(((auth.password or "") if auth else "").encode(),
                                          settings.basic_auth_pass.get_secret_value().encode())
            if not (auth and user_ok and pass_ok):
                response, status = _error(401, "unauthorized", "basic auth required (BASIC_AUTH_USER/BASIC_AUTH_PASS)")
                response.headers["WWW-Authenticate"] = 'Basic realm="llm-backend"'
                return response, status
        return None

    @app.after_request
    def count(response: Response) -> Response:
        metrics.requests.labels(request.url_rule.rule if request.url_rule else "other", str(response.status_code)).inc()
        return response

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify({
            "status": "UP",
            "model_class": "LLMBackend",
            "model": settings.llm_model,
            "model_ready": litellm_loaded(),
        })

    @app.post("/setup")
    def setup() -> Response:
        body = _json_body()
        config = _config_from(backend, body, "schema")
        project = project_id(body.get("project"))
        choice = parse_extra_params(body.get("extra_params"), backend.routing)
        _check_vision(config, choice.model or settings.llm_model, settings.llm_vision, backend.routing)
        version = predictor.model_version(config, project, choice.model, choice.params)
        if project:
            backend.project_configs[project] = config.xml
            backend.project_models[project] = choice
            backend.versions[project] = version
        return jsonify({"model_version": version})

    @app.post("/predict")
    def predict() -> Response:
        started = time.monotonic()
        body = _json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequestError("\"tasks\" must be a list of Label Studio task objects")
        if len(tasks) > settings.max_tasks_per_request:
            raise BadRequestError(f"{len(tasks)} tasks in one request is over MAX_TASKS_PER_REQUEST="
                                  f"{settings.max_tasks_per_request}; select fewer tasks or use label-project")
        config = _config_from(backend, body, "label_config")
        project = project_id(body.get("project"))
        choice = backend.project_models.get(project or "", ModelChoice())
        version = predictor.model_version(config, project, choice.model, choice.params)
        if project:
            backend.versions[project] = version
        instruction = _instruction(body.get("params"))
        jobs: list[PredictionJob | None] = [
            PredictionJob(config, project, task, instruction, choice.model, dict(choice.params))
            if isinstance(task, dict) else None
            for task in tasks
        ]
        valid = [job for job in jobs if job is not None]
        outcomes, _summary = backend.runner.run(valid, settings.predict_deadline - (time.monotonic() - started))
        by_job = iter(outcomes)
        results = [
            next(by_job).to_result(version) if job is not None
            else TaskOutcome("failed", error="task must be a JSON object").to_result(version)
            for job in jobs
        ]
        metrics.predict_seconds.observe(time.monotonic() - started)
        return jsonify({"results": results, "model_version": version})

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        # Label Studio gives webhooks 1 s: acknowledge at once, work in the background.
        body = request.get_json(silent=True, force=True)
        action = body.get("action") if isinstance(body, dict) else None
        log.debug("webhook %s", action)
        if isinstance(body, dict) and backend.events is not None:
            backend.events.submit(body)
        return jsonify({"status": "ok", "action": action}), 200

    @app.get("/versions")
    def versions() -> Response:
        snapshots = {
            project: [snapshot.summary() for snapshot in backend.examples.snapshots(project)]
            for project in sorted(backend.versions)
        }
        return jsonify({"versions": sorted(set(backend.versions.values())), "projects": backend.versions,
                        "snapshots": snapshots})

    @app.get("/evaluation")
    def evaluation() -> Response:
        project = request.args.get("project")
        if project:
            return jsonify(backend.evaluations.get(project, {}))
        return jsonify(backend.evaluations)

    @app.get("/openapi.json")
    def openapi() -> Response:
        from . import __version__
        from .openapi import openapi_spec

        return jsonify(openapi_spec(__version__))

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    return app


def backend_of(app: Flask) -> Backend:
    backend: Backend = app.extensions["llm_backend"]
    return backend
