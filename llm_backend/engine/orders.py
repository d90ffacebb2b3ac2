"""Controls asked again with their objects in another order (a spec's `reorderings`; Pairwise).

A judge that prefers the answer it reads first is caught by asking again with the two swapped: the
spec reconciles the answers and may cap the score of its regions. Each extra order is one more
request for that control alone, cached and billed like any other.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from ..core.answer import Answer
from ..core.controls import RegionInputs, spec_for
from ..core.usage import Usage
from ..errors import TaskError
from .job import PredictionJob
from .outcome import TaskOutcome
from .parts import Asker, only

log = logging.getLogger(__name__)


@dataclass
class Reorders:
    """What asking in other orders changed: answer values, score caps by control, and what it cost."""

    values: dict[str, Any] = field(default_factory=dict)
    caps: dict[str, float] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)


def _reordered(job: PredictionJob, texts: dict[str, str], mapping: dict[str, str]
               ) -> tuple[PredictionJob, dict[str, str]]:
    """The job and texts with each object showing the input of the one `mapping` names."""
    shown = {name: texts[mapping.get(name, name)] for name in texts}
    data = job.task.get("data")
    if isinstance(data, dict):
        keys = {name: obj.data_key for name, obj in job.config.objects.items()}
        moved = {keys[name]: data.get(keys[source]) for name, source in mapping.items() if keys.get(name)
                 and keys.get(source)}
        job = dataclasses.replace(job, task={**job.task, "data": {**data, **moved}})
    return job, shown


def ask_reordered(asker: Asker, job: PredictionJob, texts: dict[str, str], answer: Answer) -> Reorders:
    """Ask every control that has other orders once per order, and reconcile; a failed extra request
    leaves the first answer to the spec with nothing to confirm it."""
    result = Reorders()
    for control in job.config.controls:
        spec = spec_for(control.kind)
        orders = spec.reorderings(control)
        if not orders or control.name not in answer.values:
            continue
        again = []
        for mapping in orders:
            other_job, shown = _reordered(dataclasses.replace(job, config=only(job.config, [control])), texts, mapping)
            try:
                answered = asker.answer(other_job, asker.build_request(other_job, shown), RegionInputs(shown))
            except TaskError as exc:  # the first answer stands, reconciled with nothing to confirm it
                result.usage += exc.usage
                log.warning("task %s: %s in another order failed: %s", job.task.get("id"), control.name, exc.message)
                continue
            result.usage += answered.usage
            again.append(answered.answer.values.get(control.name))
        reconciled = spec.reconcile(control, answer.values[control.name], again)
        result.values[control.name] = reconciled.value
        if reconciled.score_cap is not None:
            result.caps[control.name] = reconciled.score_cap
        log.info("task %s: %s asked in %d more order(s): %s", job.task.get("id"), control.name, len(orders),
                 reconciled.note)
    return result


def with_reorders(answer: Answer, reorders: Reorders) -> Answer:
    """The answer with the reconciled values (a copy: a cached answer is shared)."""
    if not reorders.values:
        return answer
    return dataclasses.replace(answer, values={**answer.values, **reorders.values})


def apply_caps(outcome: TaskOutcome, reorders: Reorders) -> TaskOutcome:
    """Cap the scores of the reconciled controls' regions, and bill the extra requests."""
    for region in outcome.regions or []:
        cap = reorders.caps.get(region.get("from_name", ""))
        if cap is not None:
            region["score"] = min(region.get("score", cap), cap)
    scores = [region["score"] for region in outcome.regions or [] if region.get("score") is not None]
    outcome.score = min(scores) if scores else None
    outcome.usage = outcome.usage + reorders.usage
    return outcome
