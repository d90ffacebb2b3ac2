"""`llm-backend calibrate` and `llm-backend accept` (see offline/trust.py and the README's "Trust the labels")."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..core.calibration import Calibration
from ..core.config import LabelConfig, parse_label_config
from ..engine.projects import project_id
from ..errors import LLMBackendError
from ..label_studio import LabelStudioClient
from ..offline.trust import (
    TrustError,
    accept_project,
    apply_acceptance,
    calibrate_project,
    dumps,
    project_tasks,
    store_acceptance,
    store_calibration,
)
from ..services import Services, build_services
from .offline import InputError, _logging, _settings


def _services() -> Services:
    settings = _settings()
    _logging(False, settings)
    try:
        return build_services(settings)
    except LLMBackendError as exc:
        raise InputError(exc.message) from None


def _label_studio(services: Services) -> LabelStudioClient:
    if services.label_studio is None:
        raise InputError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY: calibrate and accept read the project's "
                         "annotations and predictions from Label Studio")
    return services.label_studio


def _project(services: Services, client: LabelStudioClient, project: str, model_version: str | None
             ) -> tuple[str, LabelConfig, str]:
    key = project_id(project)
    if key is None:
        raise InputError(f"--project {project!r} is not a Label Studio project id")
    try:
        info = client.project(key)
        config = parse_label_config(str(info.get("label_config") or ""))
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    state = services.projects.get(key)
    version = model_version or (state.model_version if state else None) or info.get("model_version")
    if not version:
        raise InputError(f"project {key} has no model_version yet: connect the backend and retrieve predictions "
                         "first, or name one with --model-version")
    return key, config, str(version)


def expected_signal(services: Services) -> str:
    """The signal this backend's scores come from now (what a calibration fitted now reads)."""
    settings = services.settings
    if settings.confidence != "auto":
        return settings.confidence
    predictor: Any = getattr(services.predictor, "predictor", services.predictor)  # a cascade's first model
    asks = predictor.requests.wants_logprobs(settings.llm_model) if hasattr(predictor, "requests") else False
    return "logprobs" if asks else "samples" if settings.confidence_samples else "off"


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"llm-backend: {message}", err=True)
    sys.exit(code)


@click.command()
@click.option("--project", required=True, help="Label Studio project id.")
@click.option("--model-version", default=None, help="Predictions of this version (default: the project's current).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {\"controls\": {NAME: {n, ece_before, ...}}}.")
def calibrate(project: str, model_version: str | None, as_json: bool) -> None:
    """Fit what each control's score means from the project's human annotations, and serve it from now on.

    Reads the tasks that have both a prediction of the model_version and a human annotation, fits a
    monotone map (isotonic regression) per control on half of them and measures it on the other half
    (ECE before and after, reliability table), and stores it where every worker reads it: /predict
    then returns calibrated scores. Exits 1 when no control has enough annotated tasks."""
    services = _services()
    client = _label_studio(services)
    key, config, version = _project(services, client, project, model_version)
    try:
        tasks = list(project_tasks(client, key, version))
        calibration = calibrate_project(config, tasks, version, expected_signal(services), salt=key)
    except TrustError as exc:
        _fail(exc.message)
        return
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    store_calibration(services.projects, key, calibration)
    if as_json:
        click.echo(dumps({"model_version": version, "signal": calibration.signal, "skipped": calibration.skipped,
                          "controls": {name: _control_json(c) for name, c in calibration.controls.items()}}))
        return
    click.echo(render_calibration(calibration))


def _control_json(control: Any) -> dict[str, Any]:
    data = control.to_dict()
    data.pop("mapping")
    return data


def render_calibration(calibration: Calibration) -> str:
    lines = [f"calibration of model_version {calibration.model_version} ({calibration.signal} scores), stored: "
             "/predict serves calibrated scores from now on"]
    for name, control in calibration.controls.items():
        lines.append(f"\n{name}: {control.n} annotated tasks, fitted on {control.n_fit}, measured on "
                     f"{control.n_holdout} held out (accuracy {control.accuracy:.3f})")
        lines.append(f"  expected calibration error: {control.ece_before:.3f} raw -> {control.ece_after:.3f} "
                     "calibrated")
        lines.append("  bin          tasks  mean raw  calibrated  observed accuracy")
        for b in control.bins:
            if b.count:
                lines.append(f"  {b.low:.1f}-{b.high:.1f}  {b.count:>9}  {b.mean_raw:>8.3f}  {b.mean_calibrated:>10.3f}"
                             f"  {b.accuracy:>17.3f}")
    for name, why in calibration.skipped.items():
        lines.append(f"\n{name}: not calibrated ({why}); raw scores are served for it")
    return "\n".join(lines)


@click.command()
@click.option("--project", required=True, help="Label Studio project id.")
@click.option("--precision", type=click.FloatRange(0, 1, min_open=True, max_open=True), required=True,
              help="Target precision of the accepted predictions, e.g. 0.95.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9,
              show_default=True, help="How sure the certificate must be that the precision is met.")
@click.option("--model-version", default=None, help="Predictions of this version (default: the project's current).")
@click.option("--apply", "apply_", is_flag=True,
              help="Turn exactly the accepted predictions into annotations (Label Studio's own action).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: {\"threshold\", \"precision_lower_bound\", \"accepted\", \"task_ids\", ...}.")
def accept(project: str, precision: float, confidence: float, model_version: str | None, apply_: bool,
           as_json: bool) -> None:
    """Accept the predictions whose precision is certified: at least PRECISION with probability CONFIDENCE.

    The lowest score threshold whose one-sided Clopper-Pearson bound, on annotated tasks the calibration
    was not fitted on, reaches PRECISION (fixed-sequence testing from the top). Only tasks without any
    annotation are accepted, and only when every control of the prediction is scored. Exits 1, accepting
    nothing, when the evidence cannot certify it, with an estimate of the annotations that would."""
    services = _services()
    client = _label_studio(services)
    key, config, version = _project(services, client, project, model_version)
    state = services.projects.get(key)
    stored = Calibration.from_dict(state.calibration) if state is not None and state.calibration else None
    calibration = stored if stored is not None and stored.model_version == version else None
    try:
        tasks = list(project_tasks(client, key, version))
        acceptance = accept_project(config, tasks, calibration, precision, confidence)
        if acceptance.certificate.threshold is not None and apply_:
            acceptance.created = apply_acceptance(client, key, version, acceptance.task_ids)
    except LLMBackendError as exc:
        raise InputError(exc.message) from None
    store_acceptance(services.projects, key, acceptance)
    certificate = acceptance.certificate
    if as_json:
        click.echo(dumps(acceptance.to_dict()))
    elif certificate.threshold is not None:
        click.echo(f"threshold {certificate.threshold:.3f} ({'calibrated' if calibration else 'raw'} score): "
                   f"precision >= {certificate.lower_bound:.4f} with confidence {confidence:g} "
                   f"(on {certificate.evidence} annotated tasks)")
        click.echo(f"accepted {len(acceptance.task_ids)} of {acceptance.candidates} unannotated tasks"
                   + (f"; created {acceptance.created} annotations" if acceptance.created is not None else
                      " (--apply to turn them into annotations)"))
        click.echo("task ids: " + " ".join(str(task_id) for task_id in acceptance.task_ids))
    if certificate.threshold is None:
        more = certificate.more_needed
        hint = (f"about {more} more annotated tasks (a random sample, like these) would certify it"
                if more is not None else "no threshold's observed precision reaches it: more annotations of the "
                "same kind will not help; lower --precision or improve the prompts")
        _fail(f"cannot certify precision {precision:g} with confidence {confidence:g} from "
              f"{certificate.evidence} annotated tasks; accepted nothing; {hint}"
              + ("" if calibration else " (no current calibration: run llm-backend calibrate first)"))


commands = [calibrate, accept]
