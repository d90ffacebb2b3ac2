"""The prompt lab's statistics (core/paired.py), checked against scipy and sklearn on seeded data."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from llm_backend.core.paired import Side, mcnemar, paired_bootstrap, stratified_split

# scipy.stats is imported in the tests that compare with it: at module level every test worker would pay its import
# (about half a second) while collecting, though one worker runs them.


def _correct(rng: np.random.Generator, tasks: int, accuracy: float) -> np.ndarray:
    return (rng.random(tasks) < accuracy).astype(float)


def test_the_paired_interval_matches_scipys_paired_bootstrap_on_a_difference_of_accuracies() -> None:
    from scipy import stats

    rng = np.random.default_rng(7)
    a = _correct(rng, 300, 0.7)
    b = np.where(rng.random(300) < 0.15, 1.0, a)  # B fixes some of A's errors
    ones = np.ones(300)
    ours = paired_bootstrap([(Side.of(a, ones), Side.of(b, ones))], resamples=20000, seed=1)
    theirs = stats.bootstrap((a, b), lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                             paired=True, vectorized=True, n_resamples=20000, method="percentile",
                             confidence_level=0.95, rng=np.random.default_rng(2)).confidence_interval
    assert ours.diff == pytest.approx(b.mean() - a.mean())
    assert ours.low == pytest.approx(theirs.low, abs=0.006)
    assert ours.high == pytest.approx(theirs.high, abs=0.006)
    assert ours.resamples == 20000


def test_a_ratio_metric_matches_scipy_resampling_numerators_and_denominators_together() -> None:
    """Span F1 is 2·matched / (predicted + annotated), summed over tasks: both sums resampled with the task."""
    from scipy import stats

    rng = np.random.default_rng(3)
    gold = rng.integers(0, 4, 200).astype(float)
    a_pred, b_pred = gold + rng.integers(0, 2, 200), gold + rng.integers(0, 2, 200)
    a_match = np.minimum(gold, rng.integers(0, 4, 200)).astype(float)
    b_match = np.minimum(gold, a_match + rng.integers(0, 2, 200))
    a, b = Side.of(2 * a_match, a_pred + gold), Side.of(2 * b_match, b_pred + gold)

    def f1_diff(an, ad, bn, bd, axis):
        return bn.sum(axis=axis) / bd.sum(axis=axis) - an.sum(axis=axis) / ad.sum(axis=axis)

    ours = paired_bootstrap([(a, b)], resamples=20000, seed=4)
    theirs = stats.bootstrap((a.num, a.den, b.num, b.den), f1_diff, paired=True, vectorized=True,
                             n_resamples=20000, method="percentile", rng=np.random.default_rng(5)).confidence_interval
    assert ours.diff == pytest.approx(b.metric - a.metric)
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=0.006)


def test_the_interval_is_seeded_and_identical_sides_give_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    a = Side.of(_correct(rng, 50, 0.6), np.ones(50))
    b = Side.of(_correct(rng, 50, 0.6), np.ones(50))
    assert paired_bootstrap([(a, b)], seed=9) == paired_bootstrap([(a, b)], seed=9)
    same = paired_bootstrap([(a, a)])
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0)
    assert same.contains_zero() and not same.above_zero


def test_several_controls_are_averaged_and_resampled_together() -> None:
    ones = np.ones(40)
    first = (Side.of(np.zeros(40), ones), Side.of(ones, ones))  # +1 on every task
    second = (Side.of(ones, ones), Side.of(ones, ones))  # no change
    both = paired_bootstrap([first, second])
    assert (both.diff, both.low, both.high) == (0.5, 0.5, 0.5)


def test_a_resample_with_nothing_to_measure_is_left_out_not_counted_as_zero() -> None:
    """One annotated span in 30 tasks: some resamples draw no span at all, and F1 is undefined there."""
    den = np.zeros(30)
    den[0] = 2
    num = np.zeros(30)
    num[0] = 2
    interval = paired_bootstrap([(Side.of(np.zeros(30), den), Side.of(num, den))], resamples=2000)
    assert 0 < interval.resamples < 2000
    assert (interval.low, interval.high) == (1.0, 1.0)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        paired_bootstrap([(Side.of([1], [1]), Side.of([1, 0], [1, 1]))])
    with pytest.raises(ValueError, match="nothing to measure"):
        paired_bootstrap([(Side.of([0], [0]), Side.of([0], [0]))])


@pytest.mark.parametrize(("only_a", "only_b", "both"), [(0, 0, 5), (1, 9, 20), (7, 3, 0), (12, 30, 58)])
def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_pairs(only_a: int, only_b: int, both: int) -> None:
    from scipy import stats

    a = [True] * only_a + [False] * only_b + [True] * both
    b = [False] * only_a + [True] * only_b + [True] * both
    expected = 1.0 if only_a + only_b == 0 else stats.binomtest(only_b, only_a + only_b, 0.5).pvalue
    assert mcnemar(a, b) == pytest.approx(expected)
    if only_a + only_b:  # the same, written out: twice the smaller tail of Binomial(discordant, 1/2)
        tail = stats.binom.cdf(min(only_a, only_b), only_a + only_b, 0.5)
        assert mcnemar(a, b) == pytest.approx(min(1.0, 2 * tail))


def test_the_split_is_seeded_stratified_and_disjoint() -> None:
    keys = [str(i) for i in range(100)]
    labels = ["Positive"] * 60 + ["Negative"] * 30 + ["Neutral"] * 9 + ["Rare"]
    working, held = stratified_split(keys, labels, 0.3, seed=0)
    assert (working, held) == stratified_split(keys, labels, 0.3, seed=0)
    assert sorted(working + held, key=int) == keys and not set(working) & set(held)
    assert len(held) == 30
    by_key = dict(zip(keys, labels, strict=True))
    shares = Counter(by_key[key] for key in held)
    assert (shares["Positive"], shares["Negative"]) == (18, 9)
    assert stratified_split(keys, labels, 0.3, seed=1) != (working, held)


def test_every_report_kind_splits_its_headline_into_parts_that_add_up_over_tasks() -> None:
    """The paired bootstrap resamples each task's (numerator, denominator): their sums must give the headline."""
    import json

    from llm_backend.core.agreement import ControlReport
    from llm_backend.core.config import parse_label_config
    from llm_backend.core.evaluate import evaluate, task_key
    from tests.conftest import FIXTURES

    def kinds(cls: type) -> list[type]:
        return [sub for direct in cls.__subclasses__() for sub in [direct, *kinds(direct)]]

    assert all(kind.parts is not ControlReport.parts for kind in kinds(ControlReport))
    for xml, export in [("sentiment.xml", "annotated_sentiment.json"), ("ner.xml", "annotated_ner.json")]:
        config = parse_label_config((FIXTURES / "offline" / xml).read_text())
        tasks = json.loads((FIXTURES / "offline" / export).read_text())
        predictions = {task_key(t, i): (t["predictions"][0]["result"] if t["predictions"] else None)
                       for i, t in enumerate(tasks)}
        report = evaluate(config, tasks, predictions)
        for control in report.controls:
            scores = report.per_task[control.control].values()
            num, den = sum(s.num for s in scores), sum(s.den for s in scores)
            assert len(scores) == report.tasks
            assert num / den == pytest.approx(control.headline), control.control
