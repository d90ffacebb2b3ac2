"""The protocol over Flask: routes, authentication, error bodies and the log of refused requests.

`create_app(settings)` builds everything at call time and nothing at import. It does not import
LiteLLM: `/health` and `/setup` answer in milliseconds; the model client loads on first use or in
the warm-up thread that `serve` starts in each worker. The protocol itself is in `protocol.py`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..engine.cache import Cache
from ..errors import BadRequestError, LLMBackendError
from ..models.client import CompletionClient
from ..redact import redact
from ..services import Services, build_services
from ..settings import Settings
from .auth import OPEN_PATHS, basic_auth_refusal, webhook_refusal
from .openapi import openapi_spec
from .protocol import ProtocolHandler
from .status import FAVICON, ProjectTitles, render_status, status_data

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    if status < 500:
        # Label Studio shows a refused /setup as "400 Client Error" only: the reason must be in our log.
        log.warning("%s %s -> %d %s: %s", request.method, request.path, status, code, message)
    return jsonify({"error": {"code": code, "message": message}}), status


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise BadRequestError("request body is not valid JSON")
    if not isinstance(body, dict):
        raise BadRequestError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    client: CompletionClient | None = None,
    cache: Cache | None = None,
    consumers: bool = True,
) -> Flask:
    """The app over `services` (built from `settings` when not given). With `consumers` (and JOBS_ENABLED) this
    process starts working the job queue now, as `llm-backend worker` does; `serve` builds the app before forking
    and starts them in each worker instead (`web/server.py`). A request never starts them."""
    services = services or build_services(settings, client=client, cache=cache)
    if consumers and services.settings.jobs_enabled:
        services.consumers.start()
    settings, metrics = services.settings, services.metrics
    protocol = ProtocolHandler(services)

    app = Flask("llm_backend")
    # Werkzeug answers 413 from Content-Length alone, before reading the body.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["llm_backend"] = services

    @app.errorhandler(LLMBackendError)
    def backend_error(exc: LLMBackendError) -> tuple[Response, int]:
        # 502: the model behind us failed (a whole batch for one cause); any other 5xx is our own fault.
        return _error(exc.status if exc.status < 500 or exc.status == 502 else 500, exc.code, redact(exc.message))

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
            refusal = webhook_refusal(settings, request.headers.get("X-Webhook-Secret"))
            return _error(401, "unauthorized", refusal) if refusal else None
        if request.method == "GET" and request.path in OPEN_PATHS:
            return None
        auth = request.authorization
        refusal = basic_auth_refusal(settings, auth.username if auth else None, auth.password if auth else None)
        if refusal:
            response, status = _error(401, "unauthorized", refusal)
            response.headers["WWW-Authenticate"] = 'Basic realm="llm-backend"'
            return response, status
        return None

    @app.after_request
    def count(response: Response) -> Response:
        metrics.requests.labels(request.url_rule.rule if request.url_rule else "other", str(response.status_code)).inc()
        return response

    titles = ProjectTitles(services.label_studio)

    @app.get("/")
    def status_page() -> Response:
        return Response(render_status(services, titles=titles), mimetype="text/html")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/jobs")
    def jobs() -> Response:
        return jsonify(status_data(services, titles=titles))

    @app.get("/health")
    def health() -> Response:
        return jsonify({
            "status": "UP",
            "model_class": "LLMBackend",
            "model": settings.llm_model,
            "model_ready": services.model_ready,
        })

    @app.post("/setup")
    def setup() -> Response:
        return jsonify(protocol.setup(_json_body()))

    @app.post("/predict")
    def predict() -> Response:
        started = time.time()  # the wall clock: every deadline is on it (engine/pipeline.py)
        result = protocol.predict(_json_body(), started)
        metrics.predict_seconds.observe(time.time() - started)
        return jsonify(result)

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        # Label Studio gives webhooks 1 s: acknowledge at once, work in the background.
        body = request.get_json(silent=True, force=True)
        action = body.get("action") if isinstance(body, dict) else None
        log.debug("webhook %s", action)
        if isinstance(body, dict):
            services.events.submit(body)
        return jsonify({"status": "ok", "action": action}), 200

    @app.get("/versions")
    def versions() -> Response:
        return jsonify(protocol.versions())

    @app.get("/evaluation")
    def evaluation() -> Response:
        return jsonify(protocol.evaluation(request.args.get("project")))

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_spec(__version__))

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    return app


def services_of(app: Flask) -> Services:
    services: Services = app.extensions["llm_backend"]
    return services
