"""Where templates are read and written: a user's ./prompts, never the repository's or the package's,
and never by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.settings import load_settings
from tests.conftest import CHOICES_CONFIG, REPO


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*")) \
        if folder.exists() else []


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMPTS_DIR", "CACHE_DIR")}
    # The worktree's code, whatever the folder the command runs in.
    return {**env, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


def test_prompts_init_from_another_folder_writes_there_and_nowhere_else(tmp_path: Path) -> None:
    (tmp_path / "config.xml").write_text(CHOICES_CONFIG)
    repo_prompts, package = _listing(REPO / "prompts"), _listing(DEFAULT_PROMPTS_DIR)
    out = subprocess.run([sys.executable, "-m", "llm_backend", "prompts", "init", "--config", "config.xml",
                          "--project", "12"], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    written = [line.removeprefix("wrote ") for line in out.stdout.splitlines() if line.startswith("wrote ")]
    assert written and all(Path(path).is_relative_to(tmp_path / "prompts" / "projects" / "12") for path in written)
    assert (tmp_path / "prompts" / "projects" / "12" / "controls" / "choices.j2").read_text() == \
        (DEFAULT_PROMPTS_DIR / "controls" / "choices.j2").read_text()
    assert _listing(REPO / "prompts") == repo_prompts and _listing(DEFAULT_PROMPTS_DIR) == package


def test_the_tests_never_see_the_users_prompts_or_cache() -> None:
    """In process and in subprocesses started from the repository, PROMPTS_DIR and CACHE_DIR are this
    session's temp folders, so a user's ./prompts/projects/<id>/ edits cannot change a test's result."""
    settings = load_settings()
    code = "from llm_backend.settings import load_settings as l; s = l(); print(s.prompts_dir); print(s.cache_dir)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    for folder in (settings.prompts_dir, settings.cache_dir, *map(Path, out.stdout.split())):
        assert not folder.is_relative_to(REPO), folder
    assert out.stdout.split() == [str(settings.prompts_dir), str(settings.cache_dir)]


def test_the_issues_failing_test_passes_next_to_edited_and_broken_user_templates(tmp_path: Path) -> None:
    """The reported wrong turn: `prompts init --project 1` and an edit, then `make test` failed in
    test_routing. Replayed from a folder whose ./prompts holds an edited project 1 and a broken
    team template: the test must not notice either."""
    user = tmp_path / "prompts"
    (user / "projects" / "1").mkdir(parents=True)
    (user / "projects" / "1" / "system.j2").write_text("My own system prompt for project one.")
    (user / "user.j2").write_text("{% for x in %}")  # a template error stops any service that reads it
    test = f"{REPO / 'tests' / 'test_routing.py'}::test_extra_params_choose_a_projects_model_and_temperature"
    # Only the plugin the suite's settings name (pytest-timeout): the others (xdist, hypothesis, schemathesis...)
    # cost a second of CPU to load, for a test that needs none of them.
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                          "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), test], capture_output=True,
                         text=True, cwd=tmp_path, env=_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"), timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
