"""Prompt versions as folders: what differs between two, and writing a new one with other instructions.

A version is a folder in PROMPTS_DIR's format: it holds only the templates that differ from the
shipped defaults (an empty folder is the defaults). `llm-backend improve` writes each candidate as
such a folder: the current version's own files plus a new `instructions.j2`; `prompts diff DIR`
shows, template by template, what a version changes against the one in use.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from .prompts import TEMPLATE_SUFFIX, PromptLibrary

INSTRUCTIONS = "instructions.j2"
_JINJA_MARKS = ("{{", "{%", "{#")


def template_diff(old: PromptLibrary, new: PromptLibrary, project: str | None = None) -> str:
    """A unified diff of every template whose text in effect differs between two versions ("" when none)."""
    before, after = old.files(project), new.files(project)
    chunks = []
    for name in sorted(set(before) | set(after)):
        a = before[name].read_text(encoding="utf-8").splitlines(keepends=True) if name in before else []
        b = after[name].read_text(encoding="utf-8").splitlines(keepends=True) if name in after else []
        if a != b:
            chunks.extend(difflib.unified_diff(a, b, f"current/{name}", f"new/{name}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


def instructions_template(text: str) -> str:
    """The file content that renders exactly `text`: Jinja syntax in it stays text."""
    text = text.strip() + "\n"
    if any(mark in text for mark in _JINJA_MARKS):
        text = "{% raw %}" + text.replace("{% endraw %}", "{ % endraw % }") + "{% endraw %}\n"
    return text


def own_files(root: Path | None) -> list[Path]:
    """The templates a version folder holds, relative to it."""
    if root is None or not root.is_dir():
        return []
    return sorted(path.relative_to(root) for path in root.rglob(f"*{TEMPLATE_SUFFIX}"))


def write_version(source: Path | None, target: Path, instructions: str, project: str | None = None) -> Path:
    """Copy the version in `source` to `target` with `instructions` as its instructions.j2; return that file.

    With a project, the instructions go to projects/<project>/, which overrides the folder's root for
    that project only, as a project's own edits do."""
    for relative in own_files(source):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, destination)  # type: ignore[operator]
    library = PromptLibrary(target)
    folder = library.project_dir(project) if project else target
    path = (folder or target) / INSTRUCTIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(instructions_template(instructions), encoding="utf-8")
    return path
