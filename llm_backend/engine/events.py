"""Label Studio events, handled in the background (webhooks get 1 s and must be answered at once).

ANNOTATION_CREATED / ANNOTATION_UPDATED (and ANNOTATIONS_CREATED, in bulk) store the annotated task as a
few-shot example, unless the annotation was made from a prediction (`parent_prediction`),
ANNOTATIONS_DELETED removes it, START_TRAINING (the "Train" button) freezes the examples into a
snapshot (a new model_version) and evaluates the prompts with and without them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..core.config import parse_label_config
from ..errors import LLMBackendError
from .examples import Example, ExampleStore, example_text, result_to_answer
from .pools import LazyPool
from .projects import project_id

log = logging.getLogger(__name__)


def _project(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(project id, label config) from an event body, whatever shape the event uses."""
    project = body.get("project")
    if isinstance(project, dict):
        return project_id(project.get("id")), project.get("label_config")
    return project_id(project), None


class EventHandler:
    def __init__(self, store: ExampleStore, *, snapshot_every: int,
                 on_training: Callable[[str, str | None], None] | None = None) -> None:
        self.store = store
        self.snapshot_every = snapshot_every
        self.on_training = on_training
        self._lock = threading.Lock()
        self._pool = LazyPool(1, "llm-events")
        self._pending: list[Future[None]] = []

    def submit(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._pool.get().submit(self.handle, body))

    def wait(self, timeout: float = 30) -> None:
        """Block until queued events are handled (tests, shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout=timeout)

    def handle(self, body: dict[str, Any]) -> None:
        """Handle one event now (`submit` queues it for the background thread)."""
        action = body.get("action")
        try:
            if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
                self._annotation(body)
            elif action == "ANNOTATIONS_CREATED":  # in bulk: an import, or "Create Annotations From Predictions"
                self._annotations(body)
            elif action == "ANNOTATIONS_DELETED":
                self._deleted(body)
            elif action == "START_TRAINING":
                self._training(body)
        except Exception:  # one bad event must not stop the queue
            log.exception("webhook %s could not be handled", action)

    def _annotation(self, body: dict[str, Any]) -> None:
        project, xml = _project(body)
        annotation, task = body.get("annotation") or {}, body.get("task") or {}
        if project is None or not isinstance(xml, str) or not isinstance(task.get("data"), dict):
            log.info("annotation webhook without project, label config or task data: ignored")
            return
        if annotation.get("was_cancelled"):
            self.store.delete_annotation(project, str(annotation.get("id")))
            return
        if annotation.get("parent_prediction") is not None:
            # Made from a prediction (`accept --apply`, or a prediction submitted as it was): the model's own output.
            log.info("annotation %s of task %s comes from a prediction: not used as an example", annotation.get("id"),
                     task.get("id"))
            return
        try:
            config = parse_label_config(xml)
        except LLMBackendError as exc:
            log.info("annotation webhook for project %s: %s", project, exc.message)
            return
        answer = result_to_answer(config, annotation.get("result") or [])
        if answer is None:
            log.info("annotation %s of task %s leaves a required control empty: not used as an example",
                     annotation.get("id"), task.get("id"))
            return
        result = [region for region in annotation.get("result") or [] if isinstance(region, dict)]
        self.store.put(project, Example(str(task.get("id")), str(annotation.get("id")),
                                        example_text(config, task["data"]), answer, task["data"], time.time(),
                                        result))
        if self.snapshot_every:
            latest = self.store.latest(project)
            since = latest.created if latest else 0.0
            if self.store.count_since(project, since) >= self.snapshot_every:
                snapshot = self.store.take_snapshot(project)
                log.info("project %s: snapshot %s after %d new annotations", project, snapshot.id,
                         self.snapshot_every)

    def _annotations(self, body: dict[str, Any]) -> None:
        tasks = {task.get("id"): task for task in body.get("task") or [] if isinstance(task, dict)}
        annotations = body.get("annotation") or []
        for annotation in annotations if isinstance(annotations, list) else []:
            if isinstance(annotation, dict):
                self._annotation({**body, "annotation": annotation, "task": tasks.get(annotation.get("task")) or {}})

    def _deleted(self, body: dict[str, Any]) -> None:
        project, _xml = _project(body)
        for item in body.get("annotations") or []:
            if isinstance(item, dict) and item.get("id") is not None:
                self.store.delete_annotation(project, str(item["id"]))

    def _training(self, body: dict[str, Any]) -> None:
        project, xml = _project(body)
        if project is None:
            return
        snapshot = self.store.take_snapshot(project)
        log.info("project %s: Train pressed; snapshot %s with %d examples", project, snapshot.id,
                 len(snapshot.examples))
        if self.on_training is not None:
            self.on_training(project, xml)
