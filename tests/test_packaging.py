"""The package as a user installs it: a non-editable wheel in a fresh virtualenv, run from an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import requests

from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, REPO, BackendProcess, free_port


def test_import_loads_neither_flask_nor_litellm_and_offline_commands_skip_the_web_layer() -> None:
    code = ("import sys, llm_backend, llm_backend.cli.offline, llm_backend.offline.runs, llm_backend.services; "
            "print(json.dumps([m for m in ('flask', 'litellm', 'werkzeug') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", f"import json; {code}"], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [], out.stderr


def test_a_non_editable_install_works_from_an_empty_directory(tmp_path: Path, llm: FakeLLMServer) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, timeout=600)
    [wheel] = wheels.glob("llm_backend-*.whl")
    venv = tmp_path / "venv"
    # A virtualenv without a pip of its own (installing one costs more CPU than the rest of this test): this
    # environment's pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # Without the caller's PYTHONPATH: a source tree on it (PYTHONPATH=$PWD, with the llm_backend.egg-info that
    # `pip wheel` leaves there) counts as installed, and pip would skip the wheel.
    outside = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=300, env=outside)
    empty = tmp_path / "empty"
    empty.mkdir()
    # The dependencies come from the test environment; llm_backend itself only from the fresh install.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "CACHE_DIR": str(tmp_path / "cache"),
           "LLM_MODEL": "openai/test-model", "LLM_API_BASE": llm.base_url, "LLM_API_KEY": "sk-test-not-a-secret"}
    env.pop("PROMPTS_DIR", None)
    where = subprocess.run([venv / "bin" / "python", "-c", "import llm_backend; print(llm_backend.__file__)"],
                           capture_output=True, text=True, cwd=empty, env=env, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    package = Path(where).parent
    shipped = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.j2"))
    assert "prompts/system.j2" in shipped and "prompts/controls/datetime.j2" in shipped

    (tmp_path / "config.xml").write_text(CHOICES_CONFIG)
    (tmp_path / "task.json").write_text(json.dumps({"data": {"text": "a lovely day"}}))
    show = subprocess.run([venv / "bin" / "llm-backend", "prompts", "show", "--config", str(tmp_path / "config.xml"),
                           "--task", str(tmp_path / "task.json")], capture_output=True, text=True, cwd=empty,
                          env=env, timeout=120)
    assert show.returncode == 0, show.stderr
    assert "You are a meticulous data annotator" in show.stdout and "a lovely day" in show.stdout

    llm.add_rule("lovely", Reply(json={"sentiment": "Positive"}))
    port = free_port()
    backend = BackendProcess({**env, "PORT": str(port)}, tmp_path / "serve.log",
                             command=[str(venv / "bin" / "llm-backend"), "serve", "--host", "127.0.0.1"], cwd=empty)
    try:
        backend.wait_until_listening()
        body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "a lovely day"}}]}
        response = requests.post(f"{backend.url}/predict", json=body, timeout=60)
        assert response.status_code == 200, backend.log()
        assert response.json()["results"][0]["result"][0]["value"] == {"choices": ["Positive"]}
    finally:
        backend.stop()
    # Nothing was written into the installed package or the folder the commands ran in.
    assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*.j2")) == shipped
    assert list(empty.iterdir()) == []


def test_make_serve_installs_only_the_backend_and_make_test_the_test_tools(tmp_path: Path) -> None:
    """`make -n` prints what each target would run, without running it."""
    def plan(target: str) -> str:
        out = subprocess.run(["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}", f"LS_VENV={tmp_path / 'ls'}"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    for target in ("serve", "demo", "doctor", "install"):
        steps = plan(target)
        assert "pip install -q -e .\n" in steps and "[test]" not in steps and "testkit" not in steps, steps
    assert "LLM_MODEL=demo" in plan("demo") and f"{tmp_path}/venv/bin/llm-backend serve" in plan("serve")
    steps = plan("test")
    # Label Studio installs in the background with the system Python (LS_VENV tells the tests where).
    assert "pip install -q -e '.[test,lab]'" in steps and f"LS_VENV={tmp_path}/ls" in steps and "-m pytest" in steps
    assert f"LS_VENV={tmp_path}/ls python3 -m testkit.ls_install &" in steps
    steps = plan("check")
    assert "pip install -q -e '.[test,lab]'" in steps and "-m pytest" in steps and "not label_studio" in steps
