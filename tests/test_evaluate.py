"""`evaluate()` and `llm-backend eval` on hand-computed examples.

tests/fixtures/offline/annotated_sentiment.json (a Label Studio export; predictions "sentiment-v1"):

    task  annotated  predicted
    101   Positive   Positive
    102   Positive   Negative
    103   Negative   Negative
    104   Negative   Negative
    105   Neutral    Positive
    106   Positive   Positive   (an older annotation said Negative: the newest counts)
    107   -          Neutral    (no annotation: skipped)
    108   cancelled  -          (skipped)

    accuracy 4/6. Confusion matrix, rows annotated, columns predicted (Positive, Negative, Neutral):
        Positive  2 1 0
        Negative  0 2 0
        Neutral   1 0 0
    Positive: TP 2 (101, 106), FP 1 (105), FN 1 (102) -> P 2/3, R 2/3, F1 2/3
    Negative: TP 2 (103, 104), FP 1 (102), FN 0      -> P 2/3, R 1,   F1 0.8
    Neutral:  TP 0, FP 0, FN 1 (105)                 -> P undefined, R 0, F1 0
    macro F1 (2/3 + 0.8 + 0) / 3 = 0.4889

tests/fixtures/offline/annotated_ner.json ("Alice met Bob in Paris."; predictions "ner-v1"):

    annotated: Alice 0-5 Person, Bob 10-13 Person, Paris 17-22 Location
    predicted: Alice 0-5 Person, "Bob in" 10-16 Person, Paris 17-22 Person
    exact:   only Alice matches            -> P 1/3, R 1/3, F1 1/3
    overlap: Alice, and Bob with "Bob in"   -> P 2/3, R 2/3, F1 2/3 (Paris has the wrong label)
    Person exact:   TP 1, 3 predicted, 2 annotated -> P 1/3, R 1/2, F1 2/5
    Person overlap: TP 2                            -> P 2/3, R 1,   F1 4/5
    Location: 0 predicted, 1 annotated              -> P undefined, R 0, F1 0
    summary (TextArea): "Two people met" = "Two people met" -> 1.0; "abcd" vs "abce": Indel distance 2
    over 8 characters -> 1 - 2/8 = 0.75; mean 0.875, identical 1/2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner, Result

from llm_backend.cli.main import main
from llm_backend.core.agreement import SetReport, SpanReport, TextReport
from llm_backend.core.config import parse_label_config
from llm_backend.core.evaluate import evaluate, task_key
from llm_backend.offline.report import render_html
from llm_backend.offline.runs import evaluate_tasks
from llm_backend.services import build_services
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import ALL_CONTROLS_CONFIG, FIXTURES
from tests.test_offline_predict import cli_env

OFFLINE = FIXTURES / "offline"
SENTIMENT_XML, SENTIMENT = OFFLINE / "sentiment.xml", OFFLINE / "annotated_sentiment.json"
NER_XML, NER = OFFLINE / "ner.xml", OFFLINE / "annotated_ner.json"
PREDICTED = {"[t101]": "Positive", "[t102]": "Negative", "[t103]": "Negative", "[t104]": "Negative",
             "[t105]": "Positive", "[t106]": "Positive", "[t107]": "Neutral", "[t108]": "Neutral"}


def load(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text()))


def file_predictions(tasks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]] | None]:
    return {task_key(t, i): (t["predictions"][0]["result"] if t["predictions"] else None) for i, t in enumerate(tasks)}


def run_eval(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, ["eval", *args], env=env, catch_exceptions=False)


def test_choices_metrics_match_the_hand_computed_example() -> None:
    tasks = load(SENTIMENT)
    report = evaluate(parse_label_config(SENTIMENT_XML.read_text()), tasks, file_predictions(tasks))
    assert (report.tasks, report.skipped, report.failed) == (6, 2, 0)
    [choices] = report.controls
    assert isinstance(choices, SetReport)
    assert (choices.correct, choices.tasks) == (4, 6) and choices.accuracy == pytest.approx(4 / 6)
    assert choices.labels == ["Positive", "Negative", "Neutral"]
    assert choices.matrix == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    positive, negative, neutral = (choices.classes[label] for label in choices.labels)
    assert (positive.precision, positive.recall, positive.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert (negative.precision, negative.recall, negative.f1) == pytest.approx((2 / 3, 1.0, 0.8))
    assert neutral.precision is None and (neutral.recall, neutral.f1) == (0.0, 0.0)
    assert choices.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert [(w.task, w.agreement, w.controls) for w in report.worst] == [
        ("102", 0.0, {"sentiment": ("Positive", "Negative")}),
        ("105", 0.0, {"sentiment": ("Neutral", "Positive")}),
    ]
    assert report.below(0.7) == [("sentiment", "accuracy", pytest.approx(4 / 6))]
    assert report.below(0.6) == []


def test_ner_and_textarea_metrics_match_the_hand_computed_example() -> None:
    tasks = load(NER)
    report = evaluate(parse_label_config(NER_XML.read_text()), tasks, file_predictions(tasks))
    ner, summary = report.controls
    assert isinstance(ner, SpanReport) and isinstance(summary, TextReport)
    assert (ner.exact.tp, ner.exact.predicted, ner.exact.gold) == (1, 3, 3)
    assert (ner.exact.precision, ner.exact.recall, ner.exact.f1) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert (ner.overlap.precision, ner.overlap.recall, ner.overlap.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    person_exact, person_overlap = ner.per_label["Person"]
    assert (person_exact.precision, person_exact.recall, person_exact.f1) == pytest.approx((1 / 3, 1 / 2, 2 / 5))
    assert (person_overlap.precision, person_overlap.recall, person_overlap.f1) == pytest.approx((2 / 3, 1, 4 / 5))
    location_exact, _ = ner.per_label["Location"]
    assert location_exact.precision is None and (location_exact.recall, location_exact.f1) == (0.0, 0.0)
    assert list(ner.per_label) == ["Person", "Location"]  # config order
    assert summary.similarity == pytest.approx(0.875) and (summary.exact, summary.tasks) == (1, 2)
    # 201: mean(overlap F1 2*2/6, summary 1.0) = 0.8333; 202: mean(no spans 1.0, 0.75) = 0.875
    assert [(w.task, w.agreement) for w in report.worst] == [("201", pytest.approx(0.8333)), ("202", 0.875)]


def test_overlap_matches_each_span_once() -> None:
    config = parse_label_config(NER_XML.read_text())

    def span(start: int, end: int) -> dict[str, Any]:
        return {"from_name": "ner", "to_name": "text", "type": "labels",
                "value": {"start": start, "end": end, "labels": ["Person"]}}

    task = {"id": 1, "data": {"text": "Ada Lovelace wrote"}, "annotations": [{"result": [span(0, 12)]}]}
    report = evaluate(config, [task], {"1": [span(0, 3), span(4, 12)]})
    ner = report.controls[0]
    assert isinstance(ner, SpanReport)
    assert (ner.overlap.tp, ner.overlap.precision, ner.overlap.recall) == (1, 0.5, 1.0)
    assert ner.exact.tp == 0


def test_a_failed_prediction_counts_as_an_empty_one() -> None:
    tasks = load(SENTIMENT)
    predictions = file_predictions(tasks)
    predictions["101"] = None
    report = evaluate(parse_label_config(SENTIMENT_XML.read_text()), tasks, predictions)
    [choices] = report.controls
    assert isinstance(choices, SetReport)
    assert report.failed == 1 and choices.correct == 3
    assert choices.labels == ["Positive", "Negative", "Neutral", "(none)"]
    assert choices.matrix == [[1, 1, 0, 1], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_html_report_draws_the_confusion_matrix_as_svg() -> None:
    tasks = load(SENTIMENT)
    page = render_html(evaluate(parse_label_config(SENTIMENT_XML.read_text()), tasks, file_predictions(tasks)))
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    root = ElementTree.fromstring(svg)  # well-formed, so a browser draws it
    ns = "{http://www.w3.org/2000/svg}"
    cells = [int(group.findall(f"{ns}text")[0].text or "") for group in root.iter(f"{ns}g")]
    assert cells == [2, 1, 0, 0, 2, 0, 1, 0, 0]
    assert len(list(root.iter(f"{ns}rect"))) == 9
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_eval_reads_predictions_prints_the_table_and_gates_on_accuracy(llm: FakeLLMServer, tmp_path: Path) -> None:
    env = cli_env(llm, tmp_path)
    html, numbers = tmp_path / "report.html", tmp_path / "report.json"
    args = ["--config", str(SENTIMENT_XML), "--tasks", str(SENTIMENT), "--predictions", str(SENTIMENT)]

    passing = run_eval([*args, "--out", str(html), "--json", str(numbers), "--min-accuracy", "0.6"], env)
    assert passing.exit_code == 0, passing.output
    assert "evaluated 6 annotated tasks (2 skipped without an annotation, 0 without a prediction)" in passing.output
    assert "sentiment (choices): accuracy 0.667 (4/6), macro F1 0.489" in passing.output
    lines = passing.output.splitlines()
    assert "    Positive  2         1         0" in lines and "    Neutral   1         0         0" in lines
    assert "  Negative  0.667      1.000   0.800  2          3" in lines
    assert "task 102 (agreement 0.00)" in passing.output
    assert "class=\"confusion-matrix\"" in html.read_text()
    saved = json.loads(numbers.read_text())
    assert saved["controls"][0]["matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert saved["model_version"] == "sentiment-v1" and llm.calls == 0
    # These predictions carry no score: a threshold has nothing to cover, and says so by printing nothing.
    thresholded = run_eval([*args, "--accept-threshold", "0.9"], env)
    assert thresholded.exit_code == 0 and "coverage at the accept threshold" not in thresholded.output

    failing = run_eval([*args, "--min-accuracy", "0.7"], env)
    assert failing.exit_code == 1
    assert "sentiment: accuracy 0.667 is below --min-accuracy 0.7" in failing.stderr


def test_eval_runs_the_prompts_and_reports_tokens_and_cost(
    llm: FakeLLMServer, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    for marker, label in PREDICTED.items():
        llm.add_rule(marker, Reply(json={"sentiment": label}))
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/gpt-4o-mini")  # priced in LiteLLM's bundled cost map
    numbers = tmp_path / "report.json"
    result = run_eval(["--config", str(SENTIMENT_XML), "--tasks", str(SENTIMENT), "--json", str(numbers)], env)
    assert result.exit_code == 0, result.output
    assert llm.calls == 6  # only the annotated tasks
    assert "sentiment (choices): accuracy 0.667 (4/6)" in result.output
    saved = json.loads(numbers.read_text())
    usage = saved["usage"]
    assert usage["calls"] == 6 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost"] > 0 and f"cost ${usage['cost']:.6f}" in result.output
    assert saved["model_version"].startswith("gpt-4o-mini-")

    again = run_eval(["--config", str(SENTIMENT_XML), "--tasks", str(SENTIMENT)], env)
    assert again.exit_code == 0 and llm.calls == 6  # unchanged prompts: all from the cache


def test_eval_runs_ner_prompts_through_alignment(llm: FakeLLMServer, tmp_path: Path) -> None:
    llm.add_rule("Alice met Bob", Reply(json={"ner": [
        {"text": "Alice", "label": "Person"}, {"text": "Bob in", "label": "Person"},
        {"text": "Paris", "label": "Person"}], "summary": ["Two people met"]}))
    llm.add_rule("Nothing here", Reply(json={"ner": [], "summary": ["abce"]}))
    numbers = tmp_path / "report.json"
    result = run_eval(["--config", str(NER_XML), "--tasks", str(NER), "--json", str(numbers)], cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    ner, summary = json.loads(numbers.read_text())["controls"]
    assert ner["exact"]["f1"] == pytest.approx(1 / 3) and ner["overlap"]["f1"] == pytest.approx(2 / 3)
    assert summary["similarity"] == pytest.approx(0.875)


def test_eval_counts_failed_predictions_and_says_why(llm: FakeLLMServer, tmp_path: Path) -> None:
    for marker, label in PREDICTED.items():
        if marker != "[t103]":
            llm.add_rule(marker, Reply(json={"sentiment": label}))
    llm.add_rule("[t103]", Reply(status=400, error_message="content filter"))
    result = run_eval(["--config", str(SENTIMENT_XML), "--tasks", str(SENTIMENT)], cli_env(llm, tmp_path))
    assert result.exit_code == 0
    assert "1 without a prediction" in result.output and "accuracy 0.500 (3/6)" in result.output
    assert "content filter" in result.stderr and "(tasks 103)" in result.stderr


def write(tmp_path: Path, name: str, value: Any) -> Path:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def test_unusable_inputs_are_clear_errors(llm: FakeLLMServer, tmp_path: Path) -> None:
    env = cli_env(llm, tmp_path)
    tasks = load(SENTIMENT)
    two_versions = [dict(t, predictions=[*t["predictions"], {"model_version": "v2", "result": []}]) for t in tasks]
    unannotated = [dict(t, annotations=[]) for t in tasks]
    other_ids = [dict(t, id=t["id"] + 1000) for t in tasks]
    cases = [
        (["--tasks", str(write(tmp_path, "none.json", unannotated))],
         "none.json: no task has an annotation that was not cancelled"),
        (["--tasks", str(write(tmp_path, "broken.json", '[{"data": {"text": "x"}, "annotations": [}]'))],
         "broken.json line 1: not JSON (Expecting value, column 42)"),
        (["--tasks", str(SENTIMENT), "--predictions", str(write(tmp_path, "two.json", two_versions))],
         "two.json holds predictions of 2 model versions (sentiment-v1, v2); choose one with --model-version"),
        (["--tasks", str(SENTIMENT), "--predictions", str(SENTIMENT), "--model-version", "v9"],
         "has no prediction with model_version v9 (it has: sentiment-v1)"),
        (["--tasks", str(SENTIMENT), "--predictions", str(write(tmp_path, "other.json", other_ids))],
         "other.json: no task matches an annotated task of the tasks file by id"),
        (["--tasks", str(SENTIMENT), "--model-version", "v1"], "--model-version only applies with --predictions"),
    ]
    for args, message in cases:
        result = run_eval(["--config", str(SENTIMENT_XML), *args], env)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, result.stderr
    assert llm.calls == 0


def test_choosing_a_model_version_among_several(llm: FakeLLMServer, tmp_path: Path) -> None:
    tasks = load(SENTIMENT)
    right = {"id": "p", "from_name": "sentiment", "to_name": "text", "type": "choices"}
    for task in tasks:
        gold = [a for a in task["annotations"] if not a.get("was_cancelled")]
        result = [dict(right, value=gold[-1]["result"][0]["value"])] if gold else []
        task["predictions"].append({"model_version": "v2", "result": result})
    path = write(tmp_path, "two.json", tasks)
    result = run_eval(["--config", str(SENTIMENT_XML), "--tasks", str(path), "--predictions", str(path),
                       "--model-version", "v2", "--min-accuracy", "1"], cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    assert "accuracy 1.000 (6/6)" in result.output and "worst disagreements" not in result.output


def test_rating_number_taxonomy_and_multiple_choices() -> None:
    config = parse_label_config(ALL_CONTROLS_CONFIG)

    def regions(rating: int | None, year: float | None, taxonomy: list[list[str]], topics: list[str]
                ) -> list[dict[str, Any]]:
        values = [("quality", "rating", {"rating": rating}), ("year", "number", {"number": year}),
                  ("category", "taxonomy", {"taxonomy": taxonomy}), ("topics", "choices", {"choices": topics})]
        return [{"from_name": name, "to_name": "text", "type": kind, "value": value} for name, kind, value in values
                if next(iter(value.values()))]

    tasks = [
        {"id": 1, "data": {"text": "a"}, "annotations": [{"result": regions(4, 2001, [["News", "World"]],
                                                                            ["Sports", "POL"])}]},
        {"id": 2, "data": {"text": "b"}, "annotations": [{"result": regions(3, 1999, [["Opinion"]], ["Tech"])}]},
    ]
    predictions = {"1": regions(4, 2001, [["News", "World"]], ["Sports"]),
                   "2": regions(5, None, [["News", "Local"]], ["Tech"])}
    report = evaluate(config, tasks, predictions)
    by_name = {c.control: c for c in report.controls}
    quality, year, category, topics = by_name["quality"], by_name["year"], by_name["category"], by_name["topics"]
    assert (quality.headline, quality.mean_absolute_error) == (0.5, 1.0)  # |4-4|, |3-5| -> mean 1
    assert (year.headline, year.mean_absolute_error) == (0.5, 0.0)  # the missing one is wrong, not an error of 0
    assert isinstance(category, SetReport) and category.matrix is None
    assert category.accuracy == 0.5 and category.classes["News / World"].f1 == 1.0
    assert category.classes["Opinion"].recall == 0.0 and category.classes["News / Local"].precision == 0.0
    assert isinstance(topics, SetReport) and topics.accuracy == 0.5 and topics.classes["POL"].recall == 0.0
    assert by_name["sentiment"].headline == 1.0  # neither side chose anything
    assert [w.task for w in report.worst] == ["2", "1"]


def test_evaluate_tasks_runs_only_annotated_tasks_through_a_backend(
    llm: FakeLLMServer, make_settings: Callable[..., Settings]
) -> None:
    for marker, label in PREDICTED.items():
        llm.add_rule(marker, Reply(json={"sentiment": label}))
    backend = build_services(make_settings())
    config = parse_label_config(SENTIMENT_XML.read_text())
    report, run = evaluate_tasks(backend, config, load(SENTIMENT), "3")
    assert not run.interrupted and len(run.outcomes) == 6 and llm.calls == 6
    assert report.model_version == run.model_version == backend.predictor.model_version(config, "3")
    [choices] = report.controls
    assert isinstance(choices, SetReport) and choices.matrix == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report.usage is not None and report.usage.calls == 6 and report.usage.prompt_tokens > 0


@pytest.mark.label_studio
def test_eval_scores_a_real_label_studio_export_whose_predictions_are_ids(
    label_studio: Any, start_app: Callable[..., Any], llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The Export button (GET /api/projects/<id>/export) lists predictions as ids: eval fetches them through
    the API when it can, and otherwise names the snapshot option that exports them in full."""
    config = SENTIMENT_XML.read_text()
    reviews = [("[r1] loved it", "Positive", "Positive"), ("[r2] hated it", "Negative", "Negative"),
               ("[r3] so-so", "Positive", "Neutral")]  # (text, predicted, annotated)
    for text, predicted, _ in reviews:
        llm.add_rule(text, Reply(json={"sentiment": predicted}))
    project = label_studio.create_project("eval export", config)
    task_ids = label_studio.import_tasks(project, [{"text": text} for text, _, _ in reviews])
    label_studio.connect_ml_backend(project, start_app().url)
    label_studio.retrieve_predictions(project, task_ids)
    for task_id, (_, _, annotated) in zip(task_ids, reviews, strict=True):
        label_studio.create_annotation(task_id, [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                  "value": {"choices": [annotated]}}])
    exported = label_studio.request("GET", f"/api/projects/{project}/export", params={"exportType": "JSON"})
    assert all(isinstance(item, int) for task in exported for item in task["predictions"])  # what LS really sends
    path = write(tmp_path, "export.json", exported)
    (tmp_path / "config.xml").write_text(config)
    args = ["--config", str(tmp_path / "config.xml"), "--tasks", str(path), "--predictions", str(path)]

    offline = run_eval(args, cli_env(llm, tmp_path))
    assert offline.exit_code == 2
    assert (f"export.json lists its 3 predictions by id only, as Label Studio's Export button and a default snapshot "
            "do; set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY and eval fetches them, or export a snapshot with the "
            f"predictions in full: POST /api/projects/{project}/exports with ") in offline.stderr

    online = run_eval(args, cli_env(llm, tmp_path, LABEL_STUDIO_URL=label_studio.url,
                                    LABEL_STUDIO_API_KEY=label_studio.token))
    assert online.exit_code == 0, online.output
    assert f"lists predictions by id: fetched 3 from Label Studio at {label_studio.url}" in online.stderr
    assert "sentiment (choices): accuracy 0.667 (2/3)" in online.stdout

    # The option the error names does export them in full, and eval then needs no Label Studio.
    snapshot = label_studio.request("POST", f"/api/projects/{project}/exports",
                                    json={"serialization_options": {"predictions": {"only_id": False}}})
    full = label_studio.request("GET", f"/api/projects/{project}/exports/{snapshot['id']}/download",
                                params={"exportType": "JSON"})
    assert all(isinstance(item, dict) for task in full for item in task["predictions"])
    path = write(tmp_path, "snapshot.json", full)
    from_snapshot = run_eval(["--config", str(tmp_path / "config.xml"), "--tasks", str(path), "--predictions",
                              str(path)], cli_env(llm, tmp_path))
    assert from_snapshot.exit_code == 0, from_snapshot.output
    assert "sentiment (choices): accuracy 0.667 (2/3)" in from_snapshot.stdout
