"""An EvalReport as a terminal table and as a self-contained HTML page.

The HTML has no scripts and no external resources (it is opened from disk and attached to CI
runs); the confusion matrix is inline SVG, so it renders in any browser and survives copying.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.agreement import ControlReport, SetReport
from ..core.evaluate import EvalReport
from .cascade_report import cascade_lines


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def overview_lines(report: EvalReport) -> list[str]:
    lines = [
        f"evaluated {report.tasks} annotated tasks ({report.skipped} skipped without an annotation, "
        f"{report.failed} without a prediction)"
        + (f"; model_version {report.model_version}" if report.model_version else "")
    ]
    if report.usage:
        usage = report.usage
        lines.append(f"LLM calls {usage.calls}, tokens {usage.prompt_tokens} prompt + {usage.completion_tokens} "
                     f"completion, cost {usage.cost_text()}")
    return lines


def _matrix(report: ControlReport) -> tuple[list[str], list[list[int]]] | None:
    if isinstance(report, SetReport) and report.matrix is not None:
        return report.labels, report.matrix
    return None


def _control_text(report: ControlReport) -> list[str]:
    lines = [report.summary()]
    for table in report.tables():
        lines += _table(table.header, table.rows)
    matrix = _matrix(report)
    if matrix is not None:
        labels, counts = matrix
        lines.append("  confusion matrix (rows: annotated, columns: predicted)")
        rows = [[label, *map(str, row)] for label, row in zip(labels, counts, strict=True)]
        lines += _table(["", *labels], rows, indent="    ")
    return lines


def render_text(report: EvalReport) -> str:
    lines = overview_lines(report)
    for control in report.controls:
        lines += ["", *_control_text(control)]
        confidence = report.confidence.get(control.control)
        if confidence:
            lines.append(f"  scores: expected calibration error {confidence['ece']:.3f} over {confidence['n']} "
                         "scored tasks (llm-backend calibrate makes them mean what they say)")
            if "coverage" in confidence:
                lines.append(f"  {coverage_text(confidence)}")
    if report.cascade:
        lines += ["", *cascade_lines(report.cascade)]
    if report.worst:
        lines += ["", f"worst disagreements ({len(report.worst)}):"]
        for item in report.worst:
            lines.append(f"  task {item.task} (agreement {item.agreement:.2f}): {item.text[:100]}")
            for name, (gold, predicted) in item.controls.items():
                lines.append(f"    {name}: annotated {gold[:120]} | predicted {predicted[:120]}")
    return "\n".join(lines)


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d2430; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #d8dde6; }
table { border-collapse: collapse; margin: .6rem 0 1rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #e6e9ef; text-align: right; }
th:first-child, td:first-child, .text { text-align: left; }
th { background: #f3f5f9; }
.metric { display: inline-block; margin: .2rem 1.4rem .2rem 0; }
.metric b { font-size: 1.4rem; display: block; }
.muted { color: #6a7383; }
.text { max-width: 420px; white-space: pre-wrap; word-break: break-word; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Sequence[int] = ()) -> str:
    head = "".join(f"<th class=\"text\">{_e(c)}</th>" if i in text_columns else f"<th>{_e(c)}</th>"
                   for i, c in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td class=\"text\">{_e(c)}</td>" if i in text_columns else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric(name: str, value: str) -> str:
    return f"<span class=\"metric\"><b>{_e(value)}</b>{_e(name)}</span>"


def confusion_svg(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str = "") -> str:
    """The matrix as an SVG heat map: rows annotated, columns predicted, shade = share of the row.

    Green on the diagonal (agreement), red elsewhere, so the eye finds the confusions first.
    """
    cell = 58
    shown = [label if len(label) <= 22 else label[:21] + "…" for label in labels]
    longest = max((len(label) for label in shown), default=4)
    left = 40 + 7 * longest
    top = 40 + int(5.2 * longest)
    size = cell * len(labels)
    # Column labels lean right at 40 degrees: the last one needs room beyond the grid.
    width, height = left + size + 20 + int(5.5 * longest), top + size + 20
    parts = [
        f"<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" class=\"confusion-matrix\" width=\"{width}\" "
        f"height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"system-ui, sans-serif\" "
        f"font-size=\"12\"><title>{_e(title or 'confusion matrix')}</title>",
        f"<text x=\"{left + size / 2}\" y=\"14\" text-anchor=\"middle\" font-weight=\"600\">predicted</text>",
        f"<text transform=\"translate(14 {top + size / 2}) rotate(-90)\" text-anchor=\"middle\" "
        f"font-weight=\"600\">annotated</text>",
    ]
    for j, label in enumerate(shown):
        x = left + j * cell + cell / 2
        parts.append(f"<text transform=\"translate({x} {top - 8}) rotate(-40)\" text-anchor=\"start\">"
                     f"{_e(label)}</text>")
    for i, (label, row) in enumerate(zip(shown, matrix, strict=True)):
        y = top + i * cell
        parts.append(f"<text x=\"{left - 8}\" y=\"{y + cell / 2 + 4}\" text-anchor=\"end\">{_e(label)}</text>")
        total = sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            # Lightness from 97% (none) to 38% (the whole row): readable with black or white text.
            lightness = 97 - 59 * share
            hue = 140 if i == j else 4
            saturation = 55 if count else 0
            ink = "#ffffff" if lightness < 60 else "#1d2430"
            parts.append(
                f"<g><title>annotated {_e(labels[i])}, predicted {_e(labels[j])}: {count} "
                f"({share:.0%} of the row)</title>"
                f"<rect x=\"{left + j * cell}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" "
                f"fill=\"hsl({hue} {saturation}% {lightness:.0f}%)\" stroke=\"#ffffff\" stroke-width=\"2\"/>"
                f"<text x=\"{left + j * cell + cell / 2}\" y=\"{y + cell / 2 + 5}\" text-anchor=\"middle\" "
                f"font-size=\"15\" fill=\"{ink}\">{count}</text></g>"
            )
    parts.append("</svg>")
    return "".join(parts)


def reliability_svg(bins: Sequence[dict[str, Any]], title: str = "") -> str:
    """Observed accuracy against mean score per bin (a dot sized by its count); the diagonal is perfect."""
    size, pad = 220, 30
    span = size - 2 * pad
    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" role=\"img\" "
             f"aria-label=\"{_e(title)}\"><rect x=\"{pad}\" y=\"{pad}\" width=\"{span}\" height=\"{span}\" "
             f"fill=\"#f7f8fb\" stroke=\"#d8dde6\"/><line x1=\"{pad}\" y1=\"{size - pad}\" x2=\"{size - pad}\" "
             f"y2=\"{pad}\" stroke=\"#b8c0cc\" stroke-dasharray=\"4 4\"/>"
             f"<text x=\"{size / 2}\" y=\"{size - 8}\" text-anchor=\"middle\" font-size=\"11\">score</text>"
             f"<text x=\"10\" y=\"{size / 2}\" font-size=\"11\" transform=\"rotate(-90 10 {size / 2})\" "
             f"text-anchor=\"middle\">observed accuracy</text>"]
    total = sum(b["count"] for b in bins) or 1
    for b in bins:
        if not b["count"]:
            continue
        x = pad + span * b["mean_calibrated"]
        y = size - pad - span * b["accuracy"]
        radius = 3 + 12 * (b["count"] / total) ** 0.5
        parts.append(f"<circle cx=\"{x:.1f}\" cy=\"{y:.1f}\" r=\"{radius:.1f}\" fill=\"#2f6fde\" fill-opacity=\"0.6\">"
                     f"<title>{b['count']} tasks: mean score {b['mean_calibrated']}, right {b['accuracy']}</title>"
                     "</circle>")
    parts.append("</svg>")
    return "".join(parts)


def coverage_text(confidence: dict[str, Any]) -> str:
    precision = confidence["precision_above"]
    right = "none reach it" if precision is None else f"{precision:.1%} of those right"
    return (f"coverage at the accept threshold {confidence['threshold']}: {confidence['coverage']:.1%} of the "
            f"scored tasks score at least that ({right})")


def _confidence_html(name: str, confidence: dict[str, Any] | None) -> str:
    if not confidence:
        return ""
    coverage = (_metric("coverage at the accept threshold", html.escape(coverage_text(confidence)))
                if "coverage" in confidence else "")
    ece = f"{confidence['ece']:.3f} over {confidence['n']} scored tasks"
    return (coverage + _metric("score reliability (ECE)", ece)
            + reliability_svg(confidence["bins"], f"{name}: reliability of the scores")
            + "<p class=\"muted\">Each dot: the tasks whose score fell in one tenth of [0, 1], at their mean score "
              "and the share the prediction got right; on the dashed diagonal a score means what it says.</p>")


def _control_html(report: ControlReport, confidence: dict[str, Any] | None = None) -> str:
    parts = [f"<h2>{_e(report.control)} <span class=\"muted\">{_e(report.kind)}</span></h2>"]
    parts += [_metric(name, value) for name, value in report.facts()]
    parts += [_html_table(table.header, table.rows) for table in report.tables()]
    matrix = _matrix(report)
    if matrix is not None:
        parts.append(confusion_svg(*matrix, f"{report.control}: confusion matrix"))
        parts.append("<p class=\"muted\">Rows: annotated, columns: predicted; the shade is the share of the row. "
                     "Green: agreement, red: confusion.</p>")
    if report.note():
        parts.append(f"<p class=\"muted\">{_e(report.note())}</p>")
    parts.append(_confidence_html(report.control, confidence))
    return "".join(parts)


def render_html(report: EvalReport, title: str = "llm-backend evaluation") -> str:
    summary = "".join(f"<p>{_e(line)}</p>" for line in overview_lines(report))
    worst = ""
    if report.worst:
        rows = [[item.task, f"{item.agreement:.2f}", item.text,
                 "\n".join(f"{name}: {gold}" for name, (gold, _p) in item.controls.items()),
                 "\n".join(f"{name}: {predicted}" for name, (_g, predicted) in item.controls.items())]
                for item in report.worst]
        worst = "<h2>Worst disagreements</h2>" + _html_table(
            ["task", "agreement", "text", "annotated", "predicted"], rows, text_columns=(2, 3, 4))
    body = summary + "".join(_control_html(control, report.confidence.get(control.control))
                             for control in report.controls) + worst
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>\n")


def write_html(report: EvalReport, path: Path, title: str = "llm-backend evaluation") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title), encoding="utf-8")
