"""Run a real Label Studio 1.23.2 for tests, and talk to its REST API.

The backend is only worth testing against the thing that calls it, so the tests start a
real ``label-studio`` process (its own virtualenv, because its Django stack must not mix
with ours), point it at the backend and drive it through the same REST calls the UI makes.

Usage::

    from testkit.label_studio import start_label_studio

    with start_label_studio(tmp_path) as ls:
        project = ls.create_project("demo", LABEL_CONFIG)
        task_ids = ls.import_tasks(project, [{"text": "I love it"}, {"text": "meh"}])
        ml = ls.connect_ml_backend(project, "http://127.0.0.1:9090", is_interactive=True)
        ls.retrieve_predictions(project, task_ids)   # synchronous: returns after /predict
        for prediction in ls.predictions(project):
            print(prediction["task"], prediction["model_version"], prediction["result"])

    # Personal access tokens (JWT refresh tokens), the default for new organizations:
    with start_label_studio(tmp_path, legacy_tokens=False) as ls:
        pat = ls.create_personal_access_token()
        access = ls.exchange_personal_access_token(pat)   # POST /api/token/refresh/
        requests.get(f"{ls.url}/api/projects", headers={"Authorization": f"Bearer {access}"})

What Label Studio 1.23.2 does, as observed through this harness:

* Startup on a fresh SQLite database is ~20 s of Django migrations on 2 cores. The harness
  migrates an empty database once per LS installation (cached inside the LS virtualenv) and
  copies it into each new data dir, which brings a start down to ~3 s. LS applies any
  migration the copy lacks by itself, so a stale copy only costs time.
* ``POST /api/projects/{id}/import?return_task_ids=true`` is synchronous in the Community
  edition and answers ``task_ids``.
* ``POST /api/ml`` calls ``GET /health`` + ``POST /setup`` twice (serializer validation, then
  a state update); an unreachable backend gives 400 with ``validation_errors.non_field_errors``
  ``["Can't connect to ML backend <url>, health check failed. ..."]``, a failing ``/setup``
  gives 400 ``"Successfully connected to <url> but it doesn't look like a valid ML backend..."``.
  ``GET /api/ml/{id}`` calls ``/health`` + ``/setup`` again.
* The Data Manager action ``retrieve_tasks_predictions`` runs inside the HTTP request: when
  it returns, the predictions are stored. Its answer (``{"processed_items": n, "detail":
  "Retrieved n predictions"}``) counts selected tasks, not stored predictions.
* ``POST /api/ml/{id}/interactive-annotating`` needs the backend connected with
  ``is_interactive=True``; failures come back as 200 ``{"errors": [...]}``.
* PATs: ``POST /api/token/`` (any authenticated session) answers 201 ``{"token": <JWT>}``,
  or 409 when the user already has one; ``GET /api/token/`` lists them truncated (no
  signature), which ``POST /api/token/blacklist/`` ``{"refresh": <truncated>}`` accepts to
  revoke. ``POST /api/token/refresh/`` ``{"refresh": PAT}`` answers ``{"access": <JWT>}``,
  valid 5 minutes. ``POST /api/jwt/settings`` ``{"api_tokens_enabled": true,
  "legacy_api_tokens_enabled": false}`` switches legacy tokens off for the organization at
  once: ``Token`` then gets 401 "Authentication token no longer valid: legacy token
  authentication has been disabled for this organization".

Linux/macOS only (process groups, ``fcntl``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

# The install needs the standard library only (`make test` runs it with the system Python while .venv installs).
from testkit.ls_install import LS_VERSION, REPO_ROOT, _dist_info, _file_lock, default_venv_path, ensure_venv

__all__ = ["LS_VERSION", "REPO_ROOT", "LabelStudio", "LabelStudioError", "default_venv_path", "ensure_venv",
           "start_label_studio"]

#: Seconds to wait for ``GET /health`` (and for the one-off migration run): ~20-35 s when migrating.
STARTUP_TIMEOUT = 240.0
#: Above LS's own ML_TIMEOUT_PREDICT (100 s), so a slow backend surfaces as LS's error, not ours.
PREDICT_TIMEOUT = 200.0
API_TIMEOUT = 60.0

# Names LS reads with get_env(), which tries LABEL_STUDIO_<name>, HEARTEX_<name> and the bare
# <name>: a developer's or CI runner's HOST, PORT, DEBUG, USERNAME... would otherwise leak in.
_LEAKY_BARE_NAMES = frozenset(
    {
        "HOST",
        "PORT",
        "DEBUG",
        "LOG_LEVEL",
        "USERNAME",
        "PASSWORD",
        "USER_TOKEN",
        "DATABASE_NAME",
        "DJANGO_DB",
        "SECRET_KEY",
        "BASE_DATA_DIR",
        "SENTRY_DSN",
        "FRONTEND_SENTRY_DSN",
        "DJANGO_SETTINGS_MODULE",
    }
)
_SERVER_LINE = re.compile(r"Starting development server at (http://[^/\s]+)/")


class LabelStudioError(RuntimeError):
    """An API call answered with an unexpected status; ``body`` is the raw response text."""

    def __init__(self, method: str, url: str, status_code: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status_code}: {body[:2000]}")
        self.method = method
        self.url = url
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        return _json_or_text(self.body)


class LabelStudioStartError(RuntimeError):
    """Label Studio did not come up; the message carries the tail of its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<no log: {exc}>"


def _die_with_parent() -> None:
    # If pytest itself is SIGKILLed (CI timeout, OOM) no finalizer runs; PR_SET_PDEATHSIG makes the
    # kernel SIGTERM Label Studio then. It fires when the *thread* that forked exits, so start
    # LabelStudio from a thread that outlives it (pytest's main thread does).
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _child_env(data_dir: Path, legacy_tokens: bool, extra: Mapping[str, str | None] | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LABEL_STUDIO_", "HEARTEX_")) and key not in _LEAKY_BARE_NAMES
    }
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            # Both default to refusing an ML backend on localhost (403 / "reserved network address").
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
            # Read once, when the organization is created on first start; new orgs default to PATs only.
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true" if legacy_tokens else "false",
            # No network in CI, and nothing to report from a test run: no Sentry, PyPI or analytics.
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            # LS reads DEBUG via get_env (LABEL_STUDIO_DEBUG), not DJANGO_DEBUG.
            "LABEL_STUDIO_DEBUG": "false",
            # An empty HOST makes /setup's "hostname" http://localhost:<port>, as in a default install.
            "LABEL_STUDIO_HOST": "",
            "LOG_LEVEL": "WARNING",
            # The startup wait parses the "Starting development server at" line from the log file.
            "PYTHONUNBUFFERED": "1",
        }
    )
    # None unsets a variable: e.g. the two SSRF settings, to run Label Studio with its own defaults.
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _migrated_database(executable: Path, env: Mapping[str, str]) -> Path | None:
    """An empty, fully migrated LS database for this installation, built on first use.

    ``label-studio version`` applies the migrations and exits without creating a user or an
    organization, so the copy is as fresh as a new data dir, minus ~20 s of migrations.
    """
    venv = executable.parent.parent
    ls_info, django_info = _dist_info(venv, "label_studio"), _dist_info(venv, "django")
    if ls_info is None or django_info is None:
        return None  # not a venv layout we understand: no key to tell installations apart
    cache = venv / "label-studio-db-template"
    database = cache / f"{ls_info.name}-{django_info.name}.sqlite3"
    if database.exists():
        return database
    with _file_lock(cache / ".lock"):
        if database.exists():
            return database
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
        try:
            log = scratch / "migrate.log"
            with log.open("wb") as out:
                result = subprocess.run(
                    [str(executable), "version"],
                    env={**env, "LABEL_STUDIO_BASE_DATA_DIR": str(scratch)},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=STARTUP_TIMEOUT,
                    check=False,
                )
            if result.returncode != 0:
                raise LabelStudioStartError(f"label-studio version (migrations) failed:\n{_tail(log)}")
            # os.replace is atomic: a reader never sees a half-copied database.
            os.replace(scratch / "label_studio.sqlite3", database)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return database


# Strong references on purpose: an instance dropped without stop() must still be stopped at exit.
_running: set[LabelStudio] = set()


@atexit.register
def _stop_forgotten() -> None:
    for instance in list(_running):
        instance.stop()


class LabelStudio:
    """A ``label-studio start`` process on a free port, plus a client for its REST API.

    With ``legacy_tokens=True`` (default) the client authenticates with ``Authorization: Token
    <token>``; with ``legacy_tokens=False`` the organization only accepts PATs and sessions, so
    the client logs in with ``username``/``password`` (session cookie) instead.

    After :meth:`start`: ``url`` (``http://127.0.0.1:<port>``), ``token`` (the legacy token, 40
    hex), ``username``, ``password``, ``data_dir``, ``log_path``, ``process``, ``session`` (the
    authenticated ``requests.Session``) and ``startup_seconds`` (wall time of ``start()``, without
    a venv install). Without ``data_dir`` a temp dir is used and removed by :meth:`stop`.
    """

    def __init__(
        self,
        *,
        executable: Path | None = None,
        data_dir: Path | None = None,
        legacy_tokens: bool = True,
        username: str = "admin@example.com",
        password: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        reuse_migrated_db: bool = True,
        extra_env: Mapping[str, str | None] | None = None,
    ) -> None:
        self.executable = executable
        self.legacy_tokens = legacy_tokens
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.token = secrets.token_hex(20)  # 40 hex chars, the shape of an LS legacy token
        self.startup_timeout = startup_timeout
        self.reuse_migrated_db = reuse_migrated_db
        self.extra_env = dict(extra_env or {})
        self._own_data_dir = data_dir is None
        # Created by start(), so an instance that is never started leaves nothing behind.
        self.data_dir = data_dir or Path(tempfile.gettempdir()) / f"label-studio-{secrets.token_hex(6)}"
        self.log_path = self.data_dir / "label-studio.log"
        self.url = ""
        self.startup_seconds: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    # -- process ---------------------------------------------------------------------------

    def start(self) -> LabelStudio:
        if self.process is not None:
            raise RuntimeError("Label Studio already started")
        executable = self.executable or ensure_venv()
        database = self.data_dir / "label_studio.sqlite3"
        if database.exists():
            # LS only creates the user (and sets its password and token) on an empty database, so
            # this instance's fresh credentials would be silently ignored.
            raise RuntimeError(f"{self.data_dir} already holds a Label Studio database; use a fresh directory")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = ""
        self.session = requests.Session()
        env = _child_env(self.data_dir, self.legacy_tokens, self.extra_env)
        started = time.monotonic()
        if self.reuse_migrated_db:
            template = _migrated_database(executable, env)
            if template is not None:
                shutil.copyfile(template, database)
        port = _free_port()
        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            # "--opt=value": a random password may start with "-", which argparse takes for an option.
            f"--username={self.username}",
            f"--password={self.password}",
            f"--user-token={self.token}",
        ]
        launched = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so stop() can signal everything it may spawn at once.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _running.add(self)
        try:
            self._wait_until_healthy(launched)
            if not self.legacy_tokens:
                self._use_session_auth()
            else:
                self.session.headers["Authorization"] = f"Token {self.token}"
        except BaseException:
            # Keep the data dir: the log it holds is the only account of what went wrong.
            self._terminate()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_until_healthy(self, started: float) -> None:
        assert self.process is not None
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabelStudioStartError(
                    f"label-studio exited with {self.process.returncode} during startup; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if not self.url:
                # LS silently moves to the next port when ours was taken meanwhile; trusting the
                # port we chose could then put us on someone else's server.
                match = _SERVER_LINE.search(self.log_path.read_text(errors="replace"))
                if match:
                    self.url = match.group(1)
            if self.url:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return
            time.sleep(0.25)
        raise LabelStudioStartError(
            f"Label Studio not healthy after {self.startup_timeout:.0f} s; log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Terminate the whole process group and reap it, then drop a temp data dir; idempotent."""
        self._terminate()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _terminate(self) -> None:
        process, self.process = self.process, None
        _running.discard(self)
        self.session.close()
        if process is not None:
            for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> LabelStudio:
        return self if self.process is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP plumbing ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        expected: tuple[int, ...] = (200, 201, 204),
        timeout: float = API_TIMEOUT,
        **kwargs: Any,
    ) -> Any:
        """Call the API with this client's auth; parsed JSON (None for an empty body), or raise."""
        if not self.url:
            raise RuntimeError("Label Studio is not started")
        csrf = self.session.cookies.get("csrftoken")
        headers = {"X-CSRFToken": csrf} if csrf else {}
        headers.update(kwargs.pop("headers", {}))
        url = f"{self.url}{path}"
        response = self.session.request(method, url, timeout=timeout, headers=headers, **kwargs)
        if response.status_code not in expected:
            raise LabelStudioError(method, url, response.status_code, response.text)
        return response.json() if response.content else None

    def _use_session_auth(self) -> None:
        # Legacy tokens off means the Token header is rejected outright (401, even alongside a
        # valid session cookie), so drop it and log in like the browser does.
        self.session.headers.pop("Authorization", None)
        login = f"{self.url}/user/login/"
        self.session.get(login, timeout=API_TIMEOUT).raise_for_status()
        response = self.session.post(
            login,
            data={
                "email": self.username,
                "password": self.password,
                "csrfmiddlewaretoken": self.session.cookies.get("csrftoken", ""),
            },
            headers={"Referer": login},
            allow_redirects=False,
            timeout=API_TIMEOUT,
        )
        # Success is a redirect; a bad password re-renders the form with 200.
        if response.status_code != 302:
            raise LabelStudioError("POST", login, response.status_code, response.text)

    # -- projects and tasks ----------------------------------------------------------------

    def create_project(self, title: str, label_config: str, **extra: Any) -> int:
        """``title`` must be 3+ characters (LS answers 400 otherwise)."""
        project = self.request("POST", "/api/projects", json={"title": title, "label_config": label_config, **extra})
        return int(project["id"])

    def get_project(self, project_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/projects/{project_id}"))

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import tasks (``{"field": ...}`` or ``{"data": {...}}``); their ids, in order."""
        answer = self.request("POST", f"/api/projects/{project_id}/import?return_task_ids=true", json=tasks)
        return [int(task_id) for task_id in answer.get("task_ids", [])]

    def list_tasks(self, project_id: int, page_size: int = 100) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            # Asking past the last page is a 404 "Invalid page.", so stop on the reported total.
            answer = self.request(
                "GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": page_size}
            )
            tasks.extend(answer["tasks"])
            if not answer["tasks"] or len(tasks) >= int(answer["total"]):
                return tasks
            page += 1

    def get_task(self, task_id: int) -> dict[str, Any]:
        """The task with its ``predictions`` and ``annotations``."""
        return dict(self.request("GET", f"/api/tasks/{task_id}"))

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """Also makes LS POST ``annotation_created`` to ``<backend>/webhook`` (1 s timeout)."""
        return dict(self.request("POST", f"/api/tasks/{task_id}/annotations", json={"result": result, **extra}))

    # -- ML backend ------------------------------------------------------------------------

    def connect_ml_backend(self, project_id: int, url: str, title: str = "llm-backend", **extra: Any) -> int:
        """``POST /api/ml``; LS calls ``/health`` and ``/setup`` before answering.

        ``extra``: e.g. ``is_interactive=True`` (needed by :meth:`interactive_annotating`),
        ``auth_method="BASIC_AUTH", basic_auth_user=..., basic_auth_pass=...``,
        ``extra_params=...``, ``timeout=...``. An unreachable backend raises
        :class:`LabelStudioError` 400 "Can't connect to ML backend ..., health check failed".
        """
        backend = self.request("POST", "/api/ml", json={"project": project_id, "url": url, "title": title, **extra})
        return int(backend["id"])

    def get_ml_backend(self, ml_id: int) -> dict[str, Any]:
        """``state`` is "CO" (connected), "DI", "ER" ...; LS re-runs ``/health`` + ``/setup`` for it."""
        return dict(self.request("GET", f"/api/ml/{ml_id}"))

    def retrieve_predictions(self, project_id: int, task_ids: list[int]) -> dict[str, Any]:
        """The Data Manager's "Retrieve predictions": one ``/predict`` with all tasks lacking a
        prediction of the backend's current model version.

        Synchronous in 1.23.2: predictions are stored when this returns. The answer counts the
        selected tasks even when the backend failed, so check :meth:`predictions`.
        """
        return dict(
            self.request(
                "POST",
                "/api/dm/actions",
                params={"id": "retrieve_tasks_predictions", "project": project_id},
                json={"selectedItems": {"all": False, "included": list(task_ids)}},
                timeout=PREDICT_TIMEOUT,
            )
        )

    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        """All stored predictions of a project: ``task``, ``result``, ``score``, ``model_version``..."""
        return list(self.request("GET", "/api/predictions", params={"project": project_id}))

    def interactive_annotating(self, ml_id: int, task_id: int, context: Any) -> dict[str, Any]:
        """``{"data": <first results item>}`` on success; backend trouble is 200 ``{"errors": [...]}``."""
        return dict(
            self.request(
                "POST",
                f"/api/ml/{ml_id}/interactive-annotating",
                json={"task": task_id, "context": context},
                timeout=PREDICT_TIMEOUT,
            )
        )

    # -- tokens ----------------------------------------------------------------------------

    def jwt_settings(self) -> dict[str, Any]:
        """``{"api_tokens_enabled": bool, "legacy_api_tokens_enabled": bool}`` of the organization."""
        return dict(self.request("GET", "/api/jwt/settings"))

    def set_legacy_tokens(self, enabled: bool) -> dict[str, Any]:
        """Switch legacy ``Token`` auth for the whole organization, effective immediately."""
        if not enabled:
            # The switch would lock this client out mid-test if it still used the legacy token.
            self._use_session_auth()
        return dict(
            self.request(
                "POST",
                "/api/jwt/settings",
                json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": enabled},
            )
        )

    def create_personal_access_token(self) -> str:
        """A new PAT (JWT refresh token, 200-year lifetime) for this user, revoking any older one.

        LS allows one live PAT per user (a second ``POST /api/token/`` is 409) and never shows a
        full PAT again, so earlier ones are blacklisted to make room.
        """
        try:
            return str(self.request("POST", "/api/token/")["token"])
        except LabelStudioError as exc:
            if exc.status_code != 409:
                raise
        for existing in self.request("GET", "/api/token/"):
            self.request("POST", "/api/token/blacklist/", json={"refresh": existing["token"]})
        return str(self.request("POST", "/api/token/")["token"])

    def exchange_personal_access_token(self, personal_access_token: str) -> str:
        """``POST /api/token/refresh/`` with nothing but the PAT; the short-lived (5 min) access token."""
        url = f"{self.url}/api/token/refresh/"
        response = requests.post(url, json={"refresh": personal_access_token}, timeout=API_TIMEOUT)
        if response.status_code != 200:
            raise LabelStudioError("POST", url, response.status_code, response.text)
        return str(response.json()["access"])


def start_label_studio(tmp_dir: Path, legacy_tokens: bool = True, **kwargs: Any) -> LabelStudio:
    """A started :class:`LabelStudio` keeping its data and log under ``tmp_dir``; use it as a
    context manager (or call ``stop()``) so the process ends with the test."""
    return LabelStudio(data_dir=Path(tmp_dir) / "label-studio", legacy_tokens=legacy_tokens, **kwargs).start()


def prepare() -> Path:
    """Install Label Studio and migrate its template database, saying so: `make test` runs this before
    pytest, where output is not held back, so a first run shows its progress instead of looking hung."""
    executable = ensure_venv(progress=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        venv = executable.parent.parent
        ready = any((venv / "label-studio-db-template").glob("*.sqlite3"))
        if not ready:
            print("Migrating an empty Label Studio database, once per installation (1-2 minutes on 2 busy "
                  "cores); every test's Label Studio then starts from a copy", file=sys.stderr, flush=True)
        _migrated_database(executable, _child_env(Path(scratch), True, None))
        if not ready:
            print(f"Migrated in {time.monotonic() - started:.0f} s.", file=sys.stderr, flush=True)
    return executable


if __name__ == "__main__":
    prepare()
