"""`llm-backend` command line: serve, prompts init/show."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..core.config import parse_label_config
from ..core.objects import object_kind
from ..engine.inputs import task_texts
from ..errors import LLMBackendError, SettingsError
from ..settings import Settings, load_settings

# What `serve` and the commands log lines in (the tests' in-process app, testkit/app_server.py, writes the same).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    # LiteLLM and httpx log every request at INFO; keep them for DEBUG.
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        click.echo(f"llm-backend: {exc.message}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-backend")
def main() -> None:
    """An LLM-driven Label Studio ML backend. Settings come from environment variables (see README)."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (HOST, default 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port to listen on (PORT, default 9090).")
@click.option("--workers", default=None,
              help="Gunicorn worker processes, a number or `auto` (WORKERS, default auto: one per 32 of "
                   "LLM_CONCURRENCY, at most one per CPU core).")
@click.option("--threads", type=int, default=None, help="Request threads per worker (THREADS, default 8).")
def serve(host: str | None, port: int | None, workers: str | None, threads: int | None) -> None:
    """Run the backend under gunicorn (gthread workers, app preloaded)."""
    from ..web.server import run_gunicorn

    settings = _settings(host=host, port=port, workers=workers, threads=threads)
    configure_logging(settings.log_level)
    try:
        run_gunicorn(settings)
    except LLMBackendError as exc:
        click.echo(f"llm-backend: {exc.message}", err=True)
        sys.exit(2)


@main.command()
@click.option("--threads", type=click.IntRange(1, 512), default=None,
              help="Tasks predicted at once by this worker (default: LLM_CONCURRENCY).")
def worker(threads: int | None) -> None:
    """Work the job queue without serving HTTP: for larger deployments, next to `serve`.

    Uses the same queue and ledger as `serve` (SQLite in CACHE_DIR on this host, or Redis with
    CACHE_URL), predicts queued tasks and writes them back to Label Studio when LABEL_STUDIO_URL
    and LABEL_STUDIO_API_KEY are set. Stops on SIGTERM or Ctrl-C after the tasks in progress."""
    import signal
    import threading

    from ..services import build_services

    settings = _settings(llm_concurrency=threads)
    configure_logging(settings.log_level)
    try:
        services = build_services(settings)
    except LLMBackendError as exc:
        click.echo(f"llm-backend: {exc.message}", err=True)
        sys.exit(2)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    services.warm_up()
    services.consumers.start()
    if services.label_studio is None:
        logging.getLogger(__name__).warning(
            "LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY not set: finished tasks are not written back to Label Studio; "
            "the next \"Retrieve predictions\" collects them")
    stop.wait()
    services.consumers.stop(timeout=settings.llm_timeout)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A label config XML to check (controls, toName, $field).")
@click.option("--backend-url", default=None, metavar="URL",
              help="The backend's URL as Label Studio uses it, to check Label Studio accepts it (default: "
                   "http://localhost:PORT when Label Studio runs on this machine).")
def doctor(config_path: Path | None, backend_url: str | None) -> None:
    """Check settings, the model, Label Studio and a label config; print each result with its fix.

    Exits 1 when any check fails."""
    from ..offline.doctor import render, run_doctor

    configure_logging("ERROR")
    checks = run_doctor(config_path, backend_url=backend_url)
    click.echo(render(checks))
    sys.exit(1 if any(check.failed for check in checks) else 0)


@main.group()
def prompts() -> None:
    """Inspect and customise the prompt templates."""


def _load_config(path: Path) -> Any:
    try:
        return parse_label_config(path.read_text(encoding="utf-8"))
    except LLMBackendError as exc:
        raise click.ClickException(f"{path}: {exc.message}") from None


@prompts.command("init")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The project's label config XML (checked, and used for the preview).")
@click.option("--project", default=None,
              help="Label Studio project id: write PROMPTS_DIR/projects/<ID>/, which overrides the templates for "
                   "that project only. Without it, copy the default templates into PROMPTS_DIR (./prompts).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def prompts_init(config_path: Path, project: str | None, force: bool) -> None:
    """Write an editable copy of the prompt templates and print the prompt they give."""
    from ..engine.prompts import PromptLibrary

    settings = _settings()
    config = _load_config(config_path)
    library = PromptLibrary(settings.prompts_dir)
    if not project:
        written = library.init_defaults(force=force)
        for path in written:
            click.echo(f"wrote {path}")
        if not written:
            click.echo(f"{library.root} already has every template (use --force to overwrite)")
    else:
        written = library.init_project(project, force=force)
        for path in written:
            click.echo(f"wrote {path}")
        if not written:
            click.echo(f"{library.project_dir(project)} already has every template (use --force to overwrite)")
    sample = example_task(config)
    click.echo(f"--- the prompt for an example task ({json.dumps(sample['data'], ensure_ascii=False)}); "
               "`llm-backend prompts show --task FILE` shows one of yours")
    _print_prompt(settings, library, config, project, sample)


EXAMPLE_TEXT = "The new phone from Acme arrived in Berlin on Monday, and I love how light it is."


def example_task(config: Any) -> dict[str, Any]:
    """A task to preview the prompt with: a sentence for text fields, an example URL for images and audio."""
    data: dict[str, Any] = {}
    for obj in config.objects.values():
        if not obj.data_key:
            continue
        shape = object_kind(obj.tag).example
        if shape is not None:
            data[obj.data_key] = shape(EXAMPLE_TEXT)  # a list of utterances, of messages, a table row...
        else:
            data[obj.data_key] = EXAMPLE_TEXT if obj.is_text else f"https://example.com/{obj.data_key}.jpg"
    return {"id": 0, "data": data}


@prompts.command("show")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The project's label config XML.")
@click.option("--task", "task_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A JSON file with one task ({\"data\": {...}}).")
@click.option("--project", default=None, help="Label Studio project id whose templates to use.")
def prompts_show(config_path: Path, task_path: Path, project: str | None) -> None:
    """Print the messages the model would get for one task."""
    from ..engine.prompts import PromptLibrary

    settings = _settings()
    config = _load_config(config_path)
    try:
        task = json.loads(task_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise click.ClickException(f"{task_path}: not valid JSON: {exc}") from None
    if isinstance(task, dict) and "data" not in task:
        task = {"data": task}
    _print_prompt(settings, PromptLibrary(settings.prompts_dir), config, project, task)


def _register_offline_commands() -> None:
    from .lab import register as register_lab
    from .offline import commands
    from .plan import plan_command
    from .trust import commands as trust_commands

    for command in [*commands, plan_command, *trust_commands]:
        main.add_command(command)
    register_lab(main, prompts)


def _print_prompt(settings: Settings, library: Any, config: Any, project: str | None, task: dict[str, Any]) -> None:
    from ..engine.predictor import PredictionJob
    from ..engine.request_builder import RequestBuilder

    # Only the request builder: a prompt is shown, never sent.
    builder = RequestBuilder(settings, library)
    try:
        request = builder.build_request(PredictionJob(config, project, task), task_texts(config, task))
    except LLMBackendError as exc:
        raise click.ClickException(exc.message) from None
    for message in request.messages:
        click.echo(f"--- {message['role']} ---")
        click.echo(message["content"])
    click.echo(f"--- model_version: {builder.model_version(config, project)}")


_register_offline_commands()
