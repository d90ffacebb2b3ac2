"""Provider batches submitted and not yet used, kept across restarts so that a run resumes polling them.

A batch takes minutes to hours. Its id is written here the moment the provider accepts it, with
the cache keys of its requests; a run that is stopped and started again finds the batches that
hold the requests it needs and polls those instead of paying for them twice. A batch is closed
once a run has used its answers (they are in the response cache by then). Stored next to the
cache: a SQLite file in CACHE_DIR, or Redis when CACHE_URL is set.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .cache import RedisConnection, SQLiteFile

# OpenAI deletes batch files after 30 days; an older batch cannot be read any more.
MAX_AGE = 30 * 86_400


@dataclass(frozen=True)
class ProviderBatchRecord:
    id: str
    name: str  # the model name whose requests it holds
    model: str  # the LiteLLM model string it was sent to
    api_base: str | None
    keys: tuple[str, ...]  # the cache keys of its requests (its lines' custom_id)
    created: float
    project: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ProviderBatchRecord:
        data = json.loads(raw)
        return cls(**{**data, "keys": tuple(data["keys"])})

    def same_target(self, model: str, api_base: str | None) -> bool:
        return self.model == model and (self.api_base or None) == (api_base or None)


class ProviderBatchStore(Protocol):
    def add(self, record: ProviderBatchRecord) -> None: ...
    def open(self) -> list[ProviderBatchRecord]: ...
    def close(self, batch_id: str) -> None: ...
    def disconnect(self) -> None: ...


def _fresh(records: list[ProviderBatchRecord]) -> list[ProviderBatchRecord]:
    oldest = time.time() - MAX_AGE
    return sorted((r for r in records if r.created >= oldest), key=lambda r: r.created)


class SQLiteProviderBatchStore(SQLiteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "CREATE TABLE IF NOT EXISTS batches"
                               " (id TEXT PRIMARY KEY, body TEXT NOT NULL, closed REAL)")

    def add(self, record: ProviderBatchRecord) -> None:
        self._connect().execute("INSERT OR REPLACE INTO batches (id, body, closed) VALUES (?, ?, NULL)",
                                (record.id, record.to_json()))

    def open(self) -> list[ProviderBatchRecord]:
        rows = self._connect().execute("SELECT body FROM batches WHERE closed IS NULL").fetchall()
        return _fresh([ProviderBatchRecord.from_json(row[0]) for row in rows])

    def close(self, batch_id: str) -> None:
        self._connect().execute("UPDATE batches SET closed = ? WHERE id = ?", (time.time(), batch_id))


class RedisProviderBatchStore(RedisConnection):
    def __init__(self, url: str, prefix: str = "llm-backend:") -> None:
        super().__init__(url)
        self._key = f"{prefix}open-batches"

    def add(self, record: ProviderBatchRecord) -> None:
        self._redis.hset(self._key, record.id, record.to_json())

    def open(self) -> list[ProviderBatchRecord]:
        return _fresh([ProviderBatchRecord.from_json(raw) for raw in self._redis.hgetall(self._key).values()])

    def close(self, batch_id: str) -> None:
        self._redis.hdel(self._key, batch_id)


def open_provider_batch_store(cache_dir: Path, cache_url: str | None) -> ProviderBatchStore:
    if cache_url:
        return RedisProviderBatchStore(cache_url)
    return SQLiteProviderBatchStore(Path(cache_dir) / "batches.sqlite3")


# The names before "provider" was spelled out (every batch here is a provider's Batch API batch).
BatchRecord = ProviderBatchRecord
open_batch_store = open_provider_batch_store
