"""Offline and whole-project commands (predict, label-project, eval), registered on `llm-backend`.

Exit codes shared by the three: 0 done; 1 some tasks failed (predict, label-project) or a metric
is under --min-accuracy (eval); 2 unusable input (files, settings, label config, Label Studio);
130 interrupted (what finished is cached, so the same command resumes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..core.causes import Cause
from ..core.config import LabelConfig
from ..core.evaluate import EvalReport, evaluate, gold_result, task_key
from ..engine.outcome import BatchSummary
from ..engine.projects import certified_threshold
from ..errors import LLMBackendError
from ..label_studio import TOKEN_WHERE, LabelStudioClient
from ..offline.files import TaskFileError, import_task, write_json
from ..offline.prediction_files import choose, fetch_listed, ids_only, snapshot_hint
from ..offline.project_labeler import ProjectLabeler
from ..offline.provider_batch import ProviderBatchRun
from ..offline.report import render_text, write_html
from ..offline.runs import Progress, error_lines, evaluate_tasks, failed_advice, predict_tasks, summary_lines
from ..services import Services, build_services
from ..settings import Settings
from .common import INTERRUPTED, InputError, _config, _logging, _settings, _tasks

F = TypeVar("F", bound=Callable[..., Any])


def _services(settings: Settings) -> Services:
    try:
        return build_services(settings)
    except LLMBackendError as exc:
        raise InputError(exc.message) from None


def _common(function: F) -> F:
    """Options every batch command shares."""
    options = [
        click.option("--model", default=None, metavar="MODEL",
                     help="LiteLLM model name for this run (default: LLM_MODEL). Changes the model_version."),
        click.option("--concurrency", type=click.IntRange(1, 512), default=None,
                     help="Tasks predicted at once (default: LLM_CONCURRENCY, 8)."),
        click.option("--progress/--no-progress", default=None,
                     help="Show a progress bar on stderr (default: only on a terminal)."),
        click.option("-v", "--verbose", is_flag=True, help="Log each task's problems (at LOG_LEVEL) as they happen."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _echo_summary(summary: BatchSummary, errors: dict[str, list[Any]], causes: dict[str, Cause]) -> None:
    for line in summary_lines(summary, errors, causes):
        click.echo(line)


def _batch_api(function: F) -> F:
    """Options of the commands that can go through a provider's batch API."""
    options = [
        click.option("--batch-api", is_flag=True,
                     help="Send the tasks through the provider's batch API: about half the price, answers within "
                          "24 h (often minutes). Ctrl-C stops waiting, not the batch: the same command resumes it."),
        click.option("--poll-interval", type=click.FloatRange(0.05, 3600), default=30.0, show_default=True,
                     help="With --batch-api: seconds between two checks of a batch's progress."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _provider_batch(services: Services, config: LabelConfig, project: str | None,
                    poll_interval: float) -> ProviderBatchRun:
    try:
        return ProviderBatchRun(services, config, project, poll_interval=poll_interval,
                                on_status=lambda line: click.echo(line, err=True))
    except LLMBackendError as exc:
        raise InputError(exc.message) from None


def batch_interrupted(batch: ProviderBatchRun) -> None:
    """Ctrl-C while waiting for batches: they keep running at the provider; say how to resume."""
    for status in batch.report.pending:
        click.echo(f"{status.line()}: still running at the provider", err=True)
    click.echo("interrupted: run the same command to resume polling (nothing is submitted twice)", err=True)
    raise SystemExit(INTERRUPTED)


# -- predict ------------------------------------------------------------------------------------

@click.command("predict")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The project's label config XML (Settings -> Labeling Interface -> Code).")
@click.option("--tasks", "tasks_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Tasks to predict: a JSON list (a Label Studio JSON export, or plain {field: value} objects) "
                   "or JSONL, one task per line.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Where to write the tasks with their predictions, in Label Studio's import format.")
@click.option("--project", default=None, metavar="ID",
              help="Use the prompt templates of this project (prompts/projects/<ID>/) instead of the defaults.")
@_batch_api
@_common
def predict(config_path: Path, tasks_path: Path, out_path: Path, project: str | None, batch_api: bool,
            poll_interval: float, model: str | None, concurrency: int | None, progress: bool | None,
            verbose: bool) -> None:
    """Pre-annotate a tasks file offline, without Label Studio.

    Writes every task with a `predictions` list, ready for Label Studio's Import. Tasks whose
    prediction failed are written without one and listed in the summary; run the same command
    again to retry them: answers already received come from the cache and cost nothing.

    Exit codes: 0 done, 1 some task failed, 2 unusable input, 130 interrupted (Ctrl-C).
    """
    settings = _settings(llm_model=model, llm_concurrency=concurrency)
    _logging(verbose, settings)
    config = _config(config_path)
    tasks = _tasks(tasks_path)
    services = _services(settings)
    batch = _provider_batch(services, config, project, poll_interval) if batch_api else None
    with Progress(len(tasks), "predict", progress) as bar:
        if batch is None:
            run = predict_tasks(services, config, tasks, project, progress=bar)
        else:
            try:
                run = batch.run(tasks, progress=bar)
            except KeyboardInterrupt:
                batch_interrupted(batch)
            except LLMBackendError as exc:
                raise InputError(exc.message) from None
    click.echo(f"model_version {run.model_version}")
    _echo_summary(run.summary, run.errors, run.causes)
    for line in batch.report.lines() if batch is not None else []:
        click.echo(line)
    if run.interrupted:
        click.echo(f"interrupted: {out_path} not written; run the same command to continue "
                   f"({len(run.finished)} finished tasks come from the cache)", err=True)
        raise SystemExit(INTERRUPTED)
    write_json(out_path, [import_task(task, outcome, run.model_version)
                          for task, outcome in zip(tasks, run.outcomes, strict=True)])
    if batch is not None:
        batch.close()
    predicted = sum(outcome is not None and outcome.regions is not None for outcome in run.outcomes)
    click.echo(f"wrote {out_path}: {len(tasks)} tasks, {predicted} with a prediction")
    if predicted < len(tasks):
        click.echo(failed_advice(len(tasks) - predicted, len(tasks), list(run.causes.values())), err=True)
        raise SystemExit(1)


# -- label-project ------------------------------------------------------------------------------

@click.command("label-project")
@click.option("--project", "project_id", required=True, type=click.IntRange(min=1), metavar="ID",
              help="The Label Studio project id (the number in its URL, /projects/<ID>/).")
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Tasks fetched, predicted and imported per round trip.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many tasks (the next run goes on from there).")
@click.option("--dry-run", is_flag=True, help="Only report the model_version and how many tasks need a prediction.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Work the job here, with a progress bar, until it is done; --no-wait only queues it for "
                   "`llm-backend serve` or `llm-backend worker` on the same queue (CACHE_DIR or CACHE_URL).")
@_batch_api
@_common
def label_project(project_id: int, page_size: int, limit: int | None, dry_run: bool, wait: bool, batch_api: bool,
                  poll_interval: float, model: str | None, concurrency: int | None, progress: bool | None,
                  verbose: bool) -> None:
    """Pre-annotate every task of a Label Studio project that has no prediction yet.

    Reads LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a Personal Access Token or a Legacy
    Token, from Label Studio's Account & Settings). Fetches the project's label config and,
    page by page, the tasks without a prediction of the current model_version, and submits them
    to the project's background job (the one "Retrieve predictions" feeds); its predictions are
    imported into Label Studio in batches, at most one per task and version. No 100-second limit
    applies. Safe to stop (Ctrl-C) and run again: imported tasks are skipped, queued ones stay
    queued and finished answers come from the cache. Tasks that failed stay without a prediction
    and are retried by the next run.

    Exit codes: 0 done, 1 some task failed, 2 unusable input or Label Studio error, 130 interrupted.
    """
    settings = _settings(llm_model=model, llm_concurrency=concurrency)
    _logging(verbose, settings)
    if settings.label_studio_url is None or settings.label_studio_api_key is None:
        raise InputError(f"LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set ({TOKEN_WHERE})")
    client = LabelStudioClient(str(settings.label_studio_url), settings.label_studio_api_key.get_secret_value())
    try:
        labeler = ProjectLabeler(client, _services(settings), project_id, page_size=page_size)
        if dry_run:
            click.echo(f"project {project_id}: {labeler.pending()} tasks have no prediction of model_version "
                       f"{labeler.model_version} (dry run: nothing predicted)")
            return
        batch = _provider_batch(labeler.services, labeler.config, str(project_id), poll_interval) if batch_api else None
        if batch is not None:
            result = labeler.run_provider_batch(batch, limit=limit, progress=progress)
            if result.interrupted and batch.report.pending:
                batch_interrupted(batch)
        else:
            result = labeler.run(limit=limit, progress=progress, wait=wait)
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    click.echo(f"project {project_id}: model_version {result.model_version}; {result.pending} tasks had no "
               f"prediction of it")
    if not result.waited:
        click.echo(f"queued {result.submitted} tasks in job {result.job}; `llm-backend serve` or `llm-backend worker` "
                   "on the same queue works it (progress on the status page, GET / or /jobs)")
        return
    _echo_summary(result.summary, result.errors, result.causes)
    for line in batch.report.lines() if batch is not None else []:
        click.echo(line)
    click.echo(f"imported {result.posted} predictions into Label Studio")
    if result.interrupted:
        click.echo("interrupted: run the same command to continue", err=True)
        raise SystemExit(INTERRUPTED)
    if result.failed:
        click.echo(failed_advice(result.failed, len(result.outcomes), list(result.causes.values())), err=True)
        raise SystemExit(1)


# -- eval ---------------------------------------------------------------------------------------

def _chosen_predictions(path: Path, annotated: list[str], version: str | None
                        ) -> tuple[dict[str, list[dict[str, Any]] | None], str]:
    """{task key: result} of one model_version; ids (Label Studio's default export) fetched through its API."""
    tasks = _tasks(path)
    listed = ids_only(tasks)
    if listed:
        settings = _settings()
        if settings.ls_url is None or settings.label_studio_api_key is None:
            projects = sorted({str(task["project"]) for task in tasks if task.get("project") is not None})
            raise InputError(
                f"{path} lists its {len(listed)} predictions by id only, as Label Studio's Export button and a "
                "default snapshot do; set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY and eval fetches them, or "
                + snapshot_hint(projects[0] if len(projects) == 1 else "<id>"))
        client = LabelStudioClient(settings.ls_url, settings.label_studio_api_key.get_secret_value())
        try:
            fetched, missing = fetch_listed(tasks, client)
        except LLMBackendError as exc:
            raise InputError(f"{path} lists predictions by id; fetching them failed: {exc.message}") from None
        gone = f"; {missing} no longer exist there" if missing else ""
        click.echo(f"{path} lists predictions by id: fetched {fetched} from Label Studio at "
                   f"{settings.ls_url}{gone}", err=True)
    try:
        return choose(path, tasks, annotated, version)
    except TaskFileError as exc:
        raise InputError(exc.message) from None


@click.command("eval")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The project's label config XML.")
@click.option("--tasks", "tasks_path", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Annotated tasks: a Label Studio JSON export. Tasks without a non-cancelled annotation are "
                   "skipped; with several, the newest counts. Required, except with --compare and --project.")
@click.option("--predictions", "predictions_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Score these predictions (a Label Studio export or `predict`'s output, matched by task id) "
                   "instead of running the prompts. May be the --tasks file itself. Predictions an export lists "
                   "by id only are fetched from LABEL_STUDIO_URL (with LABEL_STUDIO_API_KEY).")
@click.option("--model-version", default=None,
              help="With --predictions: which model_version to score, when the file holds several.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write an HTML report (tables, confusion matrices, worst disagreements) here.")
@click.option("--json", "json_path", default=None, is_flag=False, flag_value="-",
              type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write the numbers as JSON here; --json alone prints only the JSON.")
@click.option("--compare", nargs=2, default=None, metavar="A B",
              help="Compare two prompt folders (PROMPTS_DIR format; an empty one is the shipped defaults) or "
                   "model=NAME, paired on the same tasks: each control's metric, B - A with a 95% bootstrap "
                   "interval, McNemar p for Choices, and the tasks where they differ (see README, Prompt lab).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Exit with code 1 when a control scores below this (0-1): Choices, Taxonomy, Rating and Number "
                   "by accuracy, Labels by exact-match F1, TextArea by mean similarity.")
@click.option("--worst", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the worst-agreeing tasks to list.")
@click.option("--project", default=None, metavar="ID",
              help="Use the prompt templates of this project (prompts/projects/<ID>/) instead of the defaults.")
@click.option("--accept-threshold", type=click.FloatRange(0, 1), default=None,
              help="Show each control's coverage at this score: the share of scored tasks that reach it, and how "
                   "many of those are right (default: the threshold `accept` last certified for --project).")
@_common
def eval_command(config_path: Path, tasks_path: Path, predictions_path: Path | None, model_version: str | None,
                 out_path: Path | None, json_path: Path | None, min_accuracy: float | None, worst: int,
                 project: str | None, model: str | None, concurrency: int | None, progress: bool | None,
                 verbose: bool, compare: tuple[str, str] | None = None,
                 accept_threshold: float | None = None) -> None:
    """Measure the prompts against human annotations.

    Runs the current prompts on the annotated tasks (answers are cached, so re-running after a
    prompt change only pays for what changed) or reads existing predictions with
    --predictions, and compares them per control: Choices accuracy, per-class
    precision/recall/F1 and confusion matrix; Labels span precision/recall/F1 (exact and
    overlap, per label); TextArea string similarity; plus LLM calls, tokens, cost and the tasks
    that disagree most. Prints a table; --out writes an HTML report.

    Exit codes: 0 done, 1 a control is under --min-accuracy, 2 unusable input, 130 interrupted.
    """
    config = _config(config_path)
    from_project = tasks_path is None
    if tasks_path is None:
        if not (compare and project):
            raise InputError("--tasks is required (with --compare, --project ID instead reads the project's "
                             "annotated tasks from Label Studio)")
        from .lab import project_tasks

        tasks_path, tasks = Path(f"Label Studio project {project}"), project_tasks(project)
    else:
        tasks = _tasks(tasks_path)
    annotated = [task_key(task, index) for index, task in enumerate(tasks) if gold_result(task) is not None]
    if not annotated:
        raise InputError(f"{tasks_path}: no task has an annotation that was not cancelled")
    _check_controls_annotated(config_path, config, tasks_path, tasks)
    if compare:
        from .lab import run_compare

        return run_compare(compare, config, tasks, tasks_path.name, project, json_path is not None
                           and str(json_path) == "-", out_path, model, concurrency, progress, verbose,
                           linked=from_project)
    if predictions_path is not None:
        predictions, version = _chosen_predictions(predictions_path, annotated, model_version)
        report = evaluate(config, tasks, predictions, model_version=version, worst=worst,
                          accept_threshold=accept_threshold)
    elif model_version is not None:
        raise InputError("--model-version only applies with --predictions")
    else:
        settings = _settings(llm_model=model, llm_concurrency=concurrency)
        _logging(verbose, settings)
        services = _services(settings)
        if accept_threshold is None and project is not None:
            accept_threshold = certified_threshold(services.projects.get(project))
        with Progress(len(annotated), "eval", progress) as bar:
            report, run = evaluate_tasks(services, config, tasks, project, progress=bar, worst=worst,
                                         accept_threshold=accept_threshold)
        if run.interrupted:
            click.echo("interrupted: run the same command to continue; finished tasks come from the cache", err=True)
            raise SystemExit(INTERRUPTED)
        if run.errors:
            click.echo("some predictions failed; they count as predictions with nothing in them:", err=True)
            for line in error_lines(run.errors, run.causes):
                click.echo(line, err=True)
    if json_path is not None and str(json_path) == "-":
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return _gate(report, min_accuracy)
    click.echo(render_text(report))
    if out_path is not None:
        write_html(report, out_path, f"Evaluation of {config_path.name} on {tasks_path.name}")
        click.echo(f"\nwrote {out_path}")
    if json_path is not None:
        write_json(json_path, report.to_dict())
        click.echo(f"wrote {json_path}")
    _gate(report, min_accuracy)


def _check_controls_annotated(config_path: Path, config: LabelConfig, tasks_path: Path,
                              tasks: list[dict[str, Any]]) -> None:
    """No control of the config is in any annotation: a wrong config or file, which would score nothing and pass
    any --min-accuracy gate."""
    annotated = {str(region.get("from_name")) for task in tasks for region in gold_result(task) or []}
    if not annotated & {control.name for control in config.controls}:
        controls = ", ".join(sorted(control.name for control in config.controls))
        raise InputError(f"no control of {config_path} ({controls}) is in the annotations of {tasks_path} (they "
                         f"use: {', '.join(sorted(annotated)) or 'nothing'}); is it the project's label config? "
                         "Each control's name= must match the annotations' from_name")


def _gate(report: EvalReport, min_accuracy: float | None) -> None:
    if min_accuracy is None:
        return
    below = report.below(min_accuracy)
    for control, metric, value in below:
        click.echo(f"{control}: {metric} {value:.3f} is below --min-accuracy {min_accuracy:g}", err=True)
    if below:
        raise SystemExit(1)


commands: list[click.Command] = [predict, label_project, eval_command]
