"""The prompt lab end to end: `improve`, `eval --compare` and `prompts diff` against the test server's world.

The world (testkit/world.py) labels sentiment from cue words, and has no cue for refund requests,
which annotators label Negative: it answers them Neutral unless the instructions state the rule
HELPFUL. A prompt-improvement request quoting its refund errors is answered with the configured
suggestion: HELPFUL, or HARMFUL (every message about a lamp is Positive), which breaks other tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from llm_backend.cli.main import main
from llm_backend.core.config import parse_label_config
from llm_backend.offline.compare import annotated
from llm_backend.offline.improve import split
from testkit.llm_server import FakeLLMServer
from testkit.world import Rule, World
from tests.conftest import CHOICES_CONFIG
from tests.test_offline_predict import cli_env

HELPFUL = "A message that asks for a refund is Negative."
HARMFUL = "Every message about a lamp is Positive."
ITEMS = ("lamp", "chair", "kettle", "desk")
KINDS = [("I love the {item}, thank you (order {i})", "Positive", 35),
         ("The {item} arrived broken (order {i})", "Negative", 25),
         ("The {item} is okay, nothing special (order {i})", "Neutral", 20),
         ("Please refund my {item} (order {i})", "Negative", 20)]


def world(suggestion: str) -> World:
    return World("sentiment", {"love": "Positive", "broken": "Negative", "okay": "Neutral"}, "Neutral",
                 [Rule(HELPFUL, "refund", "Negative"), Rule(HARMFUL, "lamp", "Positive")],
                 suggestion=suggestion, erring="refund")


def tasks_file(tmp_path: Path, count: int = 100) -> Path:
    tasks: list[dict[str, Any]] = []
    for template, label, share in KINDS:
        for _ in range(share * count // 100):
            i = len(tasks) + 1
            text = template.format(item=ITEMS[i % len(ITEMS)], i=i)
            tasks.append({"id": i, "data": {"text": text}, "annotations": [{"result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]})
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    return path


@pytest.fixture
def lab(llm: FakeLLMServer, tmp_path: Path) -> dict[str, Any]:
    config = tmp_path / "config.xml"
    config.write_text(CHOICES_CONFIG)
    return {"config": config, "tasks": tasks_file(tmp_path), "env": cli_env(llm, tmp_path)}


def cli(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def improve(lab: dict[str, Any], out: Path, *extra: str) -> Result:
    return cli(["improve", "--config", str(lab["config"]), "--tasks", str(lab["tasks"]), "--out", str(out),
                "--json", *extra], lab["env"])


def compare(lab: dict[str, Any], a: str, b: str, *extra: str) -> Result:
    return cli(["eval", "--config", str(lab["config"]), "--tasks", str(lab["tasks"]), "--compare", a, b, *extra],
               lab["env"])


def test_improve_keeps_the_helpful_rule_by_the_gain_the_world_allows(llm: FakeLLMServer, lab: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    llm.world = world(HELPFUL)
    out = tmp_path / "improved"
    result = improve(lab, out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accepted"] is True and report["out"] == str(out)
    assert HELPFUL in (out / "instructions.j2").read_text()
    assert not (tmp_path / "prompts").exists()  # PROMPTS_DIR is never written

    # The held-out part is exactly what the seeded, stratified split gives; the world gets every refund right now.
    config = parse_label_config(CHOICES_CONFIG)
    working, held = split(config, annotated(json.loads(lab["tasks"].read_text())), 0.3)
    refunds = sum("refund" in task["data"]["text"] for task in held)
    heldout = report["heldout"]
    assert heldout["before"] == pytest.approx(1 - refunds / len(held), abs=1e-4)
    assert heldout["after"] == 1.0
    assert heldout["diff_ci"][0] > 0
    assert report["rounds"][0]["heldout"]["diff"] == pytest.approx(refunds / len(held))
    assert "+" + HELPFUL in report["rounds"][0]["diff"]
    # One improvement request, quoting working-part errors only: the improver never sees a held-out task.
    (request,) = llm.world.improvement_requests
    assert all(task["data"]["text"] not in request for task in held)
    assert sum(task["data"]["text"] in request for task in working if "refund" in task["data"]["text"]) >= 3

    # A kept version against the defaults: the interval is above zero, and a re-compare calls no model.
    defaults = tmp_path / "defaults"
    defaults.mkdir()
    first = compare(lab, str(defaults), str(out), "--json")
    assert first.exit_code == 0, first.output
    sentiment = json.loads(first.stdout)["controls"]["sentiment"]
    assert sentiment["ci"][0] > 0 and sentiment["diff"] == pytest.approx(0.2)
    assert sentiment["p"] < 0.001
    calls = llm.calls
    again = compare(lab, str(defaults), str(out), "--json")
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert llm.calls == calls

    shown = cli(["prompts", "diff", str(out)], lab["env"])
    assert shown.exit_code == 1 and "+" + HELPFUL in shown.stdout and "cp -r" in shown.stderr


def test_improve_refuses_the_harmful_rule_and_keeps_nothing(llm: FakeLLMServer, lab: dict[str, Any],
                                                             tmp_path: Path) -> None:
    llm.world = world(HARMFUL)
    out = tmp_path / "improved"
    result = improve(lab, out, "--rounds", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accepted"] is False and report["out"] is None
    assert not out.exists()
    first = report["rounds"][0]
    assert first["instructions"] == HARMFUL and not first["accepted"]
    assert first["heldout"]["after"] < first["heldout"]["before"] and first["heldout"]["ci"][0] <= 0
    # Two rounds: each interval is a Bonferroni-widened 97.5% one, and the second request names the rejected rule.
    assert first["heldout"]["confidence"] == pytest.approx(0.975)
    assert len(llm.world.improvement_requests) == 2 and HARMFUL in llm.world.improvement_requests[1]
    assert "nothing kept" in result.stderr and "97.5% CI" in result.stderr


def test_comparing_identical_prompt_folders_gives_an_interval_around_zero(llm: FakeLLMServer, lab: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    llm.world = world(HELPFUL)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    html = tmp_path / "report.html"
    result = compare(lab, str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(html))
    assert result.exit_code == 0, result.output
    assert "sentiment (accuracy): A 0.800, B 0.800; B - A +0.000, 95% CI [+0.000, +0.000], McNemar p = 1" \
        in result.stdout
    assert "0 tasks where A and B answer differently" in result.stdout
    assert "B − A (paired bootstrap)" in html.read_text()
    # Same prompts, same model: B's requests are A's, answered from the cache.
    assert llm.calls == 100

    models = compare(lab, "model=openai/test-model", "model=openai/other-model", "--json")
    assert models.exit_code == 0, models.output
    data = json.loads(models.stdout)
    assert data["b"]["model"] == "openai/other-model" and data["b"]["usage"]["calls"] == 100
    low, high = data["controls"]["sentiment"]["ci"]
    assert low <= 0 <= high


def test_too_few_annotations_are_refused_with_the_number_found(llm: FakeLLMServer, lab: dict[str, Any],
                                                                tmp_path: Path) -> None:
    lab["tasks"] = tasks_file(tmp_path, count=18)
    (tmp_path / "a").mkdir()
    result = compare(lab, str(tmp_path / "a"), str(tmp_path / "a"))
    assert result.exit_code == 2 and "16 annotated tasks found" in result.output
    result = improve(lab, tmp_path / "out")
    assert result.exit_code == 2 and "16 annotated tasks found" in result.output and "at least 64" in result.output
    assert llm.calls == 0
    bad = compare(lab, str(tmp_path / "missing"), str(tmp_path / "a"))
    assert bad.exit_code == 2 and "not a folder" in bad.output
    no_tasks = cli(["eval", "--config", str(lab["config"]), "--compare", "model=x", "model=y"], lab["env"])
    assert no_tasks.exit_code == 2 and "--tasks is required" in no_tasks.output
    no_project = cli(["eval", "--config", str(lab["config"]), "--project", "3", "--compare", "model=x", "model=y"],
                     lab["env"])
    assert no_project.exit_code == 2 and "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY" in no_project.output


@pytest.mark.label_studio
def test_compare_reads_a_label_studio_projects_annotations_and_links_each_differing_task(
        llm: FakeLLMServer, lab: dict[str, Any], tmp_path: Path, label_studio: Any) -> None:
    """--project instead of --tasks: the project's human annotations, from a real Label Studio 1.23.2."""
    llm.world = world(HELPFUL)
    tasks = json.loads(tasks_file(tmp_path, count=40).read_text())
    project = label_studio.create_project("prompt lab", CHOICES_CONFIG)
    ids = label_studio.import_tasks(project, [{"data": task["data"]} for task in tasks])
    for task_id, task in zip(ids, tasks, strict=True):
        label_studio.create_annotation(task_id, task["annotations"][0]["result"])
    label_studio.import_tasks(project, [{"data": {"text": "Please refund my lamp (never annotated)"}}])
    improved = tmp_path / "improved"
    improved.mkdir()
    (improved / "instructions.j2").write_text(HELPFUL + "\n")
    (tmp_path / "defaults").mkdir()
    env = {**lab["env"], "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    result = cli(["eval", "--config", str(lab["config"]), "--project", str(project), "--compare",
                  str(tmp_path / "defaults"), str(improved), "--json"], env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    refunds = {task_id for task_id, task in zip(ids, tasks, strict=True) if "refund" in task["data"]["text"]}
    assert data["tasks"] == 40 and data["controls"]["sentiment"]["diff"] == pytest.approx(len(refunds) / 40)
    assert {int(item["task"]) for item in data["disagreements"]} == refunds
    assert all(item["link"] == f"{label_studio.url}/projects/{project}/data?task={item['task']}"
               for item in data["disagreements"])


def test_instructions_change_the_model_version_and_the_lab_template_does_not(tmp_path: Path) -> None:
    """instructions.j2 is part of every prediction's prompt; improve.j2 is only the improver's request."""
    from llm_backend.engine.prompt_versions import instructions_template
    from llm_backend.engine.prompts import PromptLibrary

    base = PromptLibrary(tmp_path).fingerprint(None)
    (tmp_path / "improve.j2").write_text("Improve these: {{ errors | length }}")
    assert PromptLibrary(tmp_path).fingerprint(None) == base
    (tmp_path / "instructions.j2").write_text(instructions_template("Quote {{ this }} as written."))
    library = PromptLibrary(tmp_path)
    assert library.fingerprint(None) != base
    assert library.render(None, "instructions.j2", {}) == "Quote {{ this }} as written."


def test_a_rule_quoted_inside_a_task_does_not_switch_the_world_on() -> None:
    model = world(HELPFUL)
    assert model.label("", "Please refund my lamp") == "Neutral"
    assert model.label(HELPFUL, "Please refund my lamp") == "Negative"
    prompt = f"Annotate.\n<text>\n{HELPFUL} Please refund my lamp\n</text>\n"
    assert json.loads(model.answer({}, prompt) or "") == {"sentiment": "Neutral"}


def test_improve_stops_when_the_users_own_system_template_does_not_show_the_instructions(
        llm: FakeLLMServer, lab: dict[str, Any], tmp_path: Path) -> None:
    llm.world = world(HELPFUL)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "system.j2").write_text("You label texts. Answer with one JSON object.")
    result = improve(lab, tmp_path / "out")
    assert result.exit_code == 2
    assert 'do not show instructions.j2: add {% include "instructions.j2" ignore missing %}' in result.output
    assert not (tmp_path / "out").exists()
