"""What each cascade step did in an evaluation: how often it answered, how well, at what cost.

Each step is scored twice: on its own (its own answer, for every task that reached it) and for the
answers it actually gave (the tasks where the cascade stopped at it). Comparing the first step's
cost with the last's shows what the cascade saves; their accuracies show what it costs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core.config import LabelConfig
from ..core.evaluate import evaluate, task_key
from ..core.usage import Usage


def cascade_steps(config: LabelConfig, tasks: list[tuple[int, dict[str, Any]]], outcomes: list[Any]
                  ) -> list[dict[str, Any]]:
    """Per step: model, reached, answered, escalations by reason, accuracy alone / as answered, calls, cost.

    `tasks` are (index in the input file, task) pairs matching `outcomes` one to one."""
    depth = max((len(getattr(o, "cascade", None) or []) for o in outcomes if o is not None), default=0)
    steps = []
    for step in range(depth):
        reached = [(i, t, o) for (i, t), o in zip(tasks, outcomes, strict=True)
                   if o is not None and len(o.cascade) > step]
        if not reached:
            continue
        alone = evaluate(config, [t for _i, t, _o in reached],
                         {task_key(t, i): o.cascade[step].regions for i, t, o in reached})
        answered = [(i, t, o) for i, t, o in reached if o.cascade[step].used]
        given = evaluate(config, [t for _i, t, _o in answered],
                         {task_key(t, i): o.regions for i, t, o in answered}) if answered else None
        usage = Usage.total(o.cascade[step].usage for _i, _t, o in reached)
        steps.append({
            "step": step + 1,
            "model": reached[0][2].cascade[step].model,
            "reached": len(reached),
            "answered": len(answered),
            "escalated": dict(Counter(o.cascade[step].escalated for _i, _t, o in reached
                                      if o.cascade[step].escalated)),
            "accuracy_alone": alone.accuracy,
            "accuracy_answered": given.accuracy if given else None,
            "calls": usage.calls,
            "cost": None if usage.cost is None else round(usage.cost, 8),
        })
    return steps


def cascade_lines(steps: list[dict[str, Any]]) -> list[str]:
    if not steps:
        return []
    lines = ["cascade (accuracy: mean of each control's headline metric):",
             "  step  model                 reached  answered  escalated               alone  answered  calls  cost"]
    for s in steps:
        escalated = ", ".join(f"{k} {v}" for k, v in sorted(s["escalated"].items())) or "-"
        cost = f"${s['cost']:.6f}" if s["cost"] is not None else "unknown"

        def show(value: float | None) -> str:
            return f"{value:.3f}" if value is not None else "-"

        lines.append(f"  {s['step']:<5} {s['model'][:20]:<21} {s['reached']:<8} {s['answered']:<9} "
                     f"{escalated[:22]:<23} {show(s['accuracy_alone']):<6} {show(s['accuracy_answered']):<9} "
                     f"{s['calls']:<6} {cost}")
    return lines
