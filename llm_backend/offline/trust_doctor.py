"""`doctor`'s calibration check: each project's calibration, and whether it still fits its model_version."""

from __future__ import annotations

from ..engine.confidence import calibration_status
from ..engine.projects import open_project_store
from ..settings import Settings

CheckRow = tuple[str, str, str, str]  # name, status (pass | warn), detail, fix


def calibration_checks(settings: Settings) -> list[CheckRow]:
    """One row per project that has a calibration; none when no project has one."""
    try:
        states = open_project_store(settings.cache_dir, settings.cache_url).all()
    except Exception as exc:  # an unreachable Redis is the cache check's business, not this one's
        return [("calibration", "warn", f"could not read the project store: {type(exc).__name__}", "")]
    rows: list[CheckRow] = []
    for state in states:
        status = calibration_status(state.calibration, state.model_version)
        if status is None:
            continue
        name = f"calibration of project {state.project}"
        if status["stale"]:
            rows.append((name, "warn", f"fitted for model_version {status['model_version']}, but the project now "
                         f"predicts with {state.model_version} (a prompt, model or example change): raw scores "
                         "are served", f"llm-backend calibrate --project {state.project}"))
            continue
        controls = ", ".join(f"{control} ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f} (n={c['n']})"
                             for control, c in status["controls"].items())
        rows.append((name, "pass", f"{status['signal']} scores calibrated for {status['model_version']}: {controls}",
                     ""))
    return rows
