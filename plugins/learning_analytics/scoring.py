"""Scoring rules of the model scoreboard: pure functions on arrays, no database.

Every function returns a :class:`Score`: a value, the number of cases it rests on,
and, when the value cannot be computed (no cases, one class only, a zero
denominator), ``value=None`` with the reason. A scoreboard row with a NULL value
and a reason is more useful than an exception in the middle of an evaluation run.

Conventions: ``predicted`` are probabilities in [0, 1], ``observed`` are 0/1
outcomes; arrays are aligned and free of missing values (callers drop those and
say how many in the row's ``n``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] for the log loss, so that one
#: confident miss costs a large but finite penalty (-log(1e-6) = 13.8).
LOG_LOSS_EPS = 1e-6


@dataclass(frozen=True)
class Score:
    """One metric value with its support, or the reason it has none."""

    value: float | None
    n: int
    reason: str | None = None
    #: Structured extras (e.g. the bins of a calibration table).
    detail: dict[str, Any] = field(default_factory=dict)


def _arrays(*arrays: Sequence[float] | np.ndarray) -> list[np.ndarray]:
    converted = [np.asarray(array, dtype=float) for array in arrays]
    lengths = {len(array) for array in converted}
    if len(lengths) > 1:
        raise ValueError(f"arrays differ in length: {sorted(lengths)}")
    return converted


def _binary(observed: np.ndarray) -> None:
    if not np.isin(observed, (0.0, 1.0)).all():
        raise ValueError("observed outcomes must be 0 or 1")


def _empty(n: int) -> Score | None:
    return Score(None, 0, "no cases to score") if n == 0 else None


def brier(predicted: Sequence[float], observed: Sequence[float]) -> Score:
    """Mean squared difference between probability and outcome (0 best, 0.25 = coin)."""
    p, y = _arrays(predicted, observed)
    _binary(y)
    return _empty(len(p)) or Score(float(np.mean((p - y) ** 2)), len(p))


def log_loss(predicted: Sequence[float], observed: Sequence[float]) -> Score:
    """Mean negative log-likelihood of the outcomes (0 best; ln 2 = 0.693 for a coin)."""
    p, y = _arrays(predicted, observed)
    _binary(y)
    if len(p) == 0:
        return Score(None, 0, "no cases to score")
    p = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return Score(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), len(p))


def auc(scores: Sequence[float], observed: Sequence[float]) -> Score:
    """Area under the ROC curve: P(a random event case scores above a random non-event).

    Mann-Whitney U with mid-ranks for ties (0.5 = no discrimination, 1 = perfect,
    0 = perfectly inverted). Undefined with only one class of outcome.
    """
    s, y = _arrays(scores, observed)
    _binary(y)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return Score(None, len(y), f"only one class of outcome ({n_pos} events, {n_neg} non-events)")
    ranks = _midranks(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2
    return Score(float(u / (n_pos * n_neg)), len(y))


def _midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    # Tied values share the mean of their ranks.
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return (sums / counts)[inverse]


def calibration_in_the_large(predicted: Sequence[float], observed: Sequence[float]) -> Score:
    """Mean predicted probability minus observed event rate (0 = calibrated on average)."""
    p, y = _arrays(predicted, observed)
    _binary(y)
    return _empty(len(p)) or Score(
        float(p.mean() - y.mean()), len(p), detail={"mean_predicted": float(p.mean()), "observed_rate": float(y.mean())}
    )


def calibration_bins(
    predicted: Sequence[float], observed: Sequence[float], n_bins: int = 10, min_bin_n: int = 30
) -> Score:
    """Calibration by equal-count bins of the prediction (deciles by default).

    ``value`` is the largest ``|mean predicted - observed rate|`` over bins holding at
    least ``min_bin_n`` cases (smaller bins are reported but too noisy to judge);
    ``detail["bins"]`` lists every bin with its mean prediction, observed rate and n.
    """
    p, y = _arrays(predicted, observed)
    _binary(y)
    if len(p) == 0:
        return Score(None, 0, "no cases to score")
    order = np.argsort(p, kind="mergesort")
    bins = []
    for index, members in enumerate(np.array_split(order, min(n_bins, len(p)))):
        bins.append(
            {
                "bin": index + 1,
                "mean_predicted": float(p[members].mean()),
                "observed_rate": float(y[members].mean()),
                "n": len(members),
            }
        )
    judged = [abs(b["mean_predicted"] - b["observed_rate"]) for b in bins if b["n"] >= min_bin_n]
    detail = {"bins": bins, "min_bin_n": min_bin_n}
    if not judged:
        return Score(None, len(p), f"no bin holds {min_bin_n} or more cases", detail)
    return Score(float(max(judged)), len(p), detail=detail)


def mean_absolute_error(predicted: Sequence[float], actual: Sequence[float]) -> Score:
    """Mean of ``|predicted - actual|``."""
    f, a = _arrays(predicted, actual)
    return _empty(len(f)) or Score(float(np.mean(np.abs(f - a))), len(f))


def mase(predicted: Sequence[float], naive: Sequence[float], actual: Sequence[float]) -> Score:
    """Mean absolute scaled error against a naive forecast of the same points.

    ``MAE(model) / MAE(naive)``: below 1 the model beats the naive forecast. Scaling by
    the naive forecast's out-of-sample error on the same points (rather than the
    in-sample one-step error) makes the ratio the direct answer to "is the model worth
    it here?".
    """
    f, b, a = _arrays(predicted, naive, actual)
    if len(f) == 0:
        return Score(None, 0, "no cases to score")
    naive_mae = float(np.mean(np.abs(b - a)))
    if naive_mae == 0:
        return Score(None, len(f), "the naive forecast is exact on every point (MAE 0)")
    return Score(float(np.mean(np.abs(f - a)) / naive_mae), len(f))


def interval_coverage(lower: Sequence[float], upper: Sequence[float], actual: Sequence[float]) -> Score:
    """Share of actual values inside ``[lower, upper]``."""
    lo, hi, a = _arrays(lower, upper, actual)
    return _empty(len(a)) or Score(float(np.mean((a >= lo) & (a <= hi))), len(a))


def precision_recall(flagged: set[Any], truth: set[Any]) -> tuple[Score, Score]:
    """Precision (true flags / flags) and recall (true flags found / true cases)."""
    hits = len(flagged & truth)
    precision = Score(hits / len(flagged), len(flagged)) if flagged else Score(None, 0, "nothing was flagged")
    recall = Score(hits / len(truth), len(truth)) if truth else Score(None, 0, "no true cases in the window")
    return precision, recall


def adjusted_rand_index(labels_a: Sequence[Any], labels_b: Sequence[Any]) -> Score:
    """Adjusted Rand index of two labelings of the same items (1 identical, ~0 random).

    Label values need not match between the two (segment 1 in one run may be
    segment 3 in the other); only the partition matters.
    """
    if len(labels_a) != len(labels_b):
        raise ValueError(f"labelings differ in length: {len(labels_a)} vs {len(labels_b)}")
    n = len(labels_a)
    if n < 2:
        return Score(None, n, "fewer than two items")
    _, a = np.unique(np.asarray(labels_a, dtype=object).astype(str), return_inverse=True)
    _, b = np.unique(np.asarray(labels_b, dtype=object).astype(str), return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2)
    maximum = (rows + cols) / 2
    if math.isclose(maximum, expected):
        return Score(None, n, "both labelings put every item in one group (ARI undefined)")
    return Score(float((index - expected) / (maximum - expected)), n)


def pearson(x: Sequence[float], y: Sequence[float]) -> Score:
    """Pearson correlation; undefined when either variable is constant."""
    a, b = _arrays(x, y)
    if len(a) < 3:
        return Score(None, len(a), "fewer than three cases")
    if np.std(a) == 0 or np.std(b) == 0:
        return Score(None, len(a), "a variable is constant")
    return Score(float(np.corrcoef(a, b)[0, 1]), len(a))
