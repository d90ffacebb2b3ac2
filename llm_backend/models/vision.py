"""Whether a model can see images, decided without importing LiteLLM (/setup has 3 seconds).

LiteLLM ships its model map as a JSON file; we read that file directly. Local models (vLLM,
Ollama) are mostly absent from it, so well-known vision model names count as vision-capable, and
LLM_VISION=on/off overrides everything.
"""

from __future__ import annotations

import re

from ..core.demo import is_demo
from .model_map import model_map

_VISION_NAMES = re.compile(
    r"vision|[-_.]vl\b|-vl-|llava|pixtral|minicpm-v|qwen2(\.5)?-?vl|gemma-?3|llama-?4|internvl|molmo|idefics|"
    r"gpt-4o|gpt-4\.1|gpt-5|claude-3|claude-(sonnet|opus|haiku)-4|gemini",
    re.IGNORECASE,
)


def vision_support(model: str, mode: str = "auto") -> bool | None:
    """True / False when known, None when nothing says either way."""
    if mode in ("on", "off"):
        return mode == "on"
    if is_demo(model):
        return True  # its "boxes" need only the image's size
    table = model_map()
    for key in (model, model.split("/", 1)[-1]):
        entry = table.get(key)
        if isinstance(entry, dict) and "supports_vision" in entry:
            return bool(entry["supports_vision"])
    if _VISION_NAMES.search(model):
        return True
    return False if any(key in table for key in (model, model.split("/", 1)[-1])) else None


def deployments_support(models: tuple[str, ...], mode: str = "auto") -> bool | None:
    """For a routing-file name served by several deployments: False if any cannot see images."""
    answers = [vision_support(model, mode) for model in models]
    if False in answers:
        return False
    return True if answers and all(answers) else None
