"""Few-shot memory: what annotators submitted, frozen into snapshots, picked by similarity.

Annotation webhooks add, update or remove a project's examples (an annotated task's input text,
the human answer in the same JSON shape the model is asked for, and the annotation's own regions,
offsets included, which the "Train" evaluation scores predictions against). Predictions never read the
live set: they read the project's latest *snapshot*, taken when the user presses "Train" or after
FEWSHOT_SNAPSHOT_EVERY new annotations. The snapshot id is part of `model_version`, so Label
Studio's predictions stay comparable until the user asks for a new version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from rapidfuzz import fuzz, process

from ..core.config import LabelConfig
from ..core.controls import MISSING, spec_for
from .cache import RedisConnection, SQLiteFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    task_id: str
    annotation_id: str
    text: str
    answer: dict[str, Any]
    data: dict[str, Any] | None = None  # the task's data, so "Train" can re-predict it for the evaluation
    updated: float = 0.0
    result: list[dict[str, Any]] | None = None  # the annotation's regions, which "Train" evaluates against

    @property
    def answer_json(self) -> str:
        return json.dumps(self.answer, ensure_ascii=False)


@dataclass(frozen=True)
class Snapshot:
    id: str
    created: float
    examples: tuple[Example, ...]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "examples": len(self.examples)}


def example_text(config: LabelConfig, data: dict[str, Any]) -> str:
    """The input the example shows and is compared by: the text fields the config reads."""
    parts = []
    for obj in config.objects.values():
        value = data.get(obj.data_key) if obj.data_key else None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            parts.append(str(value))
    return "\n".join(parts)


def result_to_answer(config: LabelConfig, result: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A Label Studio annotation result in the answer's JSON shape, or None if it cannot be one
    (a required value left empty): such an annotation would teach the model an invalid answer."""
    answer: dict[str, Any] = {}
    for control in config.controls:
        regions = [r for r in result if isinstance(r, dict) and r.get("from_name") == control.name]
        value = spec_for(control.kind).answer_from_regions(control, regions)
        if value is MISSING:
            return None
        answer[control.name] = value
    return answer


def snapshot_id(examples: tuple[Example, ...]) -> str:
    digest = hashlib.sha256(json.dumps([asdict(e) | {"updated": 0} for e in examples], sort_keys=True).encode())
    return f"{len(examples)}ex-{digest.hexdigest()[:8]}"


def select_examples(examples: tuple[Example, ...], query: str, *, k: int, budget_tokens: int,
                    exclude_task: str | None = None) -> list[Example]:
    """The k most similar examples (rapidfuzz token-set ratio) that fit in the token budget.

    The task itself is never its own example: that would leak the answer into its prediction
    and into the evaluation."""
    pool = [e for e in examples if e.task_id != exclude_task]
    if k <= 0 or not pool:
        return []
    ranked = process.extract(query, [e.text for e in pool], scorer=fuzz.token_set_ratio, limit=len(pool))
    chosen, used = [], 0
    for _text, _score, index in ranked:
        example = pool[index]
        cost = (len(example.text) + len(example.answer_json)) // 4 + 10  # ~4 characters a token
        if used + cost > budget_tokens:
            continue
        chosen.append(example)
        used += cost
        if len(chosen) == k:
            break
    return chosen


class ExampleStore(Protocol):
    def put(self, project: str, example: Example) -> None: ...
    def delete_annotation(self, project: str | None, annotation_id: str) -> int: ...
    def examples(self, project: str) -> tuple[Example, ...]: ...
    def take_snapshot(self, project: str) -> Snapshot: ...
    def snapshots(self, project: str) -> list[Snapshot]: ...
    def latest(self, project: str) -> Snapshot | None: ...
    def count_since(self, project: str, since: float) -> int: ...
    def disconnect(self) -> None: ...


def _example(data: dict[str, Any]) -> Example:
    return Example(**data)


class SQLiteExampleStore(SQLiteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            "CREATE TABLE IF NOT EXISTS examples (project TEXT NOT NULL, task_id TEXT NOT NULL, annotation_id TEXT,"
            " body TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (project, task_id))",
            "CREATE TABLE IF NOT EXISTS snapshots (project TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL,"
            " body TEXT NOT NULL, PRIMARY KEY (project, id))",
        )
        self._latest: dict[str, tuple[float, Snapshot | None]] = {}

    def put(self, project: str, example: Example) -> None:
        self._connect().execute(
            "INSERT OR REPLACE INTO examples (project, task_id, annotation_id, body, updated) VALUES (?, ?, ?, ?, ?)",
            (project, example.task_id, example.annotation_id, json.dumps(asdict(example)), example.updated),
        )

    def delete_annotation(self, project: str | None, annotation_id: str) -> int:
        if project is None:
            cursor = self._connect().execute("DELETE FROM examples WHERE annotation_id = ?", (annotation_id,))
        else:
            cursor = self._connect().execute("DELETE FROM examples WHERE project = ? AND annotation_id = ?",
                                             (project, annotation_id))
        return cursor.rowcount

    def examples(self, project: str) -> tuple[Example, ...]:
        rows = self._connect().execute("SELECT body FROM examples WHERE project = ? ORDER BY task_id",
                                       (project,)).fetchall()
        return tuple(_example(json.loads(row[0])) for row in rows)

    def take_snapshot(self, project: str) -> Snapshot:
        examples = self.examples(project)
        snapshot = Snapshot(snapshot_id(examples), time.time(), examples)
        self._connect().execute(
            "INSERT OR REPLACE INTO snapshots (project, id, created, body) VALUES (?, ?, ?, ?)",
            (project, snapshot.id, snapshot.created, json.dumps([asdict(e) for e in examples])),
        )
        self._latest.pop(project, None)
        return snapshot

    def snapshots(self, project: str) -> list[Snapshot]:
        rows = self._connect().execute("SELECT id, created, body FROM snapshots WHERE project = ? ORDER BY created",
                                       (project,)).fetchall()
        return [Snapshot(row[0], row[1], tuple(_example(e) for e in json.loads(row[2]))) for row in rows]

    def latest(self, project: str) -> Snapshot | None:
        # Asked for on every /setup and /predict: a cheap query decides whether the cached copy is current.
        row = self._connect().execute("SELECT MAX(created) FROM snapshots WHERE project = ?", (project,)).fetchone()
        newest = row[0] if row else None
        if newest is None:
            return None
        cached = self._latest.get(project)
        if cached and cached[0] == newest:
            return cached[1]
        found = next((s for s in reversed(self.snapshots(project)) if s.created == newest), None)
        self._latest[project] = (newest, found)
        return found

    def count_since(self, project: str, since: float) -> int:
        row = self._connect().execute("SELECT COUNT(*) FROM examples WHERE project = ? AND updated > ?",
                                      (project, since)).fetchone()
        return int(row[0])


class RedisExampleStore(RedisConnection):
    """The same store on Redis, so replicas share examples and snapshots."""

    def __init__(self, url: str, prefix: str = "llm-backend:") -> None:
        super().__init__(url)
        self.prefix = prefix

    def _examples_key(self, project: str) -> str:
        return f"{self.prefix}examples:{project}"

    def _snapshots_key(self, project: str) -> str:
        return f"{self.prefix}snapshots:{project}"

    def put(self, project: str, example: Example) -> None:
        self._redis.hset(self._examples_key(project), example.task_id, json.dumps(asdict(example)))
        self._redis.sadd(f"{self.prefix}projects", project)

    def delete_annotation(self, project: str | None, annotation_id: str) -> int:
        projects = [project] if project else [p.decode() for p in self._redis.smembers(f"{self.prefix}projects")]
        removed = 0
        for name in projects:
            for example in self.examples(name):
                if example.annotation_id == annotation_id:
                    removed += int(self._redis.hdel(self._examples_key(name), example.task_id))
        return removed

    def examples(self, project: str) -> tuple[Example, ...]:
        raw = self._redis.hgetall(self._examples_key(project))
        return tuple(sorted((_example(json.loads(v)) for v in raw.values()), key=lambda e: e.task_id))

    def take_snapshot(self, project: str) -> Snapshot:
        examples = self.examples(project)
        snapshot = Snapshot(snapshot_id(examples), time.time(), examples)
        body = {"id": snapshot.id, "created": snapshot.created, "examples": [asdict(e) for e in examples]}
        self._redis.rpush(self._snapshots_key(project), json.dumps(body))
        return snapshot

    def snapshots(self, project: str) -> list[Snapshot]:
        items = [json.loads(raw) for raw in self._redis.lrange(self._snapshots_key(project), 0, -1)]
        return [Snapshot(i["id"], i["created"], tuple(_example(e) for e in i["examples"])) for i in items]

    def latest(self, project: str) -> Snapshot | None:
        raw = self._redis.lindex(self._snapshots_key(project), -1)
        if raw is None:
            return None
        item = json.loads(raw)
        return Snapshot(item["id"], item["created"], tuple(_example(e) for e in item["examples"]))

    def count_since(self, project: str, since: float) -> int:
        return sum(e.updated > since for e in self.examples(project))


def open_example_store(cache_dir: Path, cache_url: str | None) -> SQLiteExampleStore | RedisExampleStore:
    if cache_url:
        return RedisExampleStore(cache_url)
    return SQLiteExampleStore(Path(cache_dir) / "examples.sqlite3")
