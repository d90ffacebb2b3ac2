"""A label config resolved for one task: the options a control takes from the task's data.

Label Studio reads some controls' options from each task (`<Choices value="$options">`, dynamic
labels), so what the model may answer, the answer's JSON schema and its validation differ from task
to task. The parsed config keeps such a control with no options (`Control.task_options`);
`for_task` fills them from the task, each spec reading its own (`ControlSpec.options_from_task`).
A task whose data does not hold them gets a config carrying the `problems`, which reading the task
reports as that task's error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config_types import Control, LabelConfig, Option
from .controls.registry import spec_for


def _once(options: tuple[Option, ...]) -> tuple[Option, ...]:
    # A repeated value is used once, as for options written in the config.
    return tuple({option.value: option for option in reversed(options)}[value]
                 for value in dict.fromkeys(option.value for option in options))


def _resolved(config: LabelConfig, control: Control, data: dict[str, Any], problems: list[str]) -> Control:
    try:
        options = spec_for(control.kind).options_from_task(control, config.objects, data)
    except ValueError as exc:
        problems.append(f"control \"{control.name}\": {exc}")
        return control
    return dataclasses.replace(control, options=_once(options))


def for_task(config: LabelConfig, task: dict[str, Any]) -> LabelConfig:
    """The config as this task shows it (the config itself when no control reads options from tasks)."""
    if not any(control.task_options for control in config.controls):
        return config
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    problems: list[str] = []
    controls = tuple(_resolved(config, control, data, problems) if control.task_options else control
                     for control in config.controls)
    return dataclasses.replace(config, controls=controls, problems=tuple(problems))
