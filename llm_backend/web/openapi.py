"""The OpenAPI 3 description of every route, served at /openapi.json (and fuzzed in the tests)."""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
REGION = {
    "type": "object",
    "required": ["id", "from_name", "to_name", "type", "value"],
    "properties": {
        "id": {"type": "string"},
        "from_name": {"type": "string"},
        "to_name": {"type": "string"},
        "type": {"type": "string"},
        "value": {"type": "object"},
        "score": {"type": "number"},
    },
}
RESULT_ITEM = {
    "type": "object",
    "required": ["model_version"],
    "description": "A prediction (with `result`) or, for a task that failed or missed the deadline, an error "
                   "without `result`, so Label Studio stores nothing and asks again.",
    "properties": {
        "model_version": {"type": "string"},
        "result": {"type": "array", "items": REGION},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "error": {"type": "string"},
    },
}
LABEL_CONFIG = {"type": "string", "description": "The label config XML"}
PROJECT = {"description": "\"<id>.<created unix time>\" as Label Studio sends it",
           "oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}


def _error_responses(*statuses: int) -> dict[str, Any]:
    reasons = {400: "Bad request (the message names the problem)", 401: "Authentication required",
               413: "Body larger than MAX_REQUEST_BYTES", 500: "Internal error (details only in the server log)",
               502: "Every task failed for one cause outside the tasks (API key, model server, model name); "
                    "the message names it and its fix"}
    return {str(status): {"description": reasons[status], "content": {"application/json": {"schema": ERROR}}}
            for status in statuses}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_spec(version: str) -> dict[str, Any]:
    health = _json({
        "type": "object", "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["UP"]}, "model_class": {"type": "string"},
                       "model": {"type": "string"}, "model_ready": {"type": "boolean"}},
    })
    body = {"required": True, "content": {"application/json": {"schema": None}}}
    setup_body = {**body, "content": {"application/json": {"schema": {
        "type": "object", "required": ["schema"],
        "properties": {"schema": LABEL_CONFIG, "project": PROJECT, "hostname": {"type": "string"},
                       "access_token": {"type": "string"},
                       "extra_params": {"oneOf": [{"type": "string"}, {"type": "object"}, {"type": "null"}]}},
    }}}}
    predict_body = {**body, "content": {"application/json": {"schema": {
        "type": "object", "required": ["tasks", "label_config"],
        "properties": {
            "tasks": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "data": {"type": "object"}}}},
            "label_config": LABEL_CONFIG,
            "project": PROJECT,
            "params": {"type": "object", "properties": {"context": {"oneOf": [{"type": "object"},
                                                                               {"type": "null"}]}}},
        },
    }}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "llm-backend", "version": version,
                 "description": "Label Studio ML backend protocol, answered by an LLM."},
        "paths": {
            "/": {"get": {"summary": "Status page (HTML): jobs, errors by cause, usage, per project", "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                **_error_responses(401)}}},
            "/jobs": {"get": {"summary": "The status page as JSON", "responses": {
                "200": _json({"type": "object", "required": ["backend", "problems", "projects"],
                              "properties": {"backend": {"type": "object"}, "problems": {"type": "array"},
                                             "projects": {"type": "array"}}}),
                **_error_responses(401)}}},
            "/health": {"get": {"summary": "Health; answers at once", "responses": {"200": health}}},
            "/setup": {"post": {
                "summary": "Parse the label config; return the model version",
                "requestBody": setup_body,
                "responses": {"200": _json({"type": "object", "required": ["model_version"],
                                            "properties": {"model_version": {"type": "string"}}}),
                              **_error_responses(400, 401, 413, 500)},
            }},
            "/predict": {"post": {
                "summary": "Predict every task; one result item per task, in task order",
                "requestBody": predict_body,
                "responses": {"200": _json({"type": "object", "required": ["results"],
                                            "properties": {"results": {"type": "array", "items": RESULT_ITEM},
                                                           "model_version": {"type": "string"}}}),
                              **_error_responses(400, 401, 413, 500, 502)},
            }},
            "/webhook": {"post": {
                "summary": "Label Studio events; acknowledged at once",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": _json({"type": "object", "required": ["status"],
                                            "properties": {"status": {"type": "string"}}}),
                              **_error_responses(401, 413, 500)},
            }},
            "/versions": {"get": {"summary": "Model versions in use", "responses": {
                "200": _json({"type": "object", "required": ["versions"],
                              "properties": {"versions": {"type": "array", "items": {"type": "string"}},
                                             "projects": {"type": "object"}}}),
                **_error_responses(401)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {
                    "type": "string"}}}},
                **_error_responses(401)}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json({"type": "object"}), **_error_responses(401)}}},
        },
    }
