"""Problems the whole backend has right now (not one task's): what the status page shows at the top.

Filled by whoever finds one: the whole-batch failure check of /predict, and start-up checks (a
missing API key, an unreachable LLM_API_BASE) that report here besides logging. Kept per process,
in memory: a restart that fixes the configuration starts clean.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Problem:
    key: str  # one entry per key: reporting it again updates it
    title: str
    message: str
    fix: str
    since: float
    last: float
    count: int = 1


class Problems:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, Problem] = {}

    def report(self, key: str, title: str, message: str, fix: str) -> Problem:
        now = time.time()
        with self._lock:
            known = self._problems.get(key)
            problem = (replace(known, title=title, message=message, fix=fix, last=now, count=known.count + 1)
                       if known else Problem(key, title, message, fix, now, now))
            self._problems[key] = problem
            return problem

    def clear(self, key: str) -> None:
        with self._lock:
            self._problems.pop(key, None)

    def all(self) -> list[Problem]:
        with self._lock:
            return sorted(self._problems.values(), key=lambda problem: problem.since)
