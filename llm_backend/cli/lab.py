"""The prompt lab on the command line: `eval --compare A B`, `improve`, `prompts diff DIR`.

Exit codes: 0 done (for `improve`, whether or not a version was kept: --json says which); 2 unusable
input, including too few annotated tasks for a paired comparison (the message gives the number found);
130 interrupted (answers received are cached, so the same command resumes for free).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..core.config import LabelConfig
from ..errors import LLMBackendError
from ..settings import Settings
from .common import INTERRUPTED, InputError, _config, _logging, _settings, _tasks


def _require_lab() -> None:
    """numpy, scipy and scikit-learn are the `lab` extra, not part of the serving install."""
    missing = [module for module in ("numpy", "scipy", "sklearn") if importlib.util.find_spec(module) is None]
    if missing:
        raise InputError(f"the prompt lab needs {', '.join(missing)}: pip install 'llm-backend[lab]'")


def project_tasks(project: str) -> list[dict[str, Any]]:
    """A Label Studio project's tasks with a human annotation (one made from a prediction is the model's own
    answer, not evidence: see offline/trust.py), as a tasks file would hold them."""
    from ..engine.projects import project_id
    from ..offline.trust import project_tasks as read_project
    from ..services import label_studio_client

    settings = _settings()
    client = label_studio_client(settings)
    key = project_id(project)
    if client is None or key is None:
        raise InputError("--project without --tasks reads the project's annotated tasks from Label Studio: set "
                         "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY" if client is None else
                         f"--project {project!r} is not a Label Studio project id")
    try:
        found = [task for task in read_project(client, key, "") if task.human is not None]
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    return [{"id": task.id, "data": task.data, "annotations": [{"result": task.human}]} for task in found]


def _task_link(settings: Settings, project: str) -> Callable[[str], str | None]:
    base = str(settings.ls_url or "").rstrip("/")
    return lambda key: f"{base}/projects/{project}/data?task={key}" if base else None


def _progress(enabled: bool | None) -> Any:
    from ..offline.runs import Progress

    return lambda name, total: Progress(total, name, enabled)


def run_compare(versions: tuple[str, str], config: LabelConfig, tasks: list[dict[str, Any]], source: str,
                project: str | None, as_json: bool, out_path: Path | None, model: str | None,
                concurrency: int | None, progress: bool | None, verbose: bool, *, linked: bool = False) -> None:
    """`eval --compare A B`: called by `eval`, which owns the options and has read the config and tasks
    (`linked`: from a Label Studio project, so each differing task links to it there)."""
    _require_lab()
    from ..offline.compare import LabError, compare, parse_version, version_runner
    from ..offline.lab_report import comparison_text, write_comparison_html

    settings = _settings(llm_model=model, llm_concurrency=concurrency)
    _logging(verbose, settings)
    try:
        a, b = (parse_version(version, settings) for version in versions)
        link = _task_link(settings, project) if linked and project else (lambda key: None)
        result = compare(config, tasks, version_runner(settings, config, project), a, b,
                         progress=_progress(progress), link=link)
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command to continue; finished tasks come from the cache", err=True)
        raise SystemExit(INTERRUPTED) from None
    except LabError as exc:
        raise InputError(exc.message) from None
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(comparison_text(result))
    if out_path is not None:
        write_comparison_html(result, out_path, f"{versions[0]} vs {versions[1]} on {source}")
        click.echo(f"wrote {out_path}", err=as_json)


@click.command("improve")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The project's label config XML.")
@click.option("--tasks", "tasks_path", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Annotated tasks: a Label Studio JSON export. Without it, --project reads them from Label Studio.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the kept version (a prompt folder in PROMPTS_DIR's format). Never PROMPTS_DIR.")
@click.option("--holdout", type=click.FloatRange(0.05, 0.95), default=0.3, show_default=True,
              help="Share of the annotated tasks kept aside (stratified by label, seeded) to decide on each version; "
                   "the improver never sees them.")
@click.option("--rounds", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Rounds of improvement, each from the last kept version.")
@click.option("--project", default=None, metavar="ID",
              help="Improve the templates of this project (PROMPTS_DIR/projects/<ID>/); without --tasks, its "
                   "annotated tasks are read from Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of text.")
@click.option("--model", default=None, metavar="MODEL", help="The model that labels (default: LLM_MODEL).")
@click.option("--concurrency", type=click.IntRange(1, 512), default=None,
              help="Tasks predicted at once (default: LLM_CONCURRENCY).")
@click.option("-v", "--verbose", is_flag=True, help="Log each task's problems as they happen.")
def improve(config_path: Path, tasks_path: Path | None, out_dir: Path, holdout: float, rounds: int, project: str | None,
            as_json: bool, model: str | None, concurrency: int | None, verbose: bool) -> None:
    """Revise the instructions from the errors they cause; keep a revision only when held-out tasks say it is better.

    Splits the annotated tasks into a working part and a held-out part; runs the current prompts on
    the working part; asks IMPROVE_MODEL (default LLM_MODEL), in one request quoting the errors, for
    revised instructions (the meta-prompt is improve.j2, overridable in PROMPTS_DIR); runs both
    versions on the held-out part and keeps the revision only when the paired 95% bootstrap interval
    of the gain is above zero. The kept version goes to --out, never into PROMPTS_DIR: see it with
    `llm-backend prompts diff DIR`, use it by copying DIR's files into PROMPTS_DIR.

    Exit codes: 0 done (kept or not), 2 unusable input or too few annotated tasks, 130 interrupted.
    """
    _require_lab()
    from ..offline.compare import LabError, version_runner
    from ..offline.improve import ImproveJob, Improver
    from ..offline.lab_report import outcome_text, round_text
    from ..services import build_services

    settings = _settings(llm_model=model, llm_concurrency=concurrency)
    _logging(verbose, settings)
    _check_out(out_dir, settings)
    config = _config(config_path)
    if tasks_path is None and not project:
        raise InputError("--tasks or --project is required: the annotated tasks to learn from")
    tasks = _tasks(tasks_path) if tasks_path is not None else project_tasks(str(project))
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    try:
        job = ImproveJob(settings, config, project, version_runner(settings, config, project),
                         Improver(settings, build_services(settings), config, project), holdout, rounds,
                         on_round=lambda result: echo(round_text(result) + "\n"))
        working, held = job.start(tasks)
        echo(f"{len(working)} working tasks, {len(held)} held out (seeded, stratified by "
             f"{config.controls[0].name}); improving with {settings.improve_model or settings.llm_model}\n")
        outcome = job.improve(tasks, out_dir)
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command to continue; answers received come from the cache", err=True)
        raise SystemExit(INTERRUPTED) from None
    except (LabError, LLMBackendError) as exc:
        raise InputError(exc.message) from None
    echo(outcome_text(outcome, settings.prompts_dir))
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2, ensure_ascii=False))


def _check_out(out_dir: Path, settings: Settings) -> None:
    out = out_dir.expanduser().absolute()
    prompts = settings.prompts_dir
    if out == prompts or prompts in out.parents or out in prompts.parents:
        raise InputError(f"--out {out_dir} is (or holds) PROMPTS_DIR {prompts}: improve never writes there; "
                         "choose another folder and copy what is kept yourself")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out_dir} is not empty: choose a new folder")


@click.command("diff")
@click.argument("version_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--project", default=None, metavar="ID", help="Compare the templates in effect for this project.")
def prompts_diff(version_dir: Path, project: str | None) -> None:
    """Show what a prompt folder (e.g. one `improve` kept) changes against the prompts in use (PROMPTS_DIR).

    Exit code 0 when they are the same, 1 when they differ (as `diff` does)."""
    from ..engine.prompt_versions import template_diff
    from ..engine.prompts import PromptLibrary

    settings = _settings()
    diff = template_diff(PromptLibrary(settings.prompts_dir), PromptLibrary(version_dir), project)
    if not diff:
        click.echo(f"{version_dir} uses the same templates as {settings.prompts_dir}")
        return
    click.echo(diff, nl=False)
    click.echo(f"\nto use it: cp -r {version_dir}/. {settings.prompts_dir}/", err=True)
    sys.exit(1)


def register(main: click.Group, prompts: click.Group) -> None:
    main.add_command(improve)
    prompts.add_command(prompts_diff)

