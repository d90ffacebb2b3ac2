"""Prompt templates: the defaults shipped in the package, the user's edits, per-project overrides.

Lookup order for a project with id P, file by file:

    <PROMPTS_DIR>/projects/P/<file>   a project's own edits
    <PROMPTS_DIR>/<file>              the team's edits (PROMPTS_DIR defaults to ./prompts)
    llm_backend/prompts/<file>        the defaults, inside the installed package

so a user edits only what they want to change, and nothing is ever written into the package.
Templates are re-read when their file changes (Jinja's auto_reload checks mtimes), and the
fingerprint of the files in effect is part of `model_version`, so an edit makes Label Studio
re-predict. Task data is passed as variables, never compiled, so `{{ 7*7 }}` in a task stays text.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ..core.config import Control, LabelConfig
from ..core.controls import spec_for
from ..errors import PromptError

TEMPLATE_SUFFIX = ".j2"
REQUIRED_TEMPLATES = ("system.j2", "user.j2", "repair.j2")
LAB_TEMPLATES = frozenset({"improve.j2"})  # `llm-backend improve`'s request: no part of a prediction's prompt
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def control_context(control: Control) -> dict[str, Any]:
    """The variables a control exposes to templates (documented in the README); its spec says which."""
    return spec_for(control.kind).template_vars(control)


def _template_location(exc: BaseException, roots: list[Path]) -> str:
    """file:line of the innermost template frame (Jinja maps template lines into tracebacks),
    relative to its template folder so error responses do not reveal server paths."""

    def shown(filename: str) -> str:
        path = Path(filename).resolve()
        for root in roots:
            try:
                return path.relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
        return path.name

    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{shown(exc.filename or exc.name or '?')}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(TEMPLATE_SUFFIX):
            return f"{shown(frame.filename)}:{frame.lineno}"
    return "<template>"


class PromptLibrary:
    """Loads, fingerprints and renders the templates of every project."""

    def __init__(self, root: Path | None, defaults: Path = DEFAULT_PROMPTS_DIR) -> None:
        self.root = Path(root) if root is not None else None
        self.defaults = Path(defaults)
        self._lock = threading.Lock()
        self._envs: dict[str, SandboxedEnvironment] = {}
        self._fingerprints: dict[str, tuple[tuple[Any, ...], str]] = {}

    def project_dir(self, project: str | None) -> Path | None:
        if not project or self.root is None:
            return None
        safe = "".join(ch for ch in project if ch.isalnum() or ch in "-_")
        return self.root / "projects" / safe if safe else None

    def _search_path(self, project: str | None) -> list[Path]:
        """Template folders, most specific first; folders that do not exist are left out."""
        project_dir = self.project_dir(project)
        candidates = [project_dir, self.root, self.defaults]
        return [path for path in candidates if path is not None and path.is_dir()]

    def _env(self, project: str | None) -> SandboxedEnvironment:
        search = self._search_path(project)
        key = "|".join(map(str, search))
        with self._lock:
            env = self._envs.get(key)
            if env is None:
                env = SandboxedEnvironment(
                    loader=jinja2.FileSystemLoader([str(p) for p in search]),
                    auto_reload=True,
                    autoescape=False,
                    keep_trailing_newline=False,
                    trim_blocks=False,
                )
                self._envs[key] = env
        return env

    def files(self, project: str | None) -> dict[str, Path]:
        """{relative name: file in effect} for every template this project uses."""
        effective: dict[str, Path] = {}
        for directory in reversed(self._search_path(project)):
            for path in sorted(directory.rglob(f"*{TEMPLATE_SUFFIX}")):
                relative = path.relative_to(directory)
                if directory == self.root and relative.parts[0] == "projects":
                    continue
                effective[relative.as_posix()] = path
        return effective

    def fingerprint(self, project: str | None) -> str:
        """A hash of the templates in effect; re-read only when a file's mtime or size changes."""
        files = {name: path for name, path in self.files(project).items() if name not in LAB_TEMPLATES}
        stamp = tuple((name, str(path), path.stat().st_mtime_ns, path.stat().st_size)
                      for name, path in sorted(files.items()))
        cache_key = project or ""
        with self._lock:
            cached = self._fingerprints.get(cache_key)
            if cached and cached[0] == stamp:
                return cached[1]
        digest = hashlib.sha256()
        for name, path in sorted(files.items()):
            digest.update(name.encode())
            digest.update(path.read_bytes())
        value = digest.hexdigest()
        with self._lock:
            self._fingerprints[cache_key] = (stamp, value)
        return value

    def check(self, project: str | None = None) -> None:
        """Compile every template now, so a broken edit is reported with its file and line."""
        env = self._env(project)
        for name in self.files(project):
            self._load(env, name, project)
        for name in REQUIRED_TEMPLATES:
            self._load(env, name, project)

    def _load(self, env: SandboxedEnvironment, name: str, project: str | None) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            folders = ", ".join(str(p) for p in self._search_path(project))
            raise PromptError(f"prompt template {exc.name} not found (looked in {folders})") from None
        except jinja2.TemplateSyntaxError as exc:
            where = _template_location(exc, self._search_path(project))
            raise PromptError(f"prompt template error at {where}: {exc.message}") from None

    def render(self, project: str | None, name: str, context: dict[str, Any]) -> str:
        env = self._env(project)
        template = self._load(env, name, project)
        try:
            return template.render(**context).strip()
        except PromptError:
            raise
        except Exception as exc:  # any failure inside a user-edited template
            where = _template_location(exc, self._search_path(project))
            raise PromptError(f"prompt template error at {where}: {exc}") from None

    def base_context(self, config: LabelConfig, output_mode: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "controls": [control_context(control) for control in config.controls],
            "schema": json.dumps(schema, ensure_ascii=False),
            "schema_in_prompt": output_mode != "schema",
        }

    def messages(self, project: str | None, context: dict[str, Any]) -> list[Message]:
        return [
            Message("system", self.render(project, "system.j2", context)),
            Message("user", self.render(project, "user.j2", context)),
        ]

    def init_defaults(self, *, force: bool = False) -> list[Path]:
        """Copy the shipped templates into PROMPTS_DIR for editing."""
        if self.root is None:
            raise PromptError("PROMPTS_DIR is not set")
        shipped = {path.relative_to(self.defaults).as_posix(): path
                   for path in sorted(self.defaults.rglob(f"*{TEMPLATE_SUFFIX}"))}
        return _copy_templates(shipped, self.root, force=force)

    def init_project(self, project: str, *, force: bool = False) -> list[Path]:
        """Copy the templates in effect for every project to PROMPTS_DIR/projects/<project>/ for editing."""
        target = self.project_dir(project)
        if target is None:
            raise PromptError(f"invalid project id {project!r}")
        return _copy_templates(self.files(None), target, force=force)


def _copy_templates(files: dict[str, Path], target: Path, *, force: bool) -> list[Path]:
    """Copy {relative name: file} under `target`; existing files are kept unless `force`."""
    written = []
    for name, source in files.items():
        destination = target / name
        if destination.exists() and not force:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        written.append(destination)
    return written
