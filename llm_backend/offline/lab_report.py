"""The prompt lab's results as text and as a self-contained HTML page (no scripts, nothing external)."""

from __future__ import annotations

from pathlib import Path

from ..core.paired import Interval
from ..core.usage import Usage
from .compare import Comparison, VersionRun
from .improve import Outcome, Paired, Round
from .report import _CSS, _e, _html_table

SHOWN_DISAGREEMENTS = 20


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def interval_text(interval: Interval | None) -> str:
    if interval is None:
        return "nothing to measure"
    return f"{interval.diff:+.3f}, {interval.confidence * 100:g}% CI [{interval.low:+.3f}, {interval.high:+.3f}]"


def usage_text(usage: Usage) -> str:
    return f"{usage.calls} calls, {usage.prompt_tokens} + {usage.completion_tokens} tokens, cost {usage.cost_text(4)}"


def _side(label: str, run: VersionRun) -> str:
    return (f"{label} = {run.version.name} (model {run.version.model}; model_version {run.run.model_version}): "
            f"{usage_text(run.usage)}" + (f"; {run.report.failed} predictions failed" if run.report.failed else ""))


def comparison_text(result: Comparison) -> str:
    lines = [f"compared on {result.tasks} annotated tasks", _side("A", result.a), _side("B", result.b), ""]
    for control in result.controls:
        p = "" if control.p is None else f", McNemar p = {control.p:.3g}"
        lines.append(f"{control.control} ({control.metric}): A {_number(control.a)}, B {_number(control.b)}; "
                     f"B - A {interval_text(control.interval)}{p}")
    shown = result.disagreements[:SHOWN_DISAGREEMENTS]
    lines += ["", f"{len(result.disagreements)} tasks where A and B answer differently"
              + (f" (first {len(shown)}):" if shown else "")]
    for item in shown:
        lines.append(f"  task {item.task}: {item.text[:100]}" + (f"  {item.link}" if item.link else ""))
        for name, (gold, left, right) in item.fields.items():
            lines.append(f"    {name}: annotated {gold[:80]} | A {left[:80]} | B {right[:80]}")
    return "\n".join(lines)


def comparison_html(result: Comparison, title: str) -> str:
    head = [f"<p>Compared on {result.tasks} annotated tasks.</p>",
            f"<p>{_e(_side('A', result.a))}</p><p>{_e(_side('B', result.b))}</p>"]
    rows = [[c.control, c.metric, _number(c.a), _number(c.b), interval_text(c.interval),
             "–" if c.p is None else f"{c.p:.3g}"] for c in result.controls]
    table = _html_table(["control", "metric", "A", "B", "B − A (paired bootstrap)", "McNemar p"], rows)
    items = [[item.task if not item.link else f"{item.task} ({item.link})", item.text,
              "\n".join(f"{n}: {g}" for n, (g, _a, _b) in item.fields.items()),
              "\n".join(f"{n}: {a}" for n, (_g, a, _b) in item.fields.items()),
              "\n".join(f"{n}: {b}" for n, (_g, _a, b) in item.fields.items())] for item in result.disagreements]
    where = (f"<h2>Tasks where A and B differ ({len(items)})</h2>"
             + _html_table(["task", "text", "annotated", "A", "B"], items, text_columns=(1, 2, 3, 4)))
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{''.join(head)}{table}{where}</body></html>\n")


def write_comparison_html(result: Comparison, path: Path, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comparison_html(result, title), encoding="utf-8")


def _paired_line(name: str, paired: Paired | None) -> str:
    if paired is None:
        return f"  {name}: not measured"
    return f"  {name}: {_number(paired.before)} -> {_number(paired.after)} ({interval_text(paired.interval)})"


def round_text(result: Round) -> str:
    lines = [f"round {result.number}: {result.errors} errors on the working part quoted to the model"]
    if result.rationale:
        lines.append(f"  suggestion: {result.rationale}")
    lines += [_paired_line("working", result.working), _paired_line("held-out", result.heldout),
              f"  {result.reason}", f"  cost: {usage_text(result.usage)}"]
    if result.diff:
        lines += ["", result.diff.rstrip()]
    return "\n".join(lines)


def outcome_text(outcome: Outcome, prompts_dir: Path) -> str:
    if outcome.out is None:
        return (f"nothing kept: no version did better on the {outcome.heldout} held-out tasks; nothing written")
    final = outcome.final
    lines = [f"kept: wrote {outcome.out}"]
    if final is not None:
        lines.append(f"held-out ({outcome.heldout} tasks), kept against the start: {_number(final.before)} -> "
                     f"{_number(final.after)} ({interval_text(final.interval)})")
    lines += [f"see it: llm-backend prompts diff {outcome.out}",
              f"use it: cp -r {outcome.out}/. {prompts_dir}/   (your PROMPTS_DIR; the backend re-reads it)"]
    return "\n".join(lines)
