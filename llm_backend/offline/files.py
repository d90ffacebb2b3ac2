"""Task files: reading what users and Label Studio exports give us, writing Label Studio's import format."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..engine.outcome import TaskOutcome
from ..errors import BadRequestError

JSONL_SUFFIXES = (".jsonl", ".ndjson")


class TaskFileError(BadRequestError):
    """A tasks or predictions file that cannot be used; the message names the file and position."""

    code = "invalid_task_file"


ACCEPTED = ("accepted: a JSON list of tasks (a Label Studio JSON export, or plain {\"text\": ...} objects), "
            "one task object, or JSONL (.jsonl, one task per line); CSV and TSV are not read: save it as JSON")


def _json_error(name: str, exc: json.JSONDecodeError, line: int | None = None) -> TaskFileError:
    return TaskFileError(f"{name} line {line or exc.lineno}: not JSON ({exc.msg}, column {exc.colno}); {ACCEPTED}")


def _as_task(item: object, where: str) -> dict[str, Any]:
    """Label Studio's import rules: a dict with a "data" object is a task, any other dict is its data."""
    if not isinstance(item, dict):
        raise TaskFileError(f"{where}: expected a task object, got {type(item).__name__}")
    if "data" not in item:
        return {"data": item}
    if not isinstance(item["data"], dict):
        raise TaskFileError(f"{where}: \"data\" must be an object, got {type(item['data']).__name__}")
    return item


def read_tasks(path: Path) -> list[dict[str, Any]]:
    """Tasks from a JSON list (a Label Studio export, or plain data dicts) or a JSONL file."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except OSError as exc:
        raise TaskFileError(f"{name}: cannot be read ({exc.strerror})") from None
    if path.suffix.lower() in JSONL_SUFFIXES:
        tasks = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _json_error(name, exc, number) from None
            tasks.append(_as_task(item, f"{name} line {number}"))
    else:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(name, exc) from None
        if isinstance(body, dict) and "data" in body:
            body = [body]  # one task on its own
        if not isinstance(body, list):
            raise TaskFileError(f"{name}: expected a JSON list of tasks, got {type(body).__name__}; {ACCEPTED}")
        tasks = [_as_task(item, f"{name} item {index + 1}") for index, item in enumerate(body)]
    if not tasks:
        raise TaskFileError(f"{name}: holds no tasks")
    return tasks


def write_json(path: Path, value: Any) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            if isinstance(value, list):
                # One task per line: diffable and greppable, a third of the size of indented JSON.
                file.write("[\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in value) + "\n]\n")
            else:
                json.dump(value, file, ensure_ascii=False, indent=1)
                file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def prediction_item(outcome: TaskOutcome, model_version: str) -> dict[str, Any] | None:
    """One entry of a task's `predictions` list, or None when the task failed."""
    item = outcome.to_result(model_version)
    if "result" not in item:
        return None
    ordered = {"model_version": model_version, "result": item["result"]}
    if "score" in item:
        ordered["score"] = item["score"]
    return ordered


def import_task(task: dict[str, Any], outcome: TaskOutcome | None, model_version: str) -> dict[str, Any]:
    """A task in Label Studio's import format. Label Studio gives imported tasks new ids; the
    original id is kept anyway so `eval --predictions` can match this file to an export."""
    item: dict[str, Any] = {}
    if "id" in task:
        item["id"] = task["id"]
    item["data"] = task["data"]
    if task.get("meta"):
        item["meta"] = task["meta"]
    prediction = prediction_item(outcome, model_version) if outcome is not None else None
    item["predictions"] = [prediction] if prediction else []
    return item
