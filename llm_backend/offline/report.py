"""An EvalReport as a terminal table and as a self-contained HTML page.

The HTML has no scripts and no external resources (it is opened from disk and attached to CI
runs); the confusion matrix is inline SVG, so it renders in any browser and survives copying.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

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


def _control_html(report: ControlReport) -> str:
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
    body = summary + "".join(_control_html(control) for control in report.controls) + worst
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>\n")


def write_html(report: EvalReport, path: Path, title: str = "llm-backend evaluation") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title), encoding="utf-8")
