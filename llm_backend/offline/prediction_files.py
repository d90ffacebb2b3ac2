"""The predictions `eval --predictions` scores: from a file, completed through Label Studio's API when
the file lists them by id only.

Label Studio's exports come in two shapes. `GET /api/projects/<id>/export` (the Export button) and
a snapshot made without options list each task's predictions as ids (`"predictions": [17, 18]`);
a snapshot made with `{"serialization_options": {"predictions": {"only_id": false}}}`, and
`llm-backend predict`'s output, hold them in full. Ids are completed with
`GET /api/predictions?project=<id>` (one call per project) when LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY are set; otherwise the error says which export to make instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.evaluate import task_key
from ..label_studio import LabelStudioClient
from .files import TaskFileError

Result = list[dict[str, Any]]


def snapshot_hint(project: object = "<id>") -> str:
    return (f"export a snapshot with the predictions in full: POST /api/projects/{project}/exports with "
            '{"serialization_options": {"predictions": {"only_id": false}}}, then GET '
            f"/api/projects/{project}/exports/<export id>/download?exportType=JSON")


def ids_only(tasks: list[dict[str, Any]]) -> list[int]:
    """The prediction ids a file lists instead of predictions."""
    return [item for task in tasks for item in _ids(task)]


def fetch_listed(tasks: list[dict[str, Any]], client: LabelStudioClient) -> tuple[int, int]:
    """Replace prediction ids by the predictions Label Studio holds, in place; (fetched, missing)."""
    wanted = set(ids_only(tasks))
    found: dict[int, dict[str, Any]] = {}
    projects = {task.get("project") for task in tasks if wanted & set(_ids(task))}
    if None in projects:  # a task without its project (an older export): ask per task
        for task in tasks:
            if task.get("project") is None and wanted & set(_ids(task)):
                found.update(_by_id(client.predictions(task=task["id"])))
        projects.discard(None)
    for project in sorted(projects, key=str):
        found.update(_by_id(client.predictions(project=project)))
    for task in tasks:
        # An id Label Studio no longer has (a deleted prediction) is left out: there is nothing to score.
        task["predictions"] = [found[item] if isinstance(item, int) else item for item in task.get("predictions") or []
                               if isinstance(item, dict) or (isinstance(item, int) and item in found)]
    fetched = len(wanted & set(found))
    return fetched, len(wanted) - fetched


def _ids(task: dict[str, Any]) -> list[int]:
    return [item for item in task.get("predictions") or [] if isinstance(item, int) and not isinstance(item, bool)]


def _by_id(predictions: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(p["id"]): p for p in predictions if isinstance(p, dict) and isinstance(p.get("id"), int)}


def choose(path: Path, tasks: list[dict[str, Any]], annotated: list[str], version: str | None
           ) -> tuple[dict[str, Result | None], str]:
    """{task key: result} of one model_version, from tasks with `predictions` (an export, or `predict`'s output)."""
    entries = {task_key(task, index): [p for p in task.get("predictions") or [] if isinstance(p, dict)]
               for index, task in enumerate(tasks)}
    if not set(annotated) & set(entries):
        raise TaskFileError(f"{path}: no task matches an annotated task of the tasks file by id")
    versions = sorted({str(p.get("model_version")) for preds in entries.values() for p in preds})
    if version is None:
        if len(versions) > 1:
            raise TaskFileError(f"{path} holds predictions of {len(versions)} model versions "
                                f"({', '.join(versions)}); choose one with --model-version")
        if not versions:
            raise TaskFileError(f"{path}: no task has a prediction")
        version = versions[0]
    elif version not in versions:
        raise TaskFileError(f"{path} has no prediction with model_version {version} "
                            f"(it has: {', '.join(versions) or 'none'})")
    chosen: dict[str, Result | None] = {}
    for key, preds in entries.items():
        matching = [p for p in preds if str(p.get("model_version")) == version and isinstance(p.get("result"), list)]
        chosen[key] = matching[-1]["result"] if matching else None
    return chosen, version
