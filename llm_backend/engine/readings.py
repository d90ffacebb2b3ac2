"""The readings of the replies this process has read, so that no reply is read twice.

Reading a reply (core/reading.py, then validation) is the costly step of turning it into an answer, and
the same reply comes back again and again: every cache hit, every re-run, each sample of a cached
confidence request. A reading is a pure function of the reply and the config, so it is kept here by the
reply's cache key and the config, and used again only for the very same reply text (least recently
used out, a bounded number).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..core.answer import ReadAnswer, read_answer
from ..core.config import LabelConfig

READINGS_KEPT = 2048  # replies whose reading is kept; a reading is a few kB, so this stays a few MB at most

_Key = tuple[str, LabelConfig]


class Readings:
    """Kept readings by (cache key, config), each with the reply text it was read from."""

    def __init__(self, size: int = READINGS_KEPT) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._kept: OrderedDict[_Key, tuple[str | None, str | None, ReadAnswer]] = OrderedDict()

    def read(self, key: str, config: LabelConfig, content: str | None, reasoning: str | None = None) -> ReadAnswer:
        """The reply under `key` read for `config`: as it was read before when it is the same reply, else now."""
        kept = self.get(key, config, content, reasoning)
        if kept is not None:
            return kept
        reading = read_answer(config, content, reasoning)
        self.keep(key, config, content, reasoning, reading)
        return reading

    def get(self, key: str, config: LabelConfig, content: str | None, reasoning: str | None = None
            ) -> ReadAnswer | None:
        with self._lock:
            kept = self._kept.get((key, config))
            if kept is None or kept[0] != content or kept[1] != reasoning:
                return None
            self._kept.move_to_end((key, config))
            return kept[2]

    def keep(self, key: str, config: LabelConfig, content: str | None, reasoning: str | None,
             reading: ReadAnswer) -> None:
        with self._lock:
            self._kept[(key, config)] = (content, reasoning, reading)
            self._kept.move_to_end((key, config))
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
