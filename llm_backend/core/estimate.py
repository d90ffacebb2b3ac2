"""The arithmetic of a cost plan. Pure: counts in, estimates out.

    scaled_total(values, population)   a sample's sum scaled to the population, with a 95% interval
    run_seconds(...)                    how long a run takes at a concurrency and the provider's rate limits
    typical_answer(config, text)        an answer of typical size, from the control specs
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import LabelConfig
from .controls import spec_for

Z95 = 1.96


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> Estimate:
        return cls(value, value, value)

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.low * factor, self.high * factor)


def scaled_total(values: Sequence[float], population: int) -> Estimate:
    """The population total estimated from a simple random sample of it (`values`, one per sampled item).

    The interval is the normal approximation with the finite-population correction, so it closes to
    the exact sum when the sample is the whole population.
    """
    n = len(values)
    if n == 0:
        return Estimate.exact(0.0)
    total = sum(values) * population / n
    if n >= population or n < 2:  # the whole population; or one item, which has no spread to go by
        return Estimate.exact(total)
    correction = math.sqrt((population - n) / (population - 1))
    margin = Z95 * statistics.stdev(values) / math.sqrt(n) * correction * population
    return Estimate(total, max(0.0, total - margin), total + margin)


@dataclass(frozen=True)
class RunTime:
    seconds: float | None  # None: nothing bounds it that is known
    basis: str  # what sets it: "concurrency", "rpm", "tpm", or "unknown latency"


def run_seconds(calls: float, tokens: float, *, latency: float | None, concurrency: int, rpm: int | None,
                tpm: int | None) -> RunTime:
    """The time `calls` take with `concurrency` of them in flight, each `latency` seconds, under the
    provider's requests- and tokens-per-minute limits: the slowest of the three bounds."""
    bounds: dict[str, float] = {}
    if latency is not None:
        bounds["concurrency"] = math.ceil(calls / concurrency) * latency if calls else 0.0
    if rpm:
        bounds["rpm"] = calls / rpm * 60
    if tpm:
        bounds["tpm"] = tokens / tpm * 60
    if not bounds:
        return RunTime(None, "unknown latency")
    basis = max(bounds, key=lambda name: bounds[name])
    return RunTime(bounds[basis], basis if latency is not None else f"{basis} (latency unknown: at least)")


def typical_answer(config: LabelConfig, text: str) -> dict[str, Any]:
    """The answer object of typical size for a task whose input reads `text`."""
    return {control.name: spec_for(control.kind).typical_answer(control, text) for control in config.controls}
