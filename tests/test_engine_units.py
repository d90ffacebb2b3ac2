"""Direct unit tests of engine pieces that the protocol tests reach only through Flask:
webhook handling, the Train evaluation, prompt rendering and the project store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from llm_backend.core.config import LabelConfig, parse_label_config
from llm_backend.engine.events import EventHandler
from llm_backend.engine.examples import SQLiteExampleStore
from llm_backend.engine.metrics import Metrics
from llm_backend.engine.outcome import TaskOutcome
from llm_backend.engine.predictor import PredictionJob
from llm_backend.engine.projects import ProjectState, RedisProjectStore, SQLiteProjectStore, project_id, update
from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR, PromptLibrary, control_context
from llm_backend.engine.task_runner import TaskRunner
from llm_backend.engine.training import Trainer
from llm_backend.errors import PromptError
from llm_backend.models.router import ModelChoice

CONFIG = """<View><Text name="t" value="$text"/>
  <Labels name="ner" toName="t"><Label value="Person"/></Labels>
  <DateTime name="when" toName="t" only="date"/>
</View>"""


def annotation_event(task_id: int, text: str, start: int, end: int, date: str, project: int = 5) -> dict[str, Any]:
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": CONFIG},
        "task": {"id": task_id, "data": {"text": text}},
        "annotation": {"id": 1000 + task_id, "result": [
            {"from_name": "ner", "to_name": "t", "type": "labels",
             "value": {"start": start, "end": end, "text": text[start:end], "labels": ["Person"]}},
            {"from_name": "when", "to_name": "t", "type": "datetime", "value": {"datetime": date}},
        ]},
    }


class ScriptedPredictor:
    """Answers every task with the regions scripted for its id (a stand-in for the model path)."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.metrics = Metrics()
        self.jobs: list[PredictionJob] = []

    def predict(self, job: PredictionJob) -> TaskOutcome:
        self.jobs.append(job)
        return TaskOutcome("ok", regions=self.answers[str(job.task["id"])])

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str:
        return "scripted"


def test_webhooks_store_examples_with_their_regions_and_train_snapshots(tmp_path: Path) -> None:
    store = SQLiteExampleStore(tmp_path / "examples.sqlite3")
    trained: list[tuple[str, str | None]] = []
    handler = EventHandler(store, snapshot_every=0, on_training=lambda project, xml: trained.append((project, xml)))
    handler.handle(annotation_event(1, "Ada wrote it on Monday.", 0, 3, "1843-09-05"))
    handler.handle({"action": "ANNOTATION_CREATED", "project": {"id": 5, "label_config": CONFIG},
                    "task": {"id": 2, "data": {"text": "x"}}, "annotation": {"id": 9, "was_cancelled": True}})
    [example] = store.examples("5")
    assert example.answer == {"ner": [{"text": "Ada", "label": "Person"}], "when": "1843-09-05"}
    assert example.result is not None and example.result[0]["value"]["start"] == 0  # offsets kept for "Train"
    handler.handle({"action": "START_TRAINING", "project": {"id": 5, "label_config": CONFIG}})
    assert trained == [("5", CONFIG)] and store.latest("5") is not None
    handler.handle({"action": "ANNOTATIONS_DELETED", "project": 5, "annotations": [{"id": 1001}]})
    assert store.examples("5") == ()


def test_train_scores_with_the_evaluator_against_the_annotations_regions(tmp_path: Path) -> None:
    store = SQLiteExampleStore(tmp_path / "examples.sqlite3")
    handler = EventHandler(store, snapshot_every=0)
    handler.handle(annotation_event(1, "Ada wrote it.", 0, 3, "1843-09-05"))
    handler.handle(annotation_event(2, "Then Grace came.", 5, 10, "1952-01-01"))
    store.take_snapshot("5")
    wrong_date = [{"from_name": "when", "to_name": "t", "type": "datetime", "value": {"datetime": "1999-12-31"}}]
    person = {"from_name": "ner", "to_name": "t", "type": "labels",
              "value": {"start": 0, "end": 3, "text": "Ada", "labels": ["Person"]}}
    predictor = ScriptedPredictor({"1": [person, *wrong_date], "2": wrong_date})
    projects = SQLiteProjectStore(tmp_path / "projects.sqlite3")
    trainer = Trainer(TaskRunner(predictor, 2), store, projects)
    update(projects, "5", label_config=CONFIG)
    trainer.on_training("5", None)  # the config comes from the project store
    report = projects.get("5").evaluation  # type: ignore[union-attr]
    assert report is not None and report["examples"] == 2 and report["not_scored"] == 0
    for name in ("with_examples", "without_examples"):
        controls = {c["control"]: c for c in report[name]["controls"]}
        # Was 1.0: a wrong DateTime prediction counted as agreement.
        assert controls["when"]["headline"] == {"accuracy": 0.0}
        assert controls["ner"]["exact"]["tp"] == 1 and controls["ner"]["exact"]["gold"] == 2
    assert [job.fewshot for job in predictor.jobs] == [True, True, False, False]
    assert "with few-shot examples" in report["summary"]


def test_prompts_layer_user_edits_over_the_shipped_defaults(tmp_path: Path) -> None:
    config = parse_label_config(CONFIG)
    root = tmp_path / "prompts"
    library = PromptLibrary(root)  # the folder does not exist yet: defaults only, nothing written
    context = {**library.base_context(config, "schema", "{}"), "task": {"id": 1, "data": {}}, "instruction": None,
               "objects": [{"name": "t", "tag": "text", "text": "Ada wrote it.", "is_image": False}], "examples": []}
    user = library.render(None, "user.j2", context)
    assert "Ada wrote it." in user and '"Person"' in user and "YYYY-MM-DD" in user
    assert not root.exists()
    (root / "projects" / "5").mkdir(parents=True)
    (root / "system.j2").write_text("Team system prompt.")
    (root / "projects" / "5" / "system.j2").write_text("Project five system prompt.")
    assert library.render(None, "system.j2", context) == "Team system prompt."
    assert library.render("5", "system.j2", context) == "Project five system prompt."
    assert library.files("5")["user.j2"] == DEFAULT_PROMPTS_DIR / "user.j2"
    assert library.fingerprint("5") != library.fingerprint(None) != PromptLibrary(None).fingerprint(None)
    (root / "projects" / "5" / "user.j2").write_text("{% for x in %}")
    with pytest.raises(PromptError, match=r"user\.j2:1"):
        library.check("5")


def test_prompts_init_copies_defaults_out_and_never_into_the_package(tmp_path: Path) -> None:
    before = sorted(p.name for p in DEFAULT_PROMPTS_DIR.rglob("*"))
    library = PromptLibrary(tmp_path / "prompts")
    written = library.init_defaults()
    assert {p.relative_to(tmp_path / "prompts").as_posix() for p in written} >= {"system.j2", "controls/labels.j2"}
    assert library.init_defaults() == []  # nothing overwritten without force
    assert library.init_project("7") and (tmp_path / "prompts" / "projects" / "7" / "user.j2").exists()
    assert sorted(p.name for p in DEFAULT_PROMPTS_DIR.rglob("*")) == before
    shutil.rmtree(tmp_path / "prompts")


def test_control_context_comes_from_the_spec() -> None:
    config = parse_label_config(CONFIG)
    when = control_context(config.controls[1])
    assert when["format"] == "YYYY-MM-DD" and when["kind"] == "datetime" and when["options"] == []


def test_project_state_survives_a_new_store_object(tmp_path: Path) -> None:
    first = SQLiteProjectStore(tmp_path / "projects.sqlite3")
    update(first, "12", label_config=CONFIG, choice=ModelChoice("big", {"temperature": 0.2}), model_version="v1")
    update(first, "12", model_version="v2")
    state = SQLiteProjectStore(tmp_path / "projects.sqlite3").get("12")  # another worker, or after a restart
    assert state is not None and state.choice == ModelChoice("big", {"temperature": 0.2})
    assert (state.label_config, state.model_version) == (CONFIG, "v2")
    assert [s.project for s in first.all()] == ["12"]
    assert project_id("12.1712345678") == "12" and project_id("../etc") is None


@pytest.mark.redis
def test_project_state_in_redis(redis_url: str) -> None:
    store = RedisProjectStore(redis_url)
    store.put(ProjectState("3", choice=ModelChoice("small")))
    assert RedisProjectStore(redis_url).get("3") == ProjectState("3", choice=ModelChoice("small"))
