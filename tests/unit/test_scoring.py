"""Scoring rules on hand-made cases whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learning_analytics import scoring

OUTCOMES = np.array([0, 0, 0, 1, 1, 1, 0, 1])


def test_perfect_predictions_score_best() -> None:
    assert scoring.brier(OUTCOMES, OUTCOMES).value == 0
    assert scoring.auc(OUTCOMES, OUTCOMES).value == 1
    assert scoring.log_loss(OUTCOMES, OUTCOMES).value == pytest.approx(-math.log(1 - scoring.LOG_LOSS_EPS))
    assert scoring.calibration_in_the_large(OUTCOMES, OUTCOMES).value == 0


def test_inverted_predictions_score_worst() -> None:
    inverted = 1 - OUTCOMES
    assert scoring.brier(inverted, OUTCOMES).value == 1
    assert scoring.auc(inverted, OUTCOMES).value == 0
    # Every case costs -log(EPS).
    assert scoring.log_loss(inverted, OUTCOMES).value == pytest.approx(-math.log(scoring.LOG_LOSS_EPS))


def test_uninformative_predictions_score_like_a_coin() -> None:
    coin = np.full(len(OUTCOMES), 0.5)
    assert scoring.brier(coin, OUTCOMES).value == pytest.approx(0.25)
    assert scoring.log_loss(coin, OUTCOMES).value == pytest.approx(math.log(2))
    assert scoring.auc(coin, OUTCOMES).value == pytest.approx(0.5)  # all tied: mid-ranks


def test_random_scores_have_auc_near_half() -> None:
    rng = np.random.default_rng(7)
    outcomes = rng.integers(0, 2, 20_000)
    score = scoring.auc(rng.random(20_000), outcomes)
    # The AUC of independent scores has SD ~ sqrt(1 / (12 n_pos n_neg / n)) ~ 0.004 here.
    assert score.value == pytest.approx(0.5, abs=0.02)


def test_auc_equals_pairwise_definition_with_ties() -> None:
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.3, 0.4])
    outcomes = np.array([0, 0, 1, 1, 1, 0])
    pos, neg = scores[outcomes == 1], scores[outcomes == 0]
    pairwise = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert scoring.auc(scores, outcomes).value == pytest.approx(pairwise)


def test_one_class_outcomes_give_null_auc_with_a_reason() -> None:
    score = scoring.auc(np.array([0.2, 0.7, 0.9]), np.array([1, 1, 1]))
    assert score.value is None
    assert "one class" in score.reason
    assert score.n == 3


def test_empty_inputs_give_null_with_a_reason() -> None:
    for metric in (scoring.brier, scoring.log_loss, scoring.calibration_in_the_large, scoring.calibration_bins):
        score = metric([], [])
        assert score.value is None and score.reason and score.n == 0


def test_calibration_bins_of_a_calibrated_and_a_miscalibrated_model() -> None:
    rng = np.random.default_rng(3)
    predicted = rng.random(5000)
    calibrated = (rng.random(5000) < predicted).astype(int)
    good = scoring.calibration_bins(predicted, calibrated)
    assert len(good.detail["bins"]) == 10 and sum(b["n"] for b in good.detail["bins"]) == 5000
    # 500 per bin: the binomial SD of a bin's rate is at most 0.022.
    assert good.value < 0.08
    # Negative control: the same outcomes against predictions pushed towards 1.
    overconfident = scoring.calibration_bins(np.sqrt(predicted), calibrated)
    assert overconfident.value > 0.15


def test_calibration_bins_too_small_to_judge() -> None:
    score = scoring.calibration_bins([0.1, 0.9], [0, 1], min_bin_n=30)
    assert score.value is None and "30" in score.reason and len(score.detail["bins"]) == 2


def test_mase_and_coverage() -> None:
    actual = np.array([10.0, 12.0, 8.0, 10.0])
    naive = np.full(4, 10.0)  # MAE 1
    assert scoring.mase(actual, naive, actual).value == 0
    assert scoring.mase(naive, naive, actual).value == 1
    assert scoring.mase(actual + 2, naive, actual).value == 2
    assert scoring.mase(actual, actual, actual).value is None  # naive exact: no scale
    assert scoring.interval_coverage(actual - 1, actual + 1, actual).value == 1
    assert scoring.interval_coverage(naive - 1, naive + 1, actual).value == 0.5
    assert scoring.mean_absolute_error(naive, actual).value == 1


def test_precision_recall() -> None:
    precision, recall = scoring.precision_recall({1, 2, 3, 4}, {3, 4, 5})
    assert precision.value == 0.5 and precision.n == 4
    assert recall.value == pytest.approx(2 / 3) and recall.n == 3
    nothing, _ = scoring.precision_recall(set(), {1})
    assert nothing.value is None and "flagged" in nothing.reason


def test_adjusted_rand_index() -> None:
    truth = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    relabelled = [5, 5, 5, 3, 3, 3, 9, 9, 9]
    assert scoring.adjusted_rand_index(truth, relabelled).value == pytest.approx(1)
    # One item of the first group moved to the second. By hand: agreeing pairs 7,
    # row pairs 9, column pairs 10, expected 9 * 10 / 36 = 2.5, maximum 9.5, so
    # ARI = (7 - 2.5) / (9.5 - 2.5) = 9 / 14.
    moved = [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert scoring.adjusted_rand_index(truth, moved).value == pytest.approx(9 / 14)
    rng = np.random.default_rng(1)
    random_labels = rng.integers(0, 3, 3000)
    assert abs(scoring.adjusted_rand_index(np.repeat([0, 1, 2], 1000), random_labels).value) < 0.01
    single = scoring.adjusted_rand_index([1, 1, 1], [2, 2, 2])
    assert single.value is None and single.reason


def test_pearson() -> None:
    assert scoring.pearson([1, 2, 3, 4], [2, 4, 6, 8]).value == pytest.approx(1)
    assert scoring.pearson([1, 2, 3, 4], [8, 6, 4, 2]).value == pytest.approx(-1)
    assert scoring.pearson([1, 2, 3], [5, 5, 5]).value is None


def test_misaligned_or_non_binary_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="length"):
        scoring.brier([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        scoring.brier([0.1, 0.2], [1, 2])
