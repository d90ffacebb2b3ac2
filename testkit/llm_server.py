"""A scriptable, OpenAI-compatible chat-completions server for tests and benchmarks.

LiteLLM reaches it through ``api_base`` exactly as it would reach OpenAI or a vLLM
server, so the whole HTTP path (request encoding, ``response_format`` forwarding,
status-code -> exception mapping, ``Retry-After`` handling, keep-alive pooling) is
exercised for real instead of being mocked away. Only the standard library is used
on the server side so it can run anywhere the tests run, including as a separate
process next to a gunicorn-hosted backend.

In-process usage::

    from testkit.llm_server import FakeLLMServer, Reply

    with FakeLLMServer() as server:
        server.add_rule("capital of France", Reply(json={"answer": "Paris"}))
        server.add_rule("flaky", [Reply(status=429, headers={"Retry-After": "1"}), Reply(json={"ok": True})])
        litellm.completion(
            model="openai/test-model",
            api_base=server.base_url,
            api_key="sk-test",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        assert server.count(200) == 1

Out-of-process usage (benchmarks, gunicorn tests)::

    $ python -m testkit.llm_server --port 8999 --latency 0.25 --max-concurrent 8

    control = LLMServerControl("http://127.0.0.1:8999")
    control.reset()
    control.add_rule("capital of France", {"json": {"answer": "Paris"}})
    control.stats()["by_status"]

When no rule matches, the answer is derived from the request: a deterministic
instance of the ``response_format`` JSON schema if there is one, otherwise ``{}``;
with a gazetteer set (``set_gazetteer``, see ``testkit/gazetteer.py``), its NER
property lists the known entities the request's text shows.

With ``context_tokens`` set the server refuses a request whose prompt (counted
as for billing, ``prompt_tokens``) and ``max_tokens`` together exceed it the way
OpenAI does: HTTP 400, ``code: context_length_exceeded``, "This model's maximum
context length is N tokens...", at once, before any latency or slot.

Replies can come dressed the way real models send them (``Reply(json=..., style="think+fence")``,
see ``testkit/reply_styles.py``): reasoning blocks, code fences, prose, trailing commas, single
quotes, answers cut off at the token limit, refusals, empty replies, the answer in
``reasoning_content``. ``POST /api/chat`` answers in Ollama's native format (``format`` is its
structured-output schema), for ``ollama_chat/`` models.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

from .gazetteer import Gazetteer
from .llm_batches import ROUTES as BATCH_ROUTES
from .llm_batches import BatchAPI
from .noisy_model import NoisyModel
from .provider_tokens import char_refusal, char_usage
from .reply_styles import Shaped, check_style, shape
from .world import World

__all__ = [
    "FakeLLMServer",
    "Gazetteer",
    "LLMServerControl",
    "Reply",
    "ReplyFactory",
    "schema_instance",
]

logger = logging.getLogger(__name__)

MODEL_ID = "test-model"

# OpenAI's (type, code) pairs for the error statuses tests commonly script; the
# exact strings matter little to LiteLLM (it maps on status code) but keeping
# them realistic makes error messages in failing tests recognisable.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", "timeout"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "overloaded"),
}


@dataclass
class Reply:
    """One scripted answer.

    With neither ``json`` nor ``content`` set, a 200 reply carries the
    schema-driven default content, so ``Reply(delay=5)`` or ``Reply(logprobs=...)``
    only change timing or metadata of the normal answer.
    """

    json: Any = None
    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error_message: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    style: str | None = None  # how the answer is dressed (testkit/reply_styles.py), e.g. "think+fence"
    # Explicit message fields, over what the style gives.
    finish_reason: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    more_choices: list[dict[str, Any]] | None = None  # choices after the first ({"content", "logprobs"}): `n`
    # Hold the answer until this many calls have been in flight at once (at most 5 s, well inside the
    # tests' 10 s client timeout: a client that gave up and retried would leave its held call in flight
    # beside the retry): a test of a concurrency limit then reaches the limit without counting on timing.
    gate: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        """Build a reply from its JSON form, as sent to the control endpoints."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a reply must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown reply field(s): {sorted(unknown)}; allowed: {sorted(known)}")
        reply = cls(**data)
        if not isinstance(reply.status, int) or not 100 <= reply.status <= 599:
            raise ValueError(f"invalid status: {reply.status!r}")
        if not isinstance(reply.headers, dict):
            raise ValueError("headers must be an object")
        reply.headers = {str(k): str(v) for k, v in reply.headers.items()}
        reply.delay = float(reply.delay)
        if reply.style is not None:
            check_style(reply.style)
        return reply

    def __post_init__(self) -> None:
        if self.style is not None:
            check_style(self.style)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ReplyFactory = Callable[[dict[str, Any]], Reply]


@dataclass
class _Rule:
    contains: str
    replies: list[Reply]
    times: int | None
    used: int = 0

    def exhausted(self) -> bool:
        return self.times is not None and self.used >= self.times

    def take(self) -> Reply:
        # The last reply repeats so that e.g. [429, 429, ok] means "fail twice, then succeed forever".
        reply = self.replies[min(self.used, len(self.replies) - 1)]
        self.used += 1
        return reply


@dataclass
class _Failures:
    rate_429: float = 0.0
    rate_500: float = 0.0
    retry_after: float | None = 1.0


# --------------------------------------------------------------------------- schema


def schema_instance(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, _depth: int = 0) -> Any:
    """Return a deterministic value that validates against ``schema``.

    Covers the subset of JSON Schema that structured-output schemas use (what
    OpenAI strict mode and pydantic emit); anything more exotic falls back to a
    plausible value rather than raising, because a test server must always answer.
    """
    root = schema if root is None else root
    # Recursive schemas (a tree node whose children are nodes) would otherwise
    # expand forever; past this depth nullable branches and empty arrays win.
    deep = _depth > 16
    if not isinstance(schema, Mapping):
        return None
    if "$ref" in schema:
        return schema_instance(_resolve_ref(root, schema["$ref"]), root, _depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            non_null = [o for o in options if not _is_null_schema(o, root)]
            if deep and len(non_null) < len(options):
                return None
            return schema_instance(non_null[0] if non_null else options[0], root, _depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve_ref(root, part["$ref"]) if "$ref" in part else part
            for k, v in part.items():
                if k in ("properties", "$defs", "definitions") and isinstance(v, Mapping):
                    merged[k] = {**merged.get(k, {}), **v}
                elif k == "required":
                    merged[k] = [*merged.get(k, []), *v]
                else:
                    merged.setdefault(k, v)
        return schema_instance(merged, root, _depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        non_null_types = [t for t in kind if t != "null"]
        if (deep and "null" in kind) or not non_null_types:
            return None
        kind = non_null_types[0]
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"

    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties", {})
        return {name: schema_instance(sub, root, _depth + 1) for name, sub in props.items()}
    if kind == "array":
        prefix = [schema_instance(s, root, _depth + 1) for s in schema.get("prefixItems", [])]
        wanted = int(schema.get("minItems", 0))
        items = schema.get("items")
        while len(prefix) < wanted and isinstance(items, Mapping):
            prefix.append(schema_instance(items, root, _depth + 1))
        return prefix
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("number", "integer"):
        return _number_instance(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    # An empty schema accepts anything.
    return None


def _number_instance(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    step = 1 if integer else 0.5
    if "minimum" in schema:
        value = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"] + step
    elif "maximum" in schema and schema["maximum"] < 0:
        value = schema["maximum"]
    elif "exclusiveMaximum" in schema and schema["exclusiveMaximum"] <= 0:
        value = schema["exclusiveMaximum"] - step
    else:
        value = 0
    if integer:
        return int(value) if float(value).is_integer() else int(value) + 1
    return value


def _resolve_ref(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        # Remote refs cannot be fetched from a test server; an empty schema keeps answering.
        return {}
    node: Any = root
    for token in ref.lstrip("#").strip("/").split("/"):
        if not token:
            continue
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _is_null_schema(schema: Any, root: Mapping[str, Any]) -> bool:
    if isinstance(schema, Mapping) and "$ref" in schema:
        schema = _resolve_ref(root, schema["$ref"])
    return isinstance(schema, Mapping) and schema.get("type") == "null"


def default_content(body: Mapping[str, Any]) -> str:
    """The assistant content answered when nothing was scripted for a request."""
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        json_schema = response_format.get("json_schema")
        if isinstance(json_schema, Mapping) and isinstance(json_schema.get("schema"), Mapping):
            return json.dumps(schema_instance(json_schema["schema"]))
    return "{}"


def _message_text(body: Mapping[str, Any]) -> str:
    """All text of the request's messages, which is what rules match against."""
    parts: list[str] = []
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            # Multimodal messages carry text in typed parts next to image parts.
            parts.extend(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return "\n".join(parts)


# Word pieces the way GPT tokenizers pre-split text (a word with its leading space, up to three
# digits, a run of punctuation, whitespace). Common English words are one token each; longer and
# non-ASCII pieces are split further below. Within ~6% of tiktoken on this repository's README,
# prompts, code and JSON.
_PIECES = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@functools.lru_cache(maxsize=65536)
def _piece_tokens(piece: str) -> int:
    piece = piece.strip()
    if not piece.isascii():
        return max(1, len(piece.encode("utf-8")) // 3)
    if piece.isalpha():
        return 1 + max(0, len(piece) - 7) // 6
    if piece and not piece.isalnum():
        return max(1, (len(piece) + 1) // 2)
    return 1


# Kept per text: a request's prompt is counted for the context check and again for its bill. The server shares the
# benchmarks' cores, and counting a 6,000-token part in Python twice cost about 18 ms of its CPU per call.
@functools.lru_cache(maxsize=64)
def count_tokens(text: str) -> int:
    """About what an OpenAI tokenizer counts for `text`, with the standard library only."""
    return sum(map(_piece_tokens, _PIECES.findall(text)))


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """The prompt tokens OpenAI bills for a chat request: each message's text plus 3 tokens of framing,
    3 for the reply's priming, and a structured-output schema, which is added to the prompt."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    tokens = 3 + sum(3 + count_tokens(_message_text({"messages": [message]})) for message in messages)
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and isinstance(response_format.get("json_schema"), Mapping):
        tokens += count_tokens(json.dumps(response_format["json_schema"].get("schema")))
    return tokens


def requested_tokens(body: Mapping[str, Any]) -> int:
    """What a request asks of the context window: its prompt and the answer it reserves (max_tokens)."""
    answer = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return prompt_tokens(body) + (answer if isinstance(answer, int) else 0)


def context_error(limit: int, asked: int) -> dict[str, Any]:
    """OpenAI's body for a prompt too long for the model."""
    return {"error": {
        "message": f"This model's maximum context length is {limit} tokens. However, you requested {asked} tokens. "
                   "Please reduce the length of the messages or completion.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
    }}


def _format_seconds(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # 64+ concurrent clients connecting at once must queue in the backlog, not be refused.
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeLLMServer) -> None:
        self.fake = fake
        # Keep-alive connections outlive serve_forever(); they are tracked so stop()
        # can cut them, otherwise a pooled client would keep talking to a "stopped" server.
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so httpx (LiteLLM) and requests can keep connections alive, as they do with real providers.
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 60
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; with Nagle's algorithm the second one waits
        # for the client's delayed ACK (~40 ms), which would dominate every simulated latency.
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The base class answers unparsable requests (bad request line, unknown method,
        # oversized headers) with an HTML page; clients of an OpenAI API expect JSON.
        self.close_connection = True
        short = self.responses.get(code, ("error", ""))[0]
        payload = json.dumps(error_body(code, message or explain or short)).encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(payload)

    # ---- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline()
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError as exc:
                    raise _BadRequest("malformed chunked body") from exc
                if size == 0:
                    # Drain trailers up to the blank line that ends the message.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise _BadRequest("invalid Content-Length") from exc
        if length < 0:
            raise _BadRequest("invalid Content-Length")
        return self.rfile.read(length) if length else b""

    def _read_json(self) -> Any:
        raw = self._read_body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _BadRequest(f"request body is not valid JSON: {exc}") from exc

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _send_error_json(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        self._send_json(status, error_body(status, message), headers)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            route = _ROUTES.get((method, path))
            if route is not None:
                route(self, path)
                return
            for route_method, pattern, handle in BATCH_ROUTES:
                match = pattern.fullmatch(path)
                if route_method == method and match is not None:
                    handle(self, match)
                    return
            # The body must still be consumed, or it would be parsed as the next keep-alive request.
            self._read_body()
            self._send_error_json(404, f"no route for {method} {path}")
        except _BadRequest as exc:
            self.close_connection = True
            self._send_error_json(400, str(exc))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            # The client gave up (e.g. a LiteLLM timeout); nothing left to answer.
            self.close_connection = True
        except Exception as exc:
            logger.exception("fake LLM server failed on %s %s", method, path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_error_json(500, f"fake LLM server error: {exc!r}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- OpenAI API

    def _chat_completions(self, path: str) -> None:
        self._chat(path, ollama=False)

    def _ollama_chat(self, path: str) -> None:
        self._chat(path, ollama=True)

    def _chat(self, path: str, *, ollama: bool) -> None:
        fake = self.server.fake
        received = time.time()
        try:
            body = self._read_json()
        except _BadRequest:
            fake._record({"_raw": "<invalid JSON>"}, path, received, 400, self.client_address)
            raise
        if not isinstance(body, dict):
            fake._record({"_raw": body}, path, received, 400, self.client_address)
            raise _BadRequest("request body must be a JSON object")
        if not isinstance(body.get("messages"), list):
            fake._record(body, path, received, 400, self.client_address)
            raise _BadRequest("'messages' must be a list")
        record = fake._record(body, path, received, None, self.client_address)
        # What a keyless server sees of the client's credentials (tests of "no key needed" read it).
        record["_authorization"] = self.headers.get("Authorization")
        record["_user_agent"] = self.headers.get("User-Agent")  # which client sent it (the OpenAI SDK, aiohttp)
        limit = fake.context_tokens
        refused = char_refusal(body, limit, fake.chars_per_token) if limit and fake.chars_per_token else None
        if refused is not None:  # a provider with its own tokenizer (testkit/provider_tokens.py)
            fake._finish(record, 400)
            self._send_json(400, refused)
            return
        if limit is not None and (asked := requested_tokens(body)) > limit:
            fake._finish(record, 400)
            self._send_json(400, context_error(limit, asked))
            return
        try:
            with fake._slot():
                reply = fake._choose_reply(body)
                if reply.gate:
                    fake._await_gate(reply.gate)
                fake._sleep(fake.latency + reply.delay)
                content_type = "application/json"
                if reply.status >= 400:
                    message = reply.error_message or f"fake LLM server scripted HTTP {reply.status}"
                    error = {"error": message} if ollama else error_body(reply.status, message)
                    payload = json.dumps(error).encode()
                elif ollama:
                    payload = json.dumps(_ollama_chat(body, reply)).encode()
                elif body.get("stream"):
                    payload, content_type = _stream_payload(body, reply), "text/event-stream"
                else:
                    completion = _completion(body, reply)
                    if fake.chars_per_token:
                        completion["usage"] = char_usage(completion["usage"], body, fake.chars_per_token)
                    record["_usage"] = completion["usage"]
                    payload = json.dumps(completion).encode()
                # Recorded before writing: a client that already holds its answer must see it counted.
                fake._finish(record, reply.status)
            # Written after leaving the slot: a client that holds its answer may send its next call at once, and
            # that call must not meet this one still counted in flight (a peak one over the client's real limit).
            self._send(reply.status, payload, content_type, reply.headers)
        except Exception:
            if record["_status"] is None:
                fake._finish(record, 500)
            raise

    def _models(self, path: str) -> None:
        self._send_json(
            200,
            {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}],
            },
        )

    # ---- control API

    def _control_reset(self, path: str) -> None:
        self._read_body()
        self.server.fake.reset()
        self._send_json(200, {"ok": True})

    def _control_rule(self, path: str) -> None:
        data = self._read_json()
        if not isinstance(data, dict) or not isinstance(data.get("contains"), str) or "reply" not in data:
            raise _BadRequest('expected {"contains": str, "reply": {...} | [...], "times": int | null}')
        times = data.get("times")
        if times is not None and (not isinstance(times, int) or times < 0):
            raise _BadRequest("'times' must be a non-negative integer or null")
        try:
            raw = data["reply"]
            replies = [Reply.from_dict(r) for r in raw] if isinstance(raw, list) else Reply.from_dict(raw)
            self.server.fake.add_rule(data["contains"], replies, times=times)
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True})

    def _control_default(self, path: str) -> None:
        data = self._read_json()
        try:
            self.server.fake.set_default(None if data is None else Reply.from_dict(data))
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True})

    def _control_failures(self, path: str) -> None:
        data = self._read_json() or {}
        if not isinstance(data, dict):
            raise _BadRequest("expected a JSON object")
        allowed = {"rate_429", "rate_500", "retry_after", "seed"}
        if set(data) - allowed:
            raise _BadRequest(f"unknown field(s): {sorted(set(data) - allowed)}")
        try:
            self.server.fake.inject_failures(**data)
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True})

    def _control_latency(self, path: str) -> None:
        data = self._read_json() or {}
        if not isinstance(data, dict):
            raise _BadRequest("expected a JSON object")
        fake = self.server.fake
        try:
            # Only the keys present change, so latency can be tuned without touching the slot limit.
            if "latency" in data:
                fake.latency = _non_negative_float(data["latency"], "latency")
            if "max_concurrent" in data:
                fake.max_concurrent = _optional_positive_int(data["max_concurrent"], "max_concurrent")
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True, "latency": fake.latency, "max_concurrent": fake.max_concurrent})

    def _control_context(self, path: str) -> None:
        data = self._read_json() or {}
        if not isinstance(data, dict) or set(data) - {"context_tokens"}:
            raise _BadRequest('expected {"context_tokens": int | null}')
        try:
            self.server.fake.context_tokens = _optional_positive_int(data.get("context_tokens"), "context_tokens")
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True, "context_tokens": self.server.fake.context_tokens})

    def _control_gazetteer(self, path: str) -> None:
        data = self._read_json()
        try:
            self.server.fake.set_gazetteer(None if data is None else Gazetteer.from_dict(data))
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True})

    def _control_noisy(self, path: str) -> None:
        data = self._read_json()
        try:
            self.server.fake.noisy = None if data is None else NoisyModel.from_dict(data)
        except (TypeError, ValueError, KeyError) as exc:
            raise _BadRequest(str(exc)) from exc
        self._send_json(200, {"ok": True})

    def _control_stats(self, path: str) -> None:
        self._send_json(200, self.server.fake.stats())

    def _control_batches(self, path: str) -> None:
        data = self._read_json() or {}
        if not isinstance(data, dict) or set(data) - {"hold", "expire_after"}:
            raise _BadRequest('expected {"hold": bool, "expire_after": int | null}')
        api = self.server.fake.batch_api
        if "hold" in data:
            api.hold = bool(data["hold"])
        if "expire_after" in data:
            api.expire_after = data["expire_after"]
        self._send_json(200, {"ok": True, "hold": api.hold, "expire_after": api.expire_after})


_ROUTES: dict[tuple[str, str], Callable[[_Handler, str], None]] = {
    ("POST", "/v1/chat/completions"): _Handler._chat_completions,
    ("POST", "/chat/completions"): _Handler._chat_completions,
    ("POST", "/api/chat"): _Handler._ollama_chat,
    ("GET", "/v1/models"): _Handler._models,
    ("GET", "/models"): _Handler._models,
    ("POST", "/_control/reset"): _Handler._control_reset,
    ("POST", "/_control/rule"): _Handler._control_rule,
    ("POST", "/_control/default"): _Handler._control_default,
    ("POST", "/_control/failures"): _Handler._control_failures,
    ("POST", "/_control/latency"): _Handler._control_latency,
    ("POST", "/_control/context"): _Handler._control_context,
    ("POST", "/_control/gazetteer"): _Handler._control_gazetteer,
    ("GET", "/_control/stats"): _Handler._control_stats,
    ("POST", "/_control/noisy"): _Handler._control_noisy,
    ("POST", "/_control/batches"): _Handler._control_batches,
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error envelope, which LiteLLM parses for the exception message."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code if code else str(status)}}


def _content_of(body: Mapping[str, Any], reply: Reply) -> str:
    if reply.content is not None:
        return reply.content
    if reply.json is not None:
        return json.dumps(reply.json)
    return default_content(body)


def _shaped(body: Mapping[str, Any], reply: Reply, default: str | None = None) -> Shaped:
    """The message parts of a 200 reply: its style applied to the answer, then explicit fields."""
    scripted = reply.content is not None or reply.json is not None
    text = _content_of(body, reply) if default is None or scripted else default
    if reply.style is not None:
        value = reply.json if reply.json is not None else json.loads(text)
        shaped = shape(reply.style, value)
    else:
        shaped = Shaped(text)
    if reply.finish_reason is not None:
        shaped.finish_reason = reply.finish_reason
    if reply.refusal is not None:
        shaped.refusal = reply.refusal
    if reply.reasoning_content is not None:
        shaped.reasoning_content = reply.reasoning_content
    return shaped


def _usage(body: Mapping[str, Any], content: str, reply: Reply) -> dict[str, Any]:
    prompt = prompt_tokens(body)
    completion = max(1, count_tokens(content))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reply.usage:
        usage.update(reply.usage)
    return usage


def _completion(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    shaped = _shaped(body, reply)
    message: dict[str, Any] = {"role": "assistant", "content": shaped.content}
    for key in ("refusal", "reasoning_content", "reasoning"):
        if getattr(shaped, key) is not None:
            message[key] = getattr(shaped, key)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", MODEL_ID),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": shaped.finish_reason,
                "logprobs": {"content": reply.logprobs} if reply.logprobs is not None else None,
            },
            *({"index": i, "message": {"role": "assistant", "content": c["content"]}, "finish_reason": "stop",
               "logprobs": {"content": c["logprobs"]} if c.get("logprobs") else None}
              for i, c in enumerate(reply.more_choices or (), start=1)),
        ],
        "usage": _usage(body, (shaped.content or "") + (shaped.reasoning_content or shaped.reasoning or ""), reply),
    }


def _ollama_chat(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    """Ollama's native /api/chat answer; its `format` is a JSON schema, "json", or absent."""
    fmt = body.get("format")
    default = json.dumps(schema_instance(fmt)) if isinstance(fmt, Mapping) else "{}"
    shaped = _shaped(body, reply, default)
    message: dict[str, Any] = {"role": "assistant", "content": shaped.content or ""}
    thinking = shaped.reasoning_content or shaped.reasoning
    if thinking is not None:
        message["thinking"] = thinking
    usage = _usage(body, message["content"] + (thinking or ""), reply)
    return {
        "model": body.get("model", MODEL_ID),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message": message,
        "done": True,
        "done_reason": shaped.finish_reason,
        "prompt_eval_count": usage["prompt_tokens"],
        "eval_count": usage["completion_tokens"],
    }


def _stream_payload(body: Mapping[str, Any], reply: Reply) -> bytes:
    """Server-sent events equivalent of ``_completion``, for callers that pass ``stream=True``."""
    content = _content_of(body, reply)
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", MODEL_ID),
    }
    logprobs = {"content": reply.logprobs} if reply.logprobs is not None else None
    chunks: list[dict[str, Any]] = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": content},
                    "finish_reason": None,
                    "logprobs": logprobs,
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]},
    ]
    stream_options = body.get("stream_options")
    if isinstance(stream_options, Mapping) and stream_options.get("include_usage"):
        chunks.append({**base, "choices": [], "usage": _usage(body, content, reply)})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def _non_negative_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def _optional_positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or null")
    return value


class FakeLLMServer:
    """OpenAI-compatible chat-completions server running in a daemon thread.

    ``reset()`` clears rules, the default reply, the gazetteer, injected failures,
    counters and recorded requests, but keeps ``latency``, ``max_concurrent`` and
    ``context_tokens``: those describe the simulated hardware, which a benchmark
    sets once on the command line.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        max_concurrent: int | None = None,
        context_tokens: int | None = None,
        chars_per_token: float | None = None,
    ) -> None:
        self.host = host
        self.context_tokens = _optional_positive_int(context_tokens, "context_tokens")
        self.chars_per_token = chars_per_token  # count tokens as characters / this (testkit/provider_tokens.py)
        self._gazetteer: Gazetteer | None = None
        self.noisy: NoisyModel | None = None  # unscripted requests naming its tasks (testkit/noisy_model.py)
        self.world: World | None = None  # the prompt lab's model (testkit/world.py); answers unmatched requests
        self.port = port
        self.latency = _non_negative_float(latency, "latency")
        self._max_concurrent = _optional_positive_int(max_concurrent, "max_concurrent")
        self._lock = threading.Lock()
        self._slots = threading.Condition()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rules: list[_Rule] = []
        self._default: Reply | ReplyFactory | None = None
        self._failures = _Failures()
        self._rng = random.Random(0)
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight_seen = 0
        # OpenAI's Files and Batch APIs; each line of a batch is answered by the rules, like a chat call.
        self.batch_api = BatchAPI(self._batch_line)

    # ---- lifecycle

    def start(self) -> FakeLLMServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-llm-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # Wake handlers sleeping in a delay or waiting for a slot so they finish promptly.
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # ---- scripting

    @property
    def in_flight(self) -> int:
        """Calls being answered now."""
        with self._slots:
            return self._in_flight

    @property
    def max_concurrent(self) -> int | None:
        return self._max_concurrent

    @max_concurrent.setter
    def max_concurrent(self, value: int | None) -> None:
        with self._slots:
            self._max_concurrent = _optional_positive_int(value, "max_concurrent")
            # A raised limit must release requests already queued behind the old one.
            self._slots.notify_all()

    def add_rule(self, contains: str, reply: Reply | list[Reply], *, times: int | None = None) -> None:
        """Answer requests whose message text contains ``contains``; earlier rules win."""
        replies = list(reply) if isinstance(reply, list) else [reply]
        if not replies:
            raise ValueError("a rule needs at least one reply")
        if not all(isinstance(r, Reply) for r in replies):
            raise TypeError("replies must be Reply instances")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._rules.append(_Rule(contains, replies, times))

    def set_default(self, reply: Reply | ReplyFactory | None) -> None:
        """Answer unmatched requests with a reply, a function of the body, or (None) the schema default."""
        with self._lock:
            self._default = reply

    def set_gazetteer(self, gazetteer: Gazetteer | None) -> None:
        """Answer unmatched requests' NER property with the known entities their text shows (None: stop)."""
        with self._lock:
            self._gazetteer = gazetteer

    def inject_failures(
        self,
        *,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        retry_after: float | None = 1.0,
        seed: int = 0,
    ) -> None:
        """Fail this fraction of requests at random, before rules are consulted."""
        rate_429 = _non_negative_float(rate_429, "rate_429")
        rate_500 = _non_negative_float(rate_500, "rate_500")
        if rate_429 + rate_500 > 1:
            raise ValueError("rate_429 + rate_500 must not exceed 1")
        if retry_after is not None:
            retry_after = _non_negative_float(retry_after, "retry_after")
        with self._lock:
            self._failures = _Failures(rate_429, rate_500, retry_after)
            self._rng = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self._default = None
            self._gazetteer = None
            self.noisy = None
            self.world = None
            self._failures = _Failures()
            self._rng = random.Random(0)
            self.requests.clear()
            self.max_in_flight_seen = 0
        self.batch_api.reset()

    # ---- observation

    @property
    def calls(self) -> int:
        """Chat-completion requests received, including ones still in flight."""
        with self._lock:
            return len(self.requests)

    def count(self, status: int | None = None) -> int:
        """Requests answered with ``status``; with None, all received (same as ``calls``)."""
        with self._lock:
            if status is None:
                return len(self.requests)
            return sum(1 for r in self.requests if r["_status"] == status)

    def usage(self) -> dict[str, int]:
        """Tokens of the chat completions answered so far, as their `usage` reported them."""
        with self._lock:
            usages = [r["_usage"] for r in self.requests if r.get("_usage")]
        return {key: sum(int(u.get(key) or 0) for u in usages) for key in ("prompt_tokens", "completion_tokens")}

    def stats(self) -> dict[str, Any]:
        batches = [batch.to_object() for batch in list(self.batch_api.batches.values())]
        usage = self.usage()
        with self._lock:
            by_status: dict[str, int] = {}
            for record in self.requests:
                if record["_status"] is not None:
                    key = str(record["_status"])
                    by_status[key] = by_status.get(key, 0) + 1
            return {
                "calls": len(self.requests),
                "by_status": by_status,
                "max_in_flight_seen": self.max_in_flight_seen,
                "in_flight": self._in_flight,
                "requests": [dict(r) for r in self.requests],
                "usage": usage,
                "batches": batches,
            }

    # ---- request handling (called from handler threads)

    def _record(
        self,
        body: dict[str, Any],
        path: str,
        received: float,
        status: int | None,
        client: tuple[str, int],
    ) -> dict[str, Any]:
        # The request body itself is the record, so tests read e.g. requests[0]["response_format"];
        # bookkeeping lives under underscore keys that no OpenAI request uses.
        body["_path"] = path
        body["_received_at"] = received
        body["_answered_at"] = time.time() if status is not None else None
        body["_status"] = status
        # The client's address:port identifies the TCP connection, which shows whether keep-alive is reused.
        body["_client"] = f"{client[0]}:{client[1]}"
        with self._lock:
            self.requests.append(body)
        return body

    def _finish(self, record: dict[str, Any], status: int) -> None:
        with self._lock:
            record["_status"] = status
            record["_answered_at"] = time.time()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _slot(self) -> _SlotGuard:
        return _SlotGuard(self)

    def _acquire_slot(self) -> None:
        with self._slots:
            while (
                self._max_concurrent is not None
                and self._in_flight >= self._max_concurrent
                and not self._stopping.is_set()
            ):
                self._slots.wait()
            self._in_flight += 1
            with self._lock:
                self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
            self._slots.notify_all()  # wakes gated answers waiting for this many in flight

    def _await_gate(self, size: int, timeout: float = 5.0) -> None:
        # The peak seen since the last reset, not the count now: once reached, every held answer goes,
        # even if one of them was quicker to finish and lowered the count before the others woke.
        deadline = time.monotonic() + timeout
        with self._slots:
            while self.max_in_flight_seen < size and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._slots.wait(left)

    def _release_slot(self) -> None:
        with self._slots:
            self._in_flight -= 1
            self._slots.notify_all()  # gated answers wait on the same condition as callers waiting for a slot

    def _batch_line(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request line of a batch: the reply the rules choose, without latency (a batch takes hours)."""
        reply = self._choose_reply(body)
        if reply.status >= 400:
            return reply.status, error_body(reply.status, reply.error_message or f"scripted HTTP {reply.status}")
        return 200, _completion(body, reply)

    def _choose_reply(self, body: dict[str, Any]) -> Reply:
        text = _message_text(body)
        with self._lock:
            failures = self._failures
            if failures.rate_429 or failures.rate_500:
                roll = self._rng.random()
                if roll < failures.rate_429:
                    headers = (
                        {} if failures.retry_after is None else {"Retry-After": _format_seconds(failures.retry_after)}
                    )
                    return Reply(status=429, headers=headers, error_message="injected rate limit")
                if roll < failures.rate_429 + failures.rate_500:
                    return Reply(status=500, error_message="injected server error")
            for rule in self._rules:
                if not rule.exhausted() and rule.contains in text:
                    return rule.take()
            default = self._default
            gazetteer = self._gazetteer
            noisy = self.noisy
        choices = noisy.choices(body) if noisy is not None else None
        if choices:
            return Reply(content=choices[0]["content"], logprobs=choices[0].get("logprobs"), more_choices=choices[1:])
        if default is None and self.world is not None and (content := self.world.answer(body, text)) is not None:
            return Reply(content=content)
        if default is None and gazetteer is not None:
            content = gazetteer.answer(text, default_content(body))
            return Reply() if content is None else Reply(content=content)
        if default is None:
            return Reply()
        if isinstance(default, Reply):
            return default
        # Called outside the lock so a slow or re-entrant factory cannot stall other requests.
        reply = default(body)
        if not isinstance(reply, Reply):
            raise TypeError(f"default reply factory returned {type(reply).__name__}, expected Reply")
        return reply


class _SlotGuard:
    def __init__(self, fake: FakeLLMServer) -> None:
        self._fake = fake

    def __enter__(self) -> None:
        self._fake._acquire_slot()

    def __exit__(self, *exc: object) -> None:
        self._fake._release_slot()


# --------------------------------------------------------------------------- client


class _Unset:
    """Marks "leave unchanged", since None is a meaningful max_concurrent (no limit)."""


_UNSET = _Unset()


class LLMServerControl:
    """Drives a ``FakeLLMServer`` running in another process through its control endpoints."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        # Accept either the server root or the /v1 base URL, whichever the caller has at hand.
        url = url.rstrip("/")
        self.url = url.removesuffix("/v1")
        self.timeout = timeout
        # Imported here so the server side (python -m testkit.llm_server) stays standard-library only.
        import requests

        self._session = requests.Session()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _post(self, endpoint: str, payload: Any) -> dict[str, Any]:
        response = self._session.post(f"{self.url}/_control/{endpoint}", json=payload, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._post("reset", None)

    def add_rule(
        self,
        contains: str,
        reply: Reply | Mapping[str, Any] | list[Reply | Mapping[str, Any]],
        *,
        times: int | None = None,
    ) -> None:
        replies = reply if isinstance(reply, list) else [reply]
        encoded = [r.to_dict() if isinstance(r, Reply) else dict(r) for r in replies]
        self._post(
            "rule",
            {
                "contains": contains,
                "reply": encoded if isinstance(reply, list) else encoded[0],
                "times": times,
            },
        )

    def set_default(self, reply: Reply | Mapping[str, Any] | None) -> None:
        self._post("default", reply.to_dict() if isinstance(reply, Reply) else reply)

    def inject_failures(
        self,
        *,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        retry_after: float | None = 1.0,
        seed: int = 0,
    ) -> None:
        self._post("failures", {"rate_429": rate_429, "rate_500": rate_500, "retry_after": retry_after, "seed": seed})

    def set_latency(
        self, latency: float | None = None, *, max_concurrent: int | _Unset | None = _UNSET
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if latency is not None:
            payload["latency"] = latency
        if not isinstance(max_concurrent, _Unset):
            payload["max_concurrent"] = max_concurrent
        return self._post("latency", payload)

    def set_batches(self, *, hold: bool | None = None, expire_after: int | _Unset | None = _UNSET) -> dict[str, Any]:
        """Keep batches in progress (`hold`), or expire them after running `expire_after` lines."""
        payload: dict[str, Any] = {} if hold is None else {"hold": hold}
        if not isinstance(expire_after, _Unset):
            payload["expire_after"] = expire_after
        return self._post("batches", payload)

    def set_context(self, context_tokens: int | None) -> dict[str, Any]:
        return self._post("context", {"context_tokens": context_tokens})

    def set_gazetteer(self, gazetteer: Gazetteer | None) -> None:
        self._post("gazetteer", None if gazetteer is None else gazetteer.to_dict())

    def set_noisy(self, model: Mapping[str, Any] | None) -> None:
        """The noisy-model mode (testkit/noisy_model.py, `NoisyModel.from_dict`'s shape); None: off."""
        self._post("noisy", model)

    def stats(self) -> dict[str, Any]:
        response = self._session.get(f"{self.url}/_control/stats", timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers, for callers that just spawned it as a subprocess."""
        import requests

        deadline = time.monotonic() + timeout
        while True:
            try:
                self._session.get(f"{self.url}/v1/models", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._session.close()


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--max-concurrent", type=int, default=None, help="requests processed at once; the rest queue")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="refuse longer prompts with HTTP 400 context_length_exceeded, as OpenAI does")
    parser.add_argument("--chars-per-token", type=float, default=None,
                        help="count (and bill) prompt tokens as characters / this, not as OpenAI's tokenizer does")
    parser.add_argument("--style", default=None,
                        help="dress unscripted answers like a real model, e.g. think+fence (testkit/reply_styles.py)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")

    server = FakeLLMServer(args.host, args.port, latency=args.latency, max_concurrent=args.max_concurrent,
                           context_tokens=args.context_tokens, chars_per_token=args.chars_per_token)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.style:
        server.set_default(Reply(style=args.style))
    server.start()
    # Printed (and flushed) so a parent process can wait for this line before sending traffic.
    print(f"fake LLM server listening on {server.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
