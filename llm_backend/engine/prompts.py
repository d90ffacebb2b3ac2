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
import os
import shutil
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from ..core.config import Control, LabelConfig
from ..core.controls import spec_for
from ..errors import PromptError

TEMPLATE_SUFFIX = ".j2"
REQUIRED_TEMPLATES = ("system.j2", "user.j2", "repair.j2")
LAB_TEMPLATES = frozenset({"improve.j2"})  # `llm-backend improve`'s request: no part of a prediction's prompt
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
# The variables that come from the label config alone (`base_context`), and how many configs are remembered.
CONFIG_VARIABLES = frozenset({"controls", "schema", "schema_in_prompt"})
MAX_CONFIGS = 256


class _TemplateCache(jinja2.BytecodeCache):
    """What is derived from a template file's text, kept in memory for the process and shared by every PromptLibrary:
    each app, CLI command and prompt-lab variant builds its own library, compiled every template up front (`check`,
    50 ms of CPU, most of building an app) and parsed system.j2 and its includes again to learn what they read. An
    entry is used only for the same text (Jinja's checksum of the source, or the text itself), so an edit is compiled
    and read again; all environments are made alike (`_env`)."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, Any]] = {}
        self._reads: dict[str, tuple[bool, tuple[str | None, ...]]] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        found = self._codes.get(bucket.key)
        if found is not None and found[0] == bucket.checksum:
            bucket.code = found[1]

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._keep(self._codes, bucket.key, (bucket.checksum, bucket.code))

    def reads(self, env: SandboxedEnvironment, source: str) -> tuple[bool, tuple[str | None, ...]]:
        """Whether a template's text reads only CONFIG_VARIABLES, and the templates it includes (None: a name
        computed at render time); a syntax error raises."""
        found = self._reads.get(source)
        if found is None:
            tree = env.parse(source)
            found = (jinja2.meta.find_undeclared_variables(tree) <= CONFIG_VARIABLES,
                     tuple(jinja2.meta.find_referenced_templates(tree)))
            self._keep(self._reads, source, found)
        return found

    def _keep(self, entries: dict[str, Any], key: str, value: Any) -> None:
        with self._lock:
            if len(entries) >= MAX_CONFIGS * 4:  # about one entry per file; forget all rather than track use
                entries.clear()
            entries[key] = value


_TEMPLATES = _TemplateCache()


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
        self._listings: dict[Path, tuple[tuple[tuple[str, int], ...], list[tuple[str, Path, str]]]] = {}
        # Each project's candidate folders, as paths and as the strings stat() takes: a task looks them up three
        # times (two renders and the fingerprint), and building the Paths again cost more than the stat calls.
        self._candidates: dict[str | None, list[tuple[Path, str]]] = {}
        # The shipped templates' (mtime, size): they change only with the package, so they are read once, not for
        # every task of every job (a fingerprint stat'ed all twenty of them each time).
        self._shipped: dict[str, tuple[int, int]] = {}
        shipped, edited = os.path.join(str(self.defaults), ""), os.path.join(str(self.root), "")
        # (None when PROMPTS_DIR is, or holds, or lies in the shipped folder: its files are then a user's.)
        self._shipped_prefix = None if self.root and (shipped.startswith(edited) or edited.startswith(shipped)) \
            else shipped
        # Rendered once per label config: its base context, and the text of templates that read nothing else.
        self._bases: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._base_ids: set[int] = set()  # id() of each base context's controls list (kept alive by _bases)
        self._config_only: dict[jinja2.Template, tuple[str, ...] | bool] = {}
        self._static: dict[tuple[Any, ...], str] = {}

    def project_dir(self, project: str | None) -> Path | None:
        if not project or self.root is None:
            return None
        safe = "".join(ch for ch in project if ch.isalnum() or ch in "-_")
        return self.root / "projects" / safe if safe else None

    def _search_path(self, project: str | None) -> list[Path]:
        """Template folders, most specific first; folders that do not exist (now: a project's folder may be made at
        any time) are left out."""
        return [path for path, _ in self._search(project)]

    def _search(self, project: str | None) -> list[tuple[Path, str]]:
        candidates = self._candidates.get(project)
        if candidates is None:
            paths = [self.project_dir(project), self.root, self.defaults]
            candidates = [(path, str(path)) for path in paths if path is not None]
            with self._lock:
                if len(self._candidates) >= MAX_CONFIGS:
                    self._candidates.clear()
                self._candidates[project] = candidates
        return [(path, name) for path, name in candidates if os.path.isdir(name)]

    def _env(self, project: str | None) -> SandboxedEnvironment:
        search = self._search(project)
        key = "|".join(name for _, name in search)
        with self._lock:
            env = self._envs.get(key)
            if env is None:
                env = SandboxedEnvironment(
                    loader=jinja2.FileSystemLoader([name for _, name in search]),
                    auto_reload=True,
                    autoescape=False,
                    keep_trailing_newline=False,
                    trim_blocks=False,
                    bytecode_cache=_TEMPLATES,
                )
                self._envs[key] = env
        return env

    def files(self, project: str | None) -> dict[str, Path]:
        """{relative name: file in effect} for every template this project uses."""
        return {name: path for name, (path, _) in self._files(project).items()}

    def _files(self, project: str | None) -> dict[str, tuple[Path, str]]:
        effective: dict[str, tuple[Path, str]] = {}
        for directory in reversed(self._search_path(project)):
            effective.update((name, (path, text)) for name, path, text in self._templates_under(directory))
        return effective

    def _templates_under(self, directory: Path) -> list[tuple[str, Path, str]]:
        """(name relative to `directory`, file) of each template under `directory` (not PROMPTS_DIR's projects/),
        listed again only when one of its folders changed (adding, removing or renaming a file changes its folder's
        mtime): a job checks the templates' fingerprint for every task, and walking the folders each time cost most
        of a millisecond."""
        cached = self._listings.get(directory)
        if cached is not None:
            try:
                if all(os.stat(folder).st_mtime_ns == mtime for folder, mtime in cached[0]):
                    return cached[1]
            except OSError:  # a folder went away: list again
                pass
        folders: list[tuple[str, int]] = []
        found: list[tuple[str, Path, str]] = []
        for folder, subfolders, names in os.walk(directory):
            if directory == self.root and Path(folder) == directory and "projects" in subfolders:
                subfolders.remove("projects")  # each project's own folder is a search root of its own
            folders.append((folder, os.stat(folder).st_mtime_ns))
            found += [((Path(folder) / name).relative_to(directory).as_posix(), Path(folder) / name,
                       str(Path(folder) / name)) for name in names if name.endswith(TEMPLATE_SUFFIX)]
        found.sort()
        with self._lock:
            self._listings[directory] = (tuple(folders), found)
        return found

    def fingerprint(self, project: str | None) -> str:
        """A hash of the templates in effect; re-read only when a file's mtime or size changes."""
        files = {name: found for name, found in self._files(project).items() if name not in LAB_TEMPLATES}
        stamp = tuple((name, text, *self._mtime_and_size(text)) for name, (_, text) in sorted(files.items()))
        cache_key = project or ""
        with self._lock:
            cached = self._fingerprints.get(cache_key)
            if cached and cached[0] == stamp:
                return cached[1]
        digest = hashlib.sha256()
        for name, (path, _) in sorted(files.items()):
            digest.update(name.encode())
            digest.update(path.read_bytes())
        value = digest.hexdigest()
        with self._lock:
            self._fingerprints[cache_key] = (stamp, value)
        return value

    def _mtime_and_size(self, path: str) -> tuple[int, int]:
        known = self._shipped.get(path)
        if known is None:
            stat = os.stat(path)
            known = stat.st_mtime_ns, stat.st_size
            if self._shipped_prefix and path.startswith(self._shipped_prefix):
                self._shipped[path] = known
        return known

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
        key = self._static_key(env, template, context)
        if key is not None and (text := self._static.get(key)) is not None:
            return text
        try:
            text = template.render(**context).strip()
        except PromptError:
            raise
        except Exception as exc:  # any failure inside a user-edited template
            where = _template_location(exc, self._search_path(project))
            raise PromptError(f"prompt template error at {where}: {exc}") from None
        if key is not None:
            with self._lock:
                self._static[key] = text
        return text

    def _static_key(self, env: SandboxedEnvironment, template: jinja2.Template, context: dict[str, Any]
                    ) -> tuple[Any, ...] | None:
        """A key for a template that reads nothing but the label config's variables (the shipped system.j2 and
        what it includes), rendered from a base context made here: its text is the same for every task of the
        config. The key holds the Template objects in use, so an edited file (Jinja reloads it) is a new key."""
        if id(context.get("controls")) not in self._base_ids:
            return None
        includes = self._config_only.get(template)
        if includes is None:
            includes = self._config_includes(env, template.name or "", set())
            with self._lock:
                self._config_only[template] = includes
        if includes is False:
            return None
        return (template, *(env.get_template(name) for name in includes), id(context["controls"]),
                context.get("schema"), context.get("schema_in_prompt"))

    def _config_includes(self, env: SandboxedEnvironment, name: str, seen: set[str]) -> tuple[str, ...] | bool:
        """The templates `name` includes when it and they read only CONFIG_VARIABLES; False otherwise."""
        try:
            config_only, referenced = _TEMPLATES.reads(env, env.loader.get_source(env, name)[0])  # type: ignore[union-attr]
        except Exception:  # unreadable now: rendered every time, as before
            return False
        if not config_only:
            return False
        found: list[str] = []
        for included in referenced:
            if included is None:  # a name computed at render time
                return False
            if included in seen:
                continue
            seen.add(included)
            deeper = self._config_includes(env, included, seen)
            if deeper is False:
                return False
            found += [included, *deeper]  # type: ignore[misc]
        return tuple(found)

    def base_context(self, config: LabelConfig, output_mode: str, schema: str) -> dict[str, Any]:
        """The label config's variables, with the answer's JSON schema as text: made once per config and output
        mode; the caller adds the task's to its own copy."""
        key = (config.fingerprint, output_mode, schema)
        base = self._bases.get(key)
        if base is None:
            base = {
                "controls": [control_context(control) for control in config.controls],
                "schema": key[2],
                "schema_in_prompt": output_mode != "schema",
            }
            with self._lock:
                if len(self._bases) >= MAX_CONFIGS:  # forget all rather than track use: configs are few
                    self._bases.clear()
                    self._base_ids.clear()
                    self._static.clear()
                self._bases[key] = base
                self._base_ids.add(id(base["controls"]))
        return dict(base)

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
