"""A label config resolved for one task: what a control is asked about that the task's data gives.

Label Studio reads some controls' options from each task (`<Choices value="$options">`, dynamic
labels), and a perRegion control on a <Chat> is asked about that task's messages, so what the model
may answer, the answer's JSON schema and its validation differ from task to task. The parsed config
keeps such a control with nothing to choose from (`Control.task_options`); `for_task` asks each one's
spec to read it from the task (`ControlSpec.for_task`). A task whose data does not hold what a control
needs gets a config carrying the `problems`, which reading the task reports as that task's error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config_types import Control, LabelConfig
from .controls.registry import spec_for


def _resolved(config: LabelConfig, control: Control, data: dict[str, Any], problems: list[str]) -> Control | None:
    try:
        return spec_for(control.kind).for_task(control, config.objects, data)
    except ValueError as exc:
        problems.append(f"control \"{control.name}\": {exc}")
        return control


def for_task(config: LabelConfig, task: dict[str, Any]) -> LabelConfig:
    """The config as this task shows it (the config itself when no control reads the task)."""
    if not any(control.task_options for control in config.controls):
        return config
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    problems: list[str] = []
    resolved = [_resolved(config, control, data, problems) if control.task_options else control
                for control in config.controls]
    controls = tuple(control for control in resolved if control is not None)
    if not controls and not problems:
        asked = ", ".join(control.name for control in config.controls)
        problems.append(f"this task gives none of its controls anything to ask about ({asked})")
    return dataclasses.replace(config, controls=controls, problems=tuple(problems))
