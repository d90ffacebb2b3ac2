"""Shared fixtures: the test LLM server, settings pointed at it, and apps built from them."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_backend.settings import Settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer

# The shell a contributor runs the tests from may hold a real key, model, Label Studio or proxy: every
# setting the backend reads (and the providers' own variables LiteLLM reads) is removed before any test
# runs, so each test sees only what it passes, in-process and in the subprocesses it starts.
_PROVIDER_VARIABLE = re.compile(
    r"^(?:OPENAI|ANTHROPIC|AZURE|GEMINI|GOOGLE|VERTEX(?:AI)?|AWS|MISTRAL|GROQ|COHERE|OLLAMA|HOSTED_VLLM|VLLM|"
    r"TOGETHER(?:AI)?|DEEPSEEK|OPENROUTER|HUGGINGFACE|HF|XAI|FIREWORKS(?:_AI)?|LITELLM|LABEL_STUDIO)_"
    r"|_API_(?:KEY|BASE)$|^(?:HTTPS?|ALL)_PROXY$", re.IGNORECASE)
_SETTINGS = {name.upper() for name in Settings.model_fields}
for _name in list(os.environ):
    if _name.upper() in _SETTINGS or _PROVIDER_VARIABLE.search(_name):
        del os.environ[_name]
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch a price map from the internet

# A user following the README edits ./prompts (and gets a ./.cache) in the repository itself; a
# test that builds Settings without naming these folders, or a subprocess started from the
# repository, would read their templates and write into their cache. Point both at folders of this
# test session, before anything reads the environment; tests that want their own still pass them.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="llm-backend-tests-"))
os.environ["PROMPTS_DIR"] = str(_SESSION_DIR / "prompts")
os.environ["CACHE_DIR"] = str(_SESSION_DIR / "cache")
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)

FIXTURES = Path(__file__).parent / "fixtures"

# The Label Studio tests run on two xdist workers, each with its own Label Studio (the `label_studio` fixture is per
# session, so per worker): on one they were a chain of ten minutes while the other workers had finished. These
# modules, about half of that time, go to the second; a new module goes to the first unless named here.
_SECOND_LABEL_STUDIO = {"test_jobs_label_studio", "test_label_studio_e2e", "test_replicas_label_studio"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what needs Label Studio (it uses the fixture) and keep it on one of two xdist workers, so one session
    starts two Label Studios; `make check` leaves out Label Studio and the browser."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "label_studio_executable" in fixtures or item.get_closest_marker("label_studio"):
            item.add_marker(pytest.mark.label_studio)
        if "label_studio" in fixtures:
            second = item.path.stem in _SECOND_LABEL_STUDIO
            item.add_marker(pytest.mark.xdist_group("label_studio-2" if second else "label_studio"))
    if getattr(config.option, "loadgroup", False):  # an xdist worker of a --dist loadgroup run
        _apply_xdist_groups(items)


def _apply_xdist_groups(items: list[pytest.Item]) -> None:
    """What `--dist loadgroup` does: a test's id ends in "@GROUP", and the scheduler sends a group to one worker.
    pytest-xdist 3.8 writes that id to `item._nodeid`, which pytest 9 no longer reads (the id is `item._id`), so
    every group was spread over all the workers, each starting its own Label Studio or module server."""
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                 for mark in item.iter_markers("xdist_group")}
        if names and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(sorted(names))}")
REPO = Path(__file__).resolve().parent.parent

CHOICES_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
</View>"""

ALL_CONTROLS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive" hint="the author likes it"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="Sports"/><Choice value="Politics" alias="POL"/><Choice value="Tech"/>
  </Choices>
  <Labels name="ner" toName="text">
    <Label value="Person"/><Label value="Organization"/><Label value="Location"/>
  </Labels>
  <TextArea name="summary" toName="text" placeholder="One sentence summary"/>
  <Rating name="quality" toName="text" maxRating="5"/>
  <Number name="year" toName="text" min="1900" max="2100" step="1"/>
  <Taxonomy name="category" toName="text">
    <Choice value="News"><Choice value="World"/><Choice value="Local"/></Choice>
    <Choice value="Opinion"/>
  </Taxonomy>
</View>"""


def map_price(model: str) -> dict[str, float]:
    """`model`'s USD per token in the installed LiteLLM's bundled cost map (what the backend prices it with):
    tests compute the costs they expect from it instead of copying numbers a LiteLLM release may change."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    entry = json.loads((Path(spec.origin).parent / "model_prices_and_context_window_backup.json").read_text())[model]
    return {"input": entry["input_cost_per_token"], "output": entry["output_cost_per_token"],
            "batch_input": entry.get("input_cost_per_token_batches", entry["input_cost_per_token"] / 2),
            "batch_output": entry.get("output_cost_per_token_batches", entry["output_cost_per_token"] / 2)}


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _close_services() -> Iterator[None]:
    """Close what a test built: an app starts job consumer threads on its first batch /predict, and every
    store holds connections; stop and close them with the test, not 30 idle seconds later while other
    tests run (their stores may be gone by then), nor at the end of the session (descriptors run out)."""
    yield
    from llm_backend.engine.consumers import stop_all
    from llm_backend.services import close_all

    close_all(timeout=30)
    stop_all(timeout=30)


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The shared test LLM server, reset before each test, once no call is in flight: a call a previous test left
    running (its consumers stopped within their bound, a loaded machine) must not count in this test's peak."""
    deadline = time.monotonic() + 30
    while llm_server.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    llm_server.reset()
    llm_server.latency = 0.0
    llm_server.context_tokens = None
    llm_server.chars_per_token = None
    yield llm_server
    llm_server.reset()
    llm_server.context_tokens = None
    llm_server.chars_per_token = None


@pytest.fixture
def make_settings(tmp_path: Path, llm_server: FakeLLMServer) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "llm_model": "openai/test-model",
            "llm_api_base": llm_server.base_url,
            "llm_api_key": "sk-test-not-a-secret",
            "llm_timeout": 10,
            "llm_retry_max_wait": 2,
            "cache_dir": tmp_path / "cache",
            # The shipped defaults only: tests never read a user's edited prompts/ folder.
            "prompts_dir": tmp_path / "prompts",
            # Tests that post one batch twice in a row mean a later click, not the second-click window.
            "second_click_grace": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """A Flask test client for an app built with the given setting overrides."""

    def make(**overrides: Any) -> Any:
        return create_app(make_settings(**overrides)).test_client()

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BackendProcess:
    """`llm-backend serve` in a subprocess (real gunicorn), stopped on exit."""

    def __init__(self, env: dict[str, str], log_path: Path, *, command: list[str] | None = None,
                 cwd: Path = REPO) -> None:
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command or [sys.executable, "-m", "llm_backend", "serve", "--host", "127.0.0.1"],
            env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
            start_new_session=True,
        )

    def wait_until_listening(self, timeout: float = 60) -> float:
        """Seconds until the port accepted a connection."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"backend did not listen in {timeout} s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = 15) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.Signals(sig))
            try:
                self.process.wait(timeout=60)
            except Exception:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)


def backend_env(llm_server: FakeLLMServer, home: Path, **env: str) -> dict[str, str]:
    """What `llm-backend serve` is started with in the tests: a free port, the test LLM server, a cache and prompts
    folder under `home`; `env` adds to it or overrides it (the rest of the environment is the tests' own)."""
    return {
        "PORT": str(free_port()),
        "LLM_MODEL": "openai/test-model",
        "LLM_API_BASE": llm_server.base_url,
        "LLM_API_KEY": "sk-test-not-a-secret",
        "LLM_TIMEOUT": "10",
        "CACHE_DIR": str(home / "cache"),
        "PROMPTS_DIR": str(home / "prompts"),
        "SECOND_CLICK_GRACE": "0",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        **env,
    }


@pytest.fixture
def start_backend(tmp_path: Path, llm_server: FakeLLMServer) -> Iterator[Callable[..., BackendProcess]]:
    """`start_backend(**env)`: a `serve` with `backend_env(...)`, listening; `cwd=` starts it in another folder
    (relative paths in `env` are then read there, as on another host). Stopped with the test."""
    started: list[BackendProcess] = []

    def start(cwd: Path = REPO, **env: str) -> BackendProcess:
        backend = BackendProcess(backend_env(llm_server, tmp_path, **env), tmp_path / f"backend-{len(started)}.log",
                                 cwd=cwd)
        started.append(backend)
        backend.wait_until_listening()
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def start_app(tmp_path: Path, llm_server: FakeLLMServer) -> Iterator[Callable[..., Any]]:
    """`start_app(**env)`: the app `serve` runs, built from the same `backend_env(...)`, served over real HTTP by a
    thread of this process (testkit/app_server.py); the same `url`, `port`, `log()` and `stop()` as `start_backend`'s.
    For tests where Label Studio needs a backend to call, not a process: a `serve` subprocess costs about 4 s of CPU
    (LiteLLM imported again). Stopped with the test."""
    from testkit.app_server import AppServer

    started: list[AppServer] = []

    def start(**env: str) -> AppServer:
        started.append(AppServer(backend_env(llm_server, tmp_path, **env), tmp_path / f"app-{len(started)}.log"))
        return started[-1]

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="session")
def label_studio_executable(pytestconfig: pytest.Config) -> Path:
    """Label Studio 1.23.2's executable, installed into .venv-ls on first use with its progress shown
    (pytest would otherwise hold pip's output back, and a first run would look hung for minutes)."""
    from testkit.label_studio import ensure_venv

    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        return ensure_venv(progress=True)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory, label_studio_executable: Path) -> Iterator[Any]:
    """One real Label Studio 1.23.2 per test worker that runs Label Studio tests (two in a parallel run; installed
    into .venv-ls on first use)."""
    from testkit.label_studio import start_label_studio

    files = tmp_path_factory.mktemp("ls-files")
    # Local files serving gives tests real /data/local-files/?d=... URLs that need Label Studio auth.
    extra = {"LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(files)}
    with start_label_studio(tmp_path_factory.mktemp("ls"), extra_env=extra) as ls:
        ls.files_root = files
        yield ls


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (CI installs it: apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    import redis

    while True:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def cli(args: list[str], env: dict[str, str]) -> Any:
    """`llm-backend ARGS` run in this process by click's runner (`exit_code`, `stdout`, `stderr`), with `env` over the
    tests' environment: a subprocess would import LiteLLM again (seconds of CPU); keep those for what only a process
    shows (signals, startup, what gets imported)."""
    from click.testing import CliRunner

    from llm_backend.cli.main import main

    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def records_once_idle(services: Any, job: Any, timeout: float) -> list[Any]:
    """A job's ledger records once none is queued or running, or as they are when `timeout` runs out (a bound, not a
    pause: the caller's assertions then say what was left)."""
    deadline = time.monotonic() + timeout
    while True:
        records = services.job_store.records(job.id)
        if all(r.state not in ("queued", "running") for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def interrupt_after_calls(args: list[str], env: dict[str, str], llm: FakeLLMServer, calls: int
                          ) -> tuple[int, str, str]:
    """Run a CLI command, press Ctrl-C (SIGINT) once the model has seen `calls` calls; (rc, stdout, stderr)."""
    return interrupt_when(args, env, lambda: llm.calls >= calls)


def interrupt_when(args: list[str], env: dict[str, str], ready: Callable[[], bool]) -> tuple[int, str, str]:
    """Run a CLI command, press Ctrl-C (SIGINT) once `ready()`; (rc, stdout, stderr)."""
    # Ctrl-C's default action, whatever this run inherited: a shell without job control starts background
    # commands (a CI runner's, `make test &`) with SIGINT ignored, and Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while not ready() and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr
