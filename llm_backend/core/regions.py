"""A validated answer -> Label Studio result regions, one list per task.

Only the config's controls and values can appear here: the answer was validated against the
config, and every region is built by its control's spec from the config's own names. NER quotes
become offsets through the aligner; quotes it cannot place are dropped and counted, never guessed.
"""

from __future__ import annotations

import json
from typing import Any

from .config import LabelConfig
from .controls import RegionInputs, RegionReport, spec_for

__all__ = ["RegionInputs", "RegionReport", "build_regions"]


def build_regions(
    config: LabelConfig,
    values: dict[str, Any],
    inputs: RegionInputs,
    scores: dict[str, list[float | None]] | None = None,
) -> RegionReport:
    """Regions for every control; `scores` are token-probability scores by control (see scores.py)."""
    scores = scores or {}
    report = RegionReport()
    for control in config.controls:
        if control.name in values:  # a control dropped from a partial answer has no regions
            spec_for(control.kind).add_regions(control, values[control.name], inputs, scores.get(control.name, []),
                                               report)
    # A region several controls describe (a Chat message answered by two per-message controls) is listed once.
    seen: set[str] = set()
    kept = []
    for region in report.regions:
        key = json.dumps(region, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(region)
    report.regions = kept
    return report
