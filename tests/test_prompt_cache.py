"""The system message is rendered once per label config while its templates read nothing else, and again
as soon as one of them (system.j2 or what it includes) is edited; a template that reads the task is never
reused across tasks."""

from __future__ import annotations

import os
from pathlib import Path

from llm_backend.core.config import parse_label_config
from llm_backend.core.schema import json_schema_text
from llm_backend.engine.prompts import PromptLibrary
from tests.conftest import CHOICES_CONFIG


def _system(prompts: PromptLibrary, task_id: int) -> str:
    config = parse_label_config(CHOICES_CONFIG)
    context = prompts.base_context(config, "schema", json_schema_text(config))
    context.update(task={"id": task_id, "data": {"text": f"text {task_id}"}}, objects=[], instruction=None,
                   examples=[])
    [system, _user] = prompts.messages(None, context)
    return system.content


def _edit(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    later = path.stat().st_mtime + 10  # Jinja's auto_reload compares mtimes
    os.utime(path, (later, later))


def test_the_static_system_message_is_reused_until_an_included_template_changes(tmp_path: Path) -> None:
    _edit(tmp_path / "instructions.j2", "Label product reviews only.")
    prompts = PromptLibrary(tmp_path)
    first = _system(prompts, 1)
    assert _system(prompts, 2) == first and "meticulous data annotator" in first
    assert "Label product reviews only." in first
    _edit(tmp_path / "instructions.j2", "Label support tickets only.")
    assert "Label support tickets only." in _system(prompts, 4)


def test_a_system_template_that_reads_the_task_is_rendered_per_task(tmp_path: Path) -> None:
    prompts = PromptLibrary(tmp_path)
    _edit(tmp_path / "system.j2", "You label task {{ task.id }}.")
    assert _system(prompts, 1) == "You label task 1."
    assert _system(prompts, 2) == "You label task 2."


def test_an_edited_system_template_is_used_at_once(tmp_path: Path) -> None:
    prompts = PromptLibrary(tmp_path)
    _edit(tmp_path / "system.j2", "Version one for {{ controls | length }} control(s).")
    assert _system(prompts, 1) == "Version one for 1 control(s)."
    _edit(tmp_path / "system.j2", "Version two.")
    assert _system(prompts, 2) == "Version two."


def test_the_fingerprint_follows_added_edited_and_removed_templates(tmp_path: Path) -> None:
    prompts = PromptLibrary(tmp_path)
    shipped = prompts.fingerprint("7")
    assert prompts.fingerprint("7") == shipped
    (tmp_path / "controls").mkdir()
    _edit(tmp_path / "controls" / "choices.j2", "Pick one.")
    added = prompts.fingerprint("7")
    assert added != shipped and prompts.files("7")["controls/choices.j2"] == tmp_path / "controls" / "choices.j2"
    _edit(tmp_path / "controls" / "choices.j2", "Pick exactly one.")
    assert prompts.fingerprint("7") not in (shipped, added)
    project = tmp_path / "projects" / "7"
    project.mkdir(parents=True)
    _edit(project / "user.j2", "{{ objects }}")
    assert prompts.files("7")["user.j2"] == project / "user.j2" and "projects/7/user.j2" not in prompts.files("7")
    (tmp_path / "controls" / "choices.j2").unlink()
    (project / "user.j2").unlink()
    assert prompts.fingerprint("7") == shipped


def test_a_new_library_compiles_a_file_edited_since_another_compiled_it(tmp_path: Path) -> None:
    """Compiled templates are shared by every library of the process (an app, a CLI command, a prompt-lab variant
    each build one); a file's compiled code is reused only while its text is unchanged, also with the same mtime."""
    from llm_backend.errors import PromptError

    system = tmp_path / "system.j2"
    _edit(system, "Version one.")
    PromptLibrary(tmp_path).check()
    assert _system(PromptLibrary(tmp_path), 1) == "Version one."
    stamp = system.stat().st_mtime
    system.write_text("Version two.", encoding="utf-8")
    os.utime(system, (stamp, stamp))
    assert _system(PromptLibrary(tmp_path), 2) == "Version two."
    system.write_text("Version {{ broken", encoding="utf-8")
    try:
        PromptLibrary(tmp_path).check()
    except PromptError as exc:
        assert "system.j2:1" in str(exc)
    else:
        raise AssertionError("a broken edit was not reported")
