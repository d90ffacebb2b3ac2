"""The demo model (`LLM_MODEL=demo`): an answer for any label config from simple rules, no model called.

Each control's spec gives its own demo value (see controls/demo_rules.py), so the answer is valid
for every control kind and goes through the same validation and region building as a model's.
"""

from __future__ import annotations

import json

from .config import LabelConfig
from .controls import RegionInputs, spec_for
from .controls.demo_rules import DEMO_MODEL

__all__ = ["DEMO_MODEL", "demo_reply", "is_demo"]


def is_demo(model: str | None) -> bool:
    return model == DEMO_MODEL


def demo_reply(config: LabelConfig, inputs: RegionInputs) -> str:
    """The reply text the demo model gives for one task: one JSON object, like a model's."""
    answer = {control.name: spec_for(control.kind).demo_answer(control, inputs) for control in config.controls}
    return json.dumps(answer, ensure_ascii=False)
