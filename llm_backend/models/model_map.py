"""LiteLLM's model map (prices, context windows, capabilities), read without importing LiteLLM.

LiteLLM ships the map as a JSON file inside its package; reading that file takes milliseconds,
while `import litellm` takes seconds, which `/setup` (3 s) and planning a short task cannot afford.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def model_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def map_keys(model: str) -> tuple[str, ...]:
    """The keys a LiteLLM model string may have in the map: as given, without its provider, and
    `ollama_chat/x` under `ollama/x` (the map lists Ollama models once)."""
    bare = model.split("/", 1)[-1]
    keys = [model, bare]
    if model.startswith("ollama_chat/"):
        keys.append(f"ollama/{bare}")
    return tuple(dict.fromkeys(keys))


def model_entry(model: str) -> dict[str, Any] | None:
    """The map's entry for a model string, or None when LiteLLM does not know the model."""
    table = model_map()
    for key in map_keys(model):
        entry = table.get(key)
        if isinstance(entry, dict):
            return entry
    return None
