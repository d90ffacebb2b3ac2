"""The status page (`GET /`, HTML) and its JSON twin (`GET /jobs`): what the backend is doing, per project.

Per project: the model and model_version, each job's queued / running / done / failed counts, rate
and ETA, tokens and cost so far, the cache hit rate, the latest errors grouped by cause with the
fix, and a link to the latest evaluation report; above them, problems of the whole backend
(`services.health`). Both sit behind BASIC_AUTH_* like every route but /health and /webhook. They
show no secret (no key, no URL with credentials) and no task data: only counts, versions, model
names and error texts, which name causes, never a task's text.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import __version__
from ..engine.confidence import calibration_status
from ..engine.jobstatus import JobStatus, job_status
from ..errors import LLMBackendError
from ..label_studio import LabelStudioClient
from ..redact import redact
from ..services import Services

log = logging.getLogger(__name__)

_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                         lstrip_blocks=True)


class ProjectTitles:
    """Project titles read from Label Studio (the page shows them beside the ids), each asked at most once per
    `ttl` seconds: the page refreshes every few seconds and must not wait on Label Studio each time."""

    def __init__(self, client: LabelStudioClient | None, ttl: float = 300.0, timeout: float = 2.0) -> None:
        self.client = client
        self.ttl = ttl
        self.timeout = timeout
        self._known: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def title(self, project: str, now: float) -> str | None:
        if self.client is None or not project.isdigit():
            return None
        with self._lock:
            known = self._known.get(project)
        if known is not None and now - known[1] < self.ttl:
            return known[0]
        try:
            title = self.client.json("GET", f"/api/projects/{project}", timeout=self.timeout).get("title")
        except (LLMBackendError, ValueError, AttributeError) as exc:
            log.debug("no title for project %s: %s", project, exc)
            title = None  # asked again after ttl; the page shows the id meanwhile
        with self._lock:
            self._known[project] = (title if isinstance(title, str) and title else None, now)
        return self._known[project][0]


def task_link(label_studio_url: str | None, project: str, task_id: int) -> str | None:
    """Where the task opens in Label Studio's Data Manager, or None without LABEL_STUDIO_URL."""
    if not label_studio_url or not project.isdigit():
        return None
    return f"{label_studio_url.rstrip('/')}/projects/{project}/data?task={task_id}"


def _project_key(project: str) -> tuple[int, str]:
    return (int(project), "") if project.isdigit() else (1 << 62, project)


def status_data(services: Services, now: float | None = None, titles: ProjectTitles | None = None
                ) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values (the `/jobs` answer)."""
    now = time.time() if now is None else now
    settings = services.settings
    statuses: dict[str, list[JobStatus]] = {}
    for job in services.job_store.jobs():
        statuses.setdefault(job.project, []).append(job_status(job, services.job_store.records(job.id), now))
    states = {state.project: state for state in services.projects.all()}
    projects = []
    for project in sorted(set(statuses) | set(states), key=_project_key):
        state = states.get(project)
        jobs = sorted(statuses.get(project, []), key=lambda status: -status.created)
        projects.append({
            "project": project,
            "title": titles.title(project, now) if titles is not None else None,
            "model": (state.choice.model if state and state.choice.model else None) or settings.llm_model,
            "model_version": state.model_version if state else (jobs[0].model_version if jobs else None),
            "evaluation": f"/evaluation?project={project}" if state and state.evaluation else None,
            "evaluation_summary": (state.evaluation or {}).get("summary") if state else None,
            "calibration": calibration_status(state.calibration, state.model_version) if state else None,
            "jobs": [_with_links(_redacted(status.to_dict()), settings.ls_url, project) for status in jobs],
        })
    live = services.consumers.live() if settings.jobs_enabled else set()
    return {
        "backend": {
            "version": __version__,
            "model": settings.llm_model,
            "cascade": list(settings.cascade_models),
            "uptime_seconds": round(now - services.started, 1),
            "jobs_enabled": settings.jobs_enabled,
            "queue": "redis" if settings.cache_url else "sqlite",
            "consumers": len(live),
            "concurrency": settings.llm_concurrency,
            "writeback": services.label_studio is not None,
            "writeback_note": None if services.label_studio is not None else (
                "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are not set: tasks left to a job after the predict "
                'deadline are not written back; the next "Retrieve predictions" collects them'),
        },
        "problems": _problems(services),
        "unread": [_redacted_row(row) for row in services.metrics.unread_rows()],
        "projects": projects,
        "generated": now,
    }


def _problems(services: Services) -> list[dict[str, Any]]:
    """Start-up checks (a missing key, an unreachable LLM_API_BASE: their message names the fix), then what
    went wrong since (a whole batch failing for one cause, the write-back)."""
    found = [{"title": f"start-up check failed ({problem.check})", "message": redact(problem.message), "fix": "",
              "since": services.started, "last": services.started, "count": 1}
             for problem in services.startup.problems]
    return found + [{"title": p.title, "message": redact(p.message), "fix": p.fix, "since": p.since, "last": p.last,
                     "count": p.count} for p in services.health.all()]


def _redacted_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "reason": redact(row["reason"])}


def _redacted(data: dict[str, Any]) -> dict[str, Any]:
    for group in data["errors"]:
        group["last_error"] = redact(group["last_error"])
    if data.get("halted"):
        data["halted"] = redact(data["halted"])
    return data


def _with_links(data: dict[str, Any], label_studio_url: str | None, project: str) -> dict[str, Any]:
    for group in data["errors"]:
        group["tasks_failed"] = [{"id": task_id, "link": task_link(label_studio_url, project, task_id)}
                                 for task_id in group["task_ids"]]
    return data


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _cost(value: float | None) -> str:
    if value == 0:
        return "$0"  # nothing paid (the demo model, cached answers): not a price rounded down
    return "unknown" if value is None else f"${value:.4f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp)) if timestamp else "–"


_TEMPLATES.filters.update(duration=_duration, cost=_cost, percent=_percent, when=_when)


def render_status(services: Services, refresh: int = 5, titles: ProjectTitles | None = None) -> str:
    return _TEMPLATES.get_template("status.html.j2").render(data=status_data(services, titles=titles),
                                                            refresh=refresh)


# The page's icon: a bar of done (blue) and failed (red) work, as on the page. Browsers ask for /favicon.ico.
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           'fill="#e7eaf0"/><rect x="2" y="6" width="8" height="4" fill="#2f6fde"/><rect x="10" y="6" width="4" '
           'height="4" fill="#a40e26"/></svg>')
