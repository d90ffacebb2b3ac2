"""OpenAI's Files and Batch APIs on the test LLM server, closely enough for LiteLLM to use unchanged.

For the `openai` provider (and `hosted_vllm`, `litellm_proxy`) with an `api_base`, LiteLLM 1.110's
files and batches functions go through the OpenAI SDK and make exactly these requests:

=================================  ===========================================================
`litellm.create_file`              `POST {api_base}/files`, multipart/form-data: `purpose`, `file`
`litellm.create_batch`             `POST {api_base}/batches`, JSON `{input_file_id, endpoint,
                                   completion_window, metadata}`
`litellm.retrieve_batch`           `GET {api_base}/batches/{batch_id}`
`litellm.file_content`             `GET {api_base}/files/{file_id}/content` (raw bytes)
`litellm.cancel_batch`             `POST {api_base}/batches/{batch_id}/cancel`
=================================  ===========================================================

The SDK validates the file object (`id`, `bytes`, `created_at`, `filename`, `object`, `purpose`,
`status`) and LiteLLM re-validates it, so those fields follow OpenAI's shapes. A batch goes
`validating` -> `in_progress` -> `completed` one step per retrieve (so a client must poll), runs
each JSONL line through the server's own rules (so a test scripts a line's reply exactly as it
scripts a chat call), writes the answers to an output file and failed lines to an error file,
the way OpenAI does:

    output line: {"id", "custom_id", "response": {"status_code": 200, "request_id", "body": <completion>},
                  "error": null}
    error line:  {"id", "custom_id", "response": {"status_code": 4xx/5xx, "request_id", "body": {"error"}},
                  "error": null}   or, for lines an expired batch never ran,
                 {"id", "custom_id", "response": null, "error": {"code": "batch_expired", "message"}}

`hold` keeps batches `in_progress` (a client restarted meanwhile must resume polling, not
resubmit); `expire_after=N` runs only the first N lines of a batch and expires the rest. A batch
whose input is malformed (not JSON, a missing or duplicate `custom_id`, a URL other than the
batch's endpoint, several models) fails validation with OpenAI's `errors` list. Standard library only.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

__all__ = ["ROUTES", "BatchAPI", "BatchAPIError", "parse_multipart"]

ENDPOINTS = ("/v1/chat/completions",)
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
TERMINAL = ("completed", "failed", "expired", "cancelled")

# One JSONL line's answer: (HTTP status, response body), from the server's rules.
LineAnswer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class BatchAPIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_object(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


@dataclass
class BatchLine:
    """One request line of a batch as the server ran it, for tests to inspect."""

    custom_id: str
    body: dict[str, Any]
    status: int | None = None  # None: never ran (the batch expired first)
    usage: dict[str, Any] | None = None


@dataclass
class StoredBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None
    created_at: int
    status: str = "validating"
    lines: list[BatchLine] = field(default_factory=list)
    errors: dict[str, Any] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, int] = field(default_factory=dict)  # in_progress_at, completed_at, ...
    retrieved: int = 0

    def counts(self) -> dict[str, int]:
        ran = [line for line in self.lines if line.status is not None]
        done = sum(line.status == 200 for line in ran)
        failed = len(self.lines) - done if self.status in TERMINAL else len(ran) - done
        return {"total": len(self.lines), "completed": done, "failed": failed}

    def to_object(self) -> dict[str, Any]:
        stamp = {f"{name}_at": self.times.get(name) for name in
                 ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")}
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": self.errors,
                "input_file_id": self.input_file_id, "completion_window": self.completion_window,
                "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "created_at": self.created_at, "expires_at": self.created_at + 86_400, **stamp,
                "request_counts": self.counts(), "metadata": self.metadata}


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """{field name: (file name or None, bytes)} of a multipart/form-data body."""
    if "multipart/form-data" not in content_type or "boundary=" not in content_type:
        raise BatchAPIError(400, "expected a multipart/form-data body with a boundary")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


class BatchAPI:
    """The files and batches of one test server; `answer` gives each request line its reply."""

    def __init__(self, answer: LineAnswer) -> None:
        self._answer = answer
        self._lock = threading.Lock()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, StoredBatch] = {}
        self.hold = False
        self.expire_after: int | None = None

    def reset(self) -> None:
        with self._lock:
            self.files.clear()
            self.batches.clear()
            self.hold = False
            self.expire_after = None

    # ---- files

    def upload(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        if purpose not in FILE_PURPOSES:
            raise BatchAPIError(400, f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'")
        stored = StoredFile(_new_id("file-"), filename, purpose, data, int(time.time()))
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def file(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise BatchAPIError(404, f"No such File object: {file_id}")
        return stored

    # ---- batches

    def create(self, body: object) -> StoredBatch:
        if not isinstance(body, dict):
            raise BatchAPIError(400, "request body must be a JSON object")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(key), str):
                raise BatchAPIError(400, f"Missing required parameter: '{key}'.")
        if body["endpoint"] not in ENDPOINTS:
            raise BatchAPIError(400, f"Invalid endpoint '{body['endpoint']}'; this server runs {list(ENDPOINTS)}")
        if body["completion_window"] != "24h":
            raise BatchAPIError(400, "Invalid completion_window: only '24h' is supported.")
        source = self.file(body["input_file_id"])
        if source.purpose != "batch":
            raise BatchAPIError(400, f"File {source.id} has purpose '{source.purpose}', expected 'batch'.")
        batch = StoredBatch(_new_id("batch_"), source.id, body["endpoint"], body["completion_window"],
                            body.get("metadata"), int(time.time()))
        with self._lock:
            self.batches[batch.id] = batch
        return batch

    def retrieve(self, batch_id: str) -> StoredBatch:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise BatchAPIError(404, f"No batch found with id '{batch_id}'.")
            batch.retrieved += 1
            self._advance(batch)
            return batch

    def cancel(self, batch_id: str) -> StoredBatch:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise BatchAPIError(404, f"No batch found with id '{batch_id}'.")
            if batch.status in TERMINAL:
                raise BatchAPIError(400, f"Cannot cancel a batch with status '{batch.status}'.")
            batch.status = "cancelled"
            now = int(time.time())
            batch.times.update(cancelling=now, cancelled=now)
            return batch

    @property
    def created(self) -> int:
        with self._lock:
            return len(self.batches)

    # ---- the life of a batch (under the lock)

    def _advance(self, batch: StoredBatch) -> None:
        if batch.status == "validating":
            problem = self._load_lines(batch)
            now = int(time.time())
            if problem is not None:
                batch.lines = []
                batch.status, batch.errors = "failed", {"object": "list", "data": [problem]}
                batch.times["failed"] = now
            else:
                batch.status = "in_progress"
                batch.times["in_progress"] = now
        elif batch.status == "in_progress" and not self.hold:
            self._run(batch)

    def _load_lines(self, batch: StoredBatch) -> dict[str, Any] | None:
        """Parse the input file into lines; the first problem as OpenAI reports it, or None."""
        seen: set[str] = set()
        models: set[str] = set()
        text = self.files[batch.input_file_id].data.decode("utf-8", errors="replace")
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                return _problem("invalid_json_line", f"Line {number} is not valid JSON.", number)
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                return _problem("missing_required_parameter", "custom_id is required.", number)
            if line["custom_id"] in seen:
                return _problem("duplicate_custom_id", "The custom_id for this request is a duplicate of another "
                                "request. The custom_id parameter must be unique for each request in a batch.", number)
            if line.get("method") != "POST" or line.get("url") != batch.endpoint:
                return _problem("invalid_url", f"The URL provided for this request does not match the batch "
                                f"endpoint {batch.endpoint}.", number)
            body = line.get("body")
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return _problem("invalid_request", "body.messages must be a list.", number)
            seen.add(line["custom_id"])
            models.add(str(body.get("model")))
            batch.lines.append(BatchLine(line["custom_id"], body))
        if not batch.lines:
            return _problem("empty_file", "The batch input file is empty.", None)
        if len(models) > 1:
            return _problem("model_mismatch", f"All requests of a batch must use one model; got {sorted(models)}.",
                            None)
        return None

    def _run(self, batch: StoredBatch) -> None:
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        limit = len(batch.lines) if self.expire_after is None else self.expire_after
        for index, line in enumerate(batch.lines):
            request_id = f"req_{uuid.uuid4().hex[:24]}"
            entry: dict[str, Any] = {"id": _new_id("batch_req_"), "custom_id": line.custom_id}
            if index >= limit:
                errors.append({**entry, "response": None,
                               "error": {"code": "batch_expired",
                                         "message": "This request could not be executed before the completion "
                                                    "window expired."}})
                continue
            line.status, payload = self._answer(line.body)
            line.usage = payload.get("usage") if line.status == 200 else None
            result = {**entry, "response": {"status_code": line.status, "request_id": request_id, "body": payload},
                      "error": None}
            (output if line.status == 200 else errors).append(result)
        batch.output_file_id = self._store_lines(batch, output, "output")
        batch.error_file_id = self._store_lines(batch, errors, "errors")
        now = int(time.time())
        expired = limit < len(batch.lines)
        batch.status = "expired" if expired else "completed"
        batch.times.update(finalizing=now, **({"expired": now} if expired else {"completed": now}))

    def _store_lines(self, batch: StoredBatch, lines: list[dict[str, Any]], kind: str) -> str | None:
        if not lines:
            return None
        data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
        stored = StoredFile(_new_id("file-"), f"{batch.id}_{kind}.jsonl", "batch_output", data, int(time.time()))
        self.files[stored.id] = stored
        return stored.id


def _problem(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


# --------------------------------------------------------------------------- HTTP routes
# Each route gets the request handler of testkit/llm_server.py and the path's match.

def _api(handler: Any) -> BatchAPI:
    return handler.server.fake.batch_api


def _reply(handler: Any, produce: Callable[[], dict[str, Any]]) -> None:
    try:
        handler._send_json(200, produce())
    except BatchAPIError as exc:
        handler._send_error_json(exc.status, exc.message)


def _upload(handler: Any, match: re.Match[str]) -> None:
    body = handler._read_body()

    def produce() -> dict[str, Any]:
        fields = parse_multipart(handler.headers.get("Content-Type", ""), body)
        if "file" not in fields or "purpose" not in fields:
            raise BatchAPIError(400, "Missing required parameter: 'file' and 'purpose' are both required.")
        filename, data = fields["file"]
        purpose = fields["purpose"][1].decode("utf-8", errors="replace").strip()
        return _api(handler).upload(filename or "upload.jsonl", purpose, data).to_object()

    _reply(handler, produce)


def _file(handler: Any, match: re.Match[str]) -> None:
    handler._read_body()
    _reply(handler, lambda: _api(handler).file(match["id"]).to_object())


def _file_content(handler: Any, match: re.Match[str]) -> None:
    handler._read_body()
    try:
        stored = _api(handler).file(match["id"])
    except BatchAPIError as exc:
        handler._send_error_json(exc.status, exc.message)
        return
    handler._send(200, stored.data, "application/octet-stream")


def _create(handler: Any, match: re.Match[str]) -> None:
    body = handler._read_json()
    _reply(handler, lambda: _api(handler).create(body).to_object())


def _retrieve(handler: Any, match: re.Match[str]) -> None:
    handler._read_body()
    _reply(handler, lambda: _api(handler).retrieve(match["id"]).to_object())


def _cancel(handler: Any, match: re.Match[str]) -> None:
    handler._read_body()
    _reply(handler, lambda: _api(handler).cancel(match["id"]).to_object())


_ID = r"(?P<id>[A-Za-z0-9_-]+)"
ROUTES: list[tuple[str, re.Pattern[str], Callable[[Any, re.Match[str]], None]]] = [
    (method, re.compile(prefix + pattern), function)
    for prefix in ("/v1", "")
    for method, pattern, function in (
        ("POST", "/files", _upload),
        ("GET", f"/files/{_ID}", _file),
        ("GET", f"/files/{_ID}/content", _file_content),
        ("POST", "/batches", _create),
        ("GET", f"/batches/{_ID}", _retrieve),
        ("POST", f"/batches/{_ID}/cancel", _cancel),
    )
]
