"""The statistics of calibration and auto-accept, checked against scipy and scikit-learn, and on a
simulated project whose true probabilities are known (testkit/noisy_model.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llm_backend.core.acceptance import Evidence, certify, lower_bound, more_needed, smallest_certifiable
from llm_backend.core.calibration import (
    Calibration,
    NotEnoughData,
    Observation,
    calibrate_control,
    ece,
    fit,
    held_out,
)
from testkit.noisy_model import simulate, trial

# scipy and sklearn are imported in the tests that compare with them: at module level every test worker would pay
# their imports (most of a second) while collecting, though one worker runs them.


def test_the_fitted_map_is_sklearns_isotonic_regression() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 400)
    correct = rng.uniform(0, 1, 400) < scores ** 3
    mapping = fit(scores.tolist(), correct.tolist())
    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, correct.astype(float))
    probe = np.concatenate([rng.uniform(-0.2, 1.2, 300), scores[:50]])
    assert [mapping(float(x)) for x in probe] == pytest.approx(model.predict(probe).tolist(), abs=1e-12)


def test_ece_is_the_count_weighted_gap_of_sklearns_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(5)
    probabilities = rng.beta(4, 1.5, 1000)
    probabilities[:5] = [0.0, 1.0, 0.25, 0.5, 0.9999]  # bin edges and ends
    correct = rng.uniform(0, 1, 1000) < probabilities ** 2
    accuracy, confidence = calibration_curve(correct, probabilities, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], probabilities), minlength=10)
    expected = float(np.sum(counts[counts > 0] * np.abs(accuracy - confidence)) / len(probabilities))
    assert ece(probabilities.tolist(), correct.tolist()) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("right", "n", "confidence"), [(0, 10, 0.9), (7, 10, 0.9), (10, 10, 0.95), (93, 100, 0.9),
                                                        (480, 500, 0.99), (1, 1, 0.5)])
def test_the_lower_bound_is_scipys_one_sided_clopper_pearson(right: int, n: int, confidence: float) -> None:
    from scipy.stats import binomtest

    expected = binomtest(right, n, alternative="greater").proportion_ci(confidence_level=confidence, method="exact").low
    assert lower_bound(right, n, confidence) == pytest.approx(expected, abs=1e-9)


def test_the_fewest_tasks_that_can_certify() -> None:
    least = smallest_certifiable(0.9, 0.9)
    assert lower_bound(least, least, 0.9) >= 0.9 > lower_bound(least - 1, least - 1, 0.9)


def test_calibration_on_held_out_tasks_brings_the_error_under_five_points() -> None:
    world = simulate(6000, seed=11)
    calibration = calibrate_control("sentiment", [Observation(t.task_id, t.raw, t.correct) for t in world])
    assert calibration.n_holdout > 2500 and calibration.n_fit > 2500
    assert calibration.ece_before > 0.10  # the model is overconfident
    assert calibration.ece_after <= 0.05
    assert sum(b.count for b in calibration.bins) == calibration.n_holdout
    # The split is by task id alone: a task is held out or not whatever its score.
    assert all(held_out(t.task_id) == held_out(t.task_id) for t in world[:10])


def test_calibration_refuses_below_the_minimum_and_round_trips() -> None:
    world = simulate(300, seed=2)
    with pytest.raises(NotEnoughData, match=r"99 annotated tasks .* at least 100"):
        calibrate_control("sentiment", [Observation(t.task_id, t.raw, t.correct) for t in world[:99]])
    control = calibrate_control("sentiment", [Observation(t.task_id, t.raw, t.correct) for t in world])
    calibration = Calibration("v1", "logprobs", {"sentiment": control}, ("t1",), 5.0)
    again = Calibration.from_dict(calibration.to_dict())
    assert again == calibration
    assert again.score("sentiment", 0.97) == round(control.mapping(0.97), 4)
    assert again.score("other", 0.97) is None


def test_certify_walks_down_until_the_bound_fails() -> None:
    # 100 tasks scored 0.99..0.00: the top 60 all right, then every other one wrong.
    evidence = [Evidence(str(i), 1 - i / 100, i < 60 or i % 2 == 0) for i in range(100)]
    certificate = certify(evidence, precision=0.9, confidence=0.9)
    assert certificate.threshold is not None and certificate.lower_bound is not None
    above = [e for e in evidence if e.score >= certificate.threshold]
    right = sum(e.correct for e in above)
    assert certificate.lower_bound == pytest.approx(lower_bound(right, len(above), 0.9), abs=1e-6)
    assert certificate.lower_bound >= 0.9
    assert certificate.steps[-1].lower_bound < 0.9  # the walk stopped at the first failure
    assert all(step.lower_bound >= 0.9 for step in certificate.steps[:-1])


def test_nothing_certified_says_how_much_more_evidence_would_help() -> None:
    rng = random.Random(4)
    evidence = [Evidence(str(i), rng.random(), rng.random() < 0.95) for i in range(30)]
    certificate = certify(evidence, precision=0.9, confidence=0.9)
    if certificate.threshold is None:
        assert certificate.more_needed is not None and certificate.more_needed > 0
    # At 95% right, about how many tasks certify 90% at 90% confidence, checked against the bound itself.
    more = more_needed([Evidence(str(i), 0.5, i % 20 != 0) for i in range(20)], 0.9, 0.9)
    assert more is not None
    total = 20 + more
    assert lower_bound(int(0.95 * total), total, 0.9) >= 0.9
    assert more_needed([Evidence(str(i), 0.5, i % 2 == 0) for i in range(50)], 0.9, 0.9) is None


@pytest.mark.parametrize("samples", [0, 5], ids=["logprobs", "samples"])
def test_over_20_seeds_the_accepted_precision_falls_below_target_rarely(samples: int) -> None:
    """The whole procedure (calibrate on half the annotated tasks, certify on the other half, accept the
    unannotated tasks above the threshold) on 20 simulated projects of 1,500 tasks, 500 annotated.

    The guarantee is on the precision of the tasks above the threshold in the project's population; the
    realised precision of ~100-900 accepted tasks adds sampling noise around it. Slack: at C = 0.9 a
    run fails with probability at most 0.1, so 20 runs fail at most 4 times except with probability
    0.043 (binomial(20, 0.1)); the seeds are fixed, so this test is deterministic."""
    precision, confidence, failures, certified = 0.9, 0.9, 0, 0
    for seed in range(20):
        result = trial(simulate(1500, seed, samples), 500, precision, confidence, seed)
        if result.threshold is None:
            assert result.accepted == 0
            continue
        certified += 1
        assert result.lower_bound is not None and result.lower_bound >= precision
        failures += result.realised is not None and result.realised < precision
    assert failures <= 4
    assert certified >= 10  # the procedure is not vacuous: it accepts something in most runs


def test_eval_reports_the_reliability_of_the_scores_and_draws_it() -> None:
    from llm_backend.core.config import parse_label_config
    from llm_backend.core.evaluate import evaluate
    from llm_backend.offline.report import render_html, render_text
    from tests.conftest import CHOICES_CONFIG

    config = parse_label_config(CHOICES_CONFIG)
    world = simulate(400, seed=9)
    tasks, predictions = [], {}
    for index, t in enumerate(world):
        gold = "Positive"
        said = gold if t.correct else "Negative"
        tasks.append({"id": index, "data": {"text": t.task_id}, "annotations": [{"result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [gold]}}]}]})
        predictions[str(index)] = [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                    "value": {"choices": [said]}, "score": round(t.raw, 4)}]
    report = evaluate(config, tasks, predictions)
    shown = report.confidence["sentiment"]
    assert shown["n"] == 400
    assert shown["ece"] == pytest.approx(ece([round(t.raw, 4) for t in world], [t.correct for t in world]), abs=1e-4)
    assert shown["ece"] > 0.1  # raw log-probability scores are overconfident
    assert f"expected calibration error {shown['ece']:.3f} over 400" in render_text(report)
    page = render_html(report)
    assert "score reliability (ECE)" in page and page.count("<circle") == sum(1 for b in shown["bins"] if b["count"])


def test_eval_shows_the_coverage_at_the_accept_threshold() -> None:
    """Coverage at the certified threshold: the share of scored tasks reaching it and how many of those are right,
    from `--accept-threshold` or, with --project, the threshold `accept` stored for the project."""
    from llm_backend.core.config import parse_label_config
    from llm_backend.core.evaluate import evaluate
    from llm_backend.engine.projects import ProjectState, certified_threshold
    from llm_backend.offline.report import render_html, render_text
    from tests.conftest import CHOICES_CONFIG

    config = parse_label_config(CHOICES_CONFIG)
    scores = [0.95, 0.9, 0.85, 0.6, 0.3]
    right = [True, True, False, True, False]
    tasks, predictions = [], {}
    for index, (score, ok) in enumerate(zip(scores, right, strict=True)):
        tasks.append({"id": index, "data": {"text": str(index)}, "annotations": [{"result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]}]})
        predictions[str(index)] = [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                    "value": {"choices": ["Positive" if ok else "Negative"]}, "score": score}]
    shown = evaluate(config, tasks, predictions, accept_threshold=0.85).confidence["sentiment"]
    assert (shown["threshold"], shown["coverage"], shown["precision_above"]) == (0.85, 0.6, round(2 / 3, 4))
    report = evaluate(config, tasks, predictions, accept_threshold=0.85)
    assert ("coverage at the accept threshold 0.85: 60.0% of the scored tasks score at least that "
            "(66.7% of those right)") in render_text(report)
    assert "coverage at the accept threshold" in render_html(report)
    assert "coverage" not in evaluate(config, tasks, predictions).confidence["sentiment"]  # no threshold, no figure
    none_reach = evaluate(config, tasks, predictions, accept_threshold=0.99).confidence["sentiment"]
    assert (none_reach["coverage"], none_reach["precision_above"]) == (0.0, None)

    assert certified_threshold(None) is None
    assert certified_threshold(ProjectState("7", calibration={"accept": {"threshold": 0.9}})) == 0.9
    assert certified_threshold(ProjectState("7", calibration={"accept": {"threshold": None}})) is None
    assert certified_threshold(ProjectState("7")) is None
