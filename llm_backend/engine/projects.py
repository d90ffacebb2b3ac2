"""What the backend knows about each Label Studio project, shared by every worker and kept across restarts.

`/setup` records a project's label config, its model choice (Label Studio's "Extra params") and
its model_version; "Train" records the latest evaluation. The state lives in the same store as the
cache (a SQLite file in CACHE_DIR, or Redis when CACHE_URL is set), so a `/predict` answered by
another gunicorn worker, or after a restart before Label Studio calls `/setup` again, still uses
the model the project chose.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..models.router import ModelChoice
from .cache import RedisConnection, SQLiteFile


def project_id(raw: object) -> str | None:
    """Label Studio sends project as "<id>.<created unix time>"; we key prompts and state by the id."""
    if raw is None:
        return None
    text = str(raw).split(".", 1)[0].strip()
    return text if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) else None


@dataclass(frozen=True)
class ProjectState:
    project: str
    label_config: str | None = None
    choice: ModelChoice = field(default_factory=ModelChoice)
    model_version: str | None = None
    evaluation: dict[str, Any] | None = None
    updated: float = 0.0
    calibration: dict[str, Any] | None = None  # `llm-backend calibrate`'s maps (core/calibration.Calibration)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ProjectState:
        data = json.loads(raw)
        choice = data.pop("choice", None) or {}
        return cls(**data, choice=ModelChoice(choice.get("model"), choice.get("params") or {}))


class ProjectStore(Protocol):
    def get(self, project: str) -> ProjectState | None: ...
    def put(self, state: ProjectState) -> None: ...
    def all(self) -> list[ProjectState]: ...
    def disconnect(self) -> None: ...


def update(store: ProjectStore, project: str, **changes: Any) -> ProjectState:
    """Change some fields of a project's state (creating it), stamped with the time."""
    current = store.get(project) or ProjectState(project)
    state = ProjectState(**{**asdict(current), "choice": current.choice, **changes, "updated": time.time()})
    store.put(state)
    return state


class SQLiteProjectStore(SQLiteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "CREATE TABLE IF NOT EXISTS projects (project TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def get(self, project: str) -> ProjectState | None:
        row = self._connect().execute("SELECT body FROM projects WHERE project = ?", (project,)).fetchone()
        return ProjectState.from_json(row[0]) if row else None

    def put(self, state: ProjectState) -> None:
        self._connect().execute("INSERT OR REPLACE INTO projects (project, body) VALUES (?, ?)",
                                (state.project, state.to_json()))

    def all(self) -> list[ProjectState]:
        rows = self._connect().execute("SELECT body FROM projects ORDER BY project").fetchall()
        return [ProjectState.from_json(row[0]) for row in rows]


class RedisProjectStore(RedisConnection):
    def __init__(self, url: str, prefix: str = "llm-backend:") -> None:
        super().__init__(url)
        self._key = f"{prefix}projects-state"

    def get(self, project: str) -> ProjectState | None:
        raw = self._redis.hget(self._key, project)
        return ProjectState.from_json(raw) if raw else None

    def put(self, state: ProjectState) -> None:
        self._redis.hset(self._key, state.project, state.to_json())

    def all(self) -> list[ProjectState]:
        return sorted((ProjectState.from_json(raw) for raw in self._redis.hgetall(self._key).values()),
                      key=lambda state: state.project)


def open_project_store(cache_dir: Path, cache_url: str | None) -> ProjectStore:
    if cache_url:
        return RedisProjectStore(cache_url)
    return SQLiteProjectStore(Path(cache_dir) / "projects.sqlite3")


def certified_threshold(state: ProjectState | None) -> float | None:
    """The score `accept` last certified for the project (stored beside its calibration), if any."""
    accept = ((state.calibration or {}).get("accept") or {}) if state else {}
    threshold = accept.get("threshold")
    return float(threshold) if isinstance(threshold, (int, float)) else None
