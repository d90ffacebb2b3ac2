"""`llm-backend plan`: the bill and the duration of a run, before it runs (see offline/plan.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import LLMBackendError
from ..label_studio import LabelStudioClient
from ..models.router import load_routing
from ..offline.plan import ModelPlan, Plan, Planner, TimedClient
from ..offline.project_labeler import ProjectLabeler
from ..redact import redact
from ..services import build_services, model_client
from .offline import InputError, _config, _logging, _settings, _tasks


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _usd(value: float | None) -> str:
    if value == 0:
        return "$0"
    return "unknown" if value is None else f"${value:.4f}" if value < 100 else f"${value:,.0f}"


def _count(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def model_lines(plan: Plan, model: ModelPlan) -> list[str]:
    step = f"step {model.step}: " if model.step else ""
    lines = [f"{step}{model.model} (price: {model.price_source})"]
    measured = model.measured
    if model.tasks is None:
        lines.append(f"  tasks: unknown (no measured escalation rate; --sample N measures it); "
                     f"{_count(model.cached_tasks)} cached; if every task reached it: {_usd(model.cost_usd_max)}")
        return lines
    lines.append(f"  tasks {_count(model.tasks)}, {_count(model.cached_tasks)} with a cached answer; "
                 f"{_count(model.calls)} calls")
    interval = model.prompt_tokens_interval
    spread = "" if interval is None or interval[0] == interval[1] else \
        f" (95%: {interval[0]:,.0f}–{interval[1]:,.0f})"
    answers = model.completion_tokens_interval
    answer_spread = "" if answers is None else f" (95%: {answers[0]:,.0f}–{answers[1]:,.0f})"
    billed = "" if model.prompt_basis == "our count" else f" ({model.prompt_basis})"
    lines.append(f"  prompt tokens {_count(model.prompt_tokens)}{spread}{billed}, answer tokens "
                 f"{_count(model.completion_tokens)}{answer_spread} (from the {model.completion_source})")
    if model.completion_basis:
        lines.append(f"  answer tokens: {model.completion_basis}")
    costs = model.cost_usd_interval
    cost_spread = "" if costs is None else f" (95%: {_usd(costs[0])}–{_usd(costs[1])})"
    lines.append(f"  cost {_usd(model.cost_usd)}{cost_spread}; through the batch API (--batch-api, answers within "
                 f"24 h) "
                 f"{_usd(model.batch_cost_usd)}")
    latency = f", {measured.latency:.2f} s per call measured" if measured.latency is not None else ""
    limits = ", ".join(f"{name} {value:,}" for name, value in (("rpm", model.rpm), ("tpm", model.tpm)) if value)
    lines.append(f"  time {duration(model.seconds)} (set by {model.seconds_basis}; concurrency {plan.concurrency}"
                 f"{latency}{', ' + limits if limits else ''})")
    if measured.escalation_rate is not None:
        lines.append(f"  escalates {measured.escalation_rate:.0%} of the tasks it answers to the next step")
    if measured.accuracy is not None:
        lines.append(f"  accuracy {measured.accuracy:.3f} on {measured.annotated} annotated tasks")
    return lines


def sample_lines(sample: dict[str, Any]) -> list[str]:
    """The sample run: what it cost and measured, and first of all whether its tasks failed."""
    cost = "an unknown cost" if sample["usage"]["cost"] is None else _usd(sample["usage"]["cost"])
    failed = sample["failed"]
    if failed == sample["tasks"]:
        lines = [f"sample run FAILED: all {failed} sample tasks failed, so nothing was measured (no accuracy, no "
                 "answer tokens, no latency); the run would fail the same way:"]
    else:
        accuracy = f"; accuracy {sample['accuracy']:.3f}" if sample["accuracy"] is not None else ""
        lines = [f"sample run: {sample['tasks']} tasks ({sample['annotated']} annotated) predicted for {cost}"
                 f"{accuracy}; their answers are cached, the run will not pay for them again"]
        if failed:
            lines.append(f"sample run: {failed} of {sample['tasks']} tasks FAILED (counted as wrong in the accuracy):")
    for error in sample.get("errors", []):
        ids = ", ".join(map(str, error["tasks"][:5])) + (", ..." if len(error["tasks"]) > 5 else "")
        lines.append(f"  {len(error['tasks'])} x {redact(error['message'])[:300]} (tasks {ids})")
        lines.append(f"      fix: {error['fix']}")
    return lines


def part_sample_lines(sample: dict[str, Any]) -> list[str]:
    """The long texts' parts asked for real: what they cost, what they taught, what failed."""
    if not sample["asked"]:
        return ["part sample: no part to ask (no task's text is split into parts, or every part's answer is "
                "already cached); --sample N predicts whole tasks"]
    cost = "an unknown cost" if sample["usage"]["cost"] is None else _usd(sample["usage"]["cost"])
    lines = [f"part sample: {sample['answered']} of {sample['wanted']} parts of the long texts answered for real "
             f"({sample['asked']} asked, {sample['refused']} refused as too long, {sample['failed']} failed) "
             f"for {cost}; "
             "their answers are cached: the run does not pay again for a part it sends the same way"]
    lines += [f"  learned: {learned}" for learned in sample["learned"]]
    lines += [f"  failed: {redact(error)}" for error in sample["errors"]]
    return lines


def render_plan(plan: Plan) -> str:
    rendered = "all" if plan.rendered == plan.tasks else f"a seeded sample of {plan.rendered}"
    lines = [f"plan for {plan.tasks} tasks (prompts of {rendered} rendered and counted), "
             f"model_version {plan.model_version}"]
    for reason, count in plan.skipped.items():
        lines.append(f"  {count} tasks cannot be predicted: {reason}")
    if plan.sample:
        lines += sample_lines(plan.sample)
    if plan.part_sample:
        lines += part_sample_lines(plan.part_sample)
    elif plan.annotated:
        lines.append(f"{plan.annotated} tasks are annotated: --sample {min(plan.annotated, 50)} measures each model's "
                     "accuracy on them (free for the tasks `eval` already answered: they are cached)")
    for model in plan.models:
        lines += ["", *model_lines(plan, model)]
    total = plan.to_dict()["total"]
    if len(plan.models) > 1:
        lines += ["", f"total: cost {_usd(total['cost_usd'])}, batch API {_usd(total['batch_cost_usd'])}, "
                      f"time {duration(total['seconds'])}"]
    return "\n".join(lines)


def _project_tasks(services: Any, project_id: int) -> tuple[Any, list[dict[str, Any]]]:
    settings = services.settings
    if settings.label_studio_url is None or settings.label_studio_api_key is None:
        raise InputError("--project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
    client = LabelStudioClient(str(settings.label_studio_url), settings.label_studio_api_key.get_secret_value())
    labeler = ProjectLabeler(client, services, project_id)
    # What label-project would send: every task without a prediction of this model_version, annotations included.
    return labeler.config, [task for page in labeler.pages(fields="all") for task in page]


@click.command("plan")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The label config XML (with --tasks).")
@click.option("--tasks", "tasks_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The tasks a run would predict (as for `predict`); annotated ones also give the accuracy.")
@click.option("--project", "project_id", type=click.IntRange(min=1), default=None, metavar="ID",
              help="Plan `label-project --project ID` instead: the project's tasks without a prediction of the "
                   "current model_version, read from Label Studio.")
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Predict this many tasks for real first (annotated ones first) to measure answer tokens, "
                   "latency, escalations and accuracy. Their answers are cached: the run does not pay twice.")
@click.option("--sample-parts", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Ask N parts of the long texts for real first (spread over them) to measure their answer tokens "
                   "per character and what the provider bills; the other parts are estimated from them, with a "
                   "95% interval. Their answers are cached: the run does not pay twice.")
@click.option("--max-render", type=click.IntRange(min=2), default=2000, show_default=True,
              help="Above this many tasks, render and count the prompts of a seeded random sample and scale it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.option("--model", default=None, metavar="MODEL", help="LiteLLM model name (default: LLM_MODEL).")
@click.option("--concurrency", type=click.IntRange(1, 512), default=None,
              help="Model calls in flight at once (default: LLM_CONCURRENCY).")
@click.option("--progress/--no-progress", default=None, help="A progress bar for the --sample run.")
@click.option("-v", "--verbose", is_flag=True, help="Log each task's problems.")
def plan_command(config_path: Path | None, tasks_path: Path | None, project_id: int | None, sample: int,
                 sample_parts: int, max_render: int, seed: int, as_json: bool, model: str | None,
                 concurrency: int | None, progress: bool | None, verbose: bool) -> None:
    """Estimate a run before paying for it: calls, tokens, cost and time per model.

    Renders every prompt the run would send (or a seeded sample of them), counts its tokens with
    LiteLLM's counter, leaves out what the response cache already holds, and prices the rest with
    LiteLLM's cost map or the routing file's prices, at the regular and at the batch-API price.

    Exit codes: 0 done, 1 some --sample task failed (or no --sample-parts part was answered), 2 unusable
    input, 130 interrupted.
    """
    if (project_id is None) == (tasks_path is None) or (tasks_path is not None and config_path is None):
        raise InputError("give either --config and --tasks, or --project")
    settings = _settings(llm_model=model, llm_concurrency=concurrency)
    _logging(verbose, settings)
    try:
        timings = TimedClient(model_client(settings, load_routing(settings)))
        services = build_services(settings, client=timings)
        if project_id is not None:
            config, tasks = _project_tasks(services, project_id)
            project = str(project_id)
        else:
            assert config_path is not None and tasks_path is not None
            config, tasks, project = _config(config_path), _tasks(tasks_path), None
        if not tasks:
            raise InputError("no task to plan: every task already has a prediction of the current model_version")
        plan = Planner(services, config, project, timings=timings).plan(tasks, sample=sample, max_render=max_render,
                                                                         seed=seed, progress=progress,
                                                                         sample_parts=sample_parts)
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    click.echo(json.dumps(plan.to_dict(), indent=2) if as_json else render_plan(plan))
    if (plan.sample and plan.sample["failed"]) or (plan.part_sample and not plan.part_sample["answered"]
                                                    and plan.part_sample["asked"]):
        raise SystemExit(1)
