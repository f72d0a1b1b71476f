"""The scoreboard's outcome definitions and baselines on hand-made cases."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from learning_analytics import evaluation
from learning_analytics.settings import EvaluationSettings

ORIGIN = date(2026, 11, 23)


def days(*offsets: int) -> list[date]:
    return [ORIGIN + timedelta(days=offset) for offset in offsets]


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        # Active the day before and every few days after: no 14-day gap.
        (days(-1, 5, 12, 20), False),
        # Last attempt the day before, nothing after: the gap completes on day 13 < 14.
        (days(-1), True),
        # Idle since day -3: the 14th idle day is day 11, inside the horizon.
        (days(-3), True),
        # A gap from day 0 to day 14 exclusive is 13 idle days: not yet churn.
        (days(-1, 13), False),
        # Back on day 14 after 14 idle days (0..13): the gap completed on day 13.
        (days(-1, 14), True),
        # A 14-day gap that completes only after the horizon does not count.
        (days(-1, 5), False),
    ],
)
def test_gap_completed(active: list[date], expected: bool) -> None:
    assert evaluation.gap_completed(active, ORIGIN, horizon_days=14, threshold_days=14) is expected


def test_realized_churn_leaves_out_students_already_gone() -> None:
    activity = pd.DataFrame(
        {"user_id": [1, 1, 2, 3], "day": [*days(-2, 3), *days(-20), *days(-1)]},
    )
    realized = evaluation.realized_churn(activity, [1, 2, 3], ORIGIN, horizon_days=14, threshold_days=14)
    assert list(realized["user_id"]) == [1, 3]  # 2 was idle 19 days at the origin
    assert dict(zip(realized["user_id"], realized["days_idle"], strict=True)) == {1: 1, 3: 0}
    # 1 came back on day 3 and then stayed away: the gap completes on day 17, too late.
    assert dict(zip(realized["user_id"], realized["event"], strict=True)) == {1: 0, 3: 1}


def test_idle_rate_table_pools_rare_values() -> None:
    landmark = pd.DataFrame({"days_idle": [0] * 20 + [5] * 3, "event": [0] * 18 + [1] * 2 + [1] * 3})
    rates, pooled = evaluation.idle_rate_table([landmark])
    assert rates == {0: pytest.approx(0.1)}  # 5 days idle seen 3 times: pooled rate instead
    assert pooled == pytest.approx(5 / 23)


def test_count_rule_flags_the_most_unusual_weeks() -> None:
    weeks = [date(2026, 9, 7) + timedelta(weeks=k) for k in range(8)]
    steady = [20, 22, 19, 21, 20, 23, 18, 21]
    spiky = [10, 11, 9, 80, 10, 12, 30, 10]
    activity = pd.DataFrame(
        {"user_id": [1] * 8 + [2] * 8, "week_start": weeks * 2, "n_attempts": steady + spiky},
    )
    assert evaluation.count_rule_flags(activity, 2) == {(2, weeks[3]), (2, weeks[6])}
    assert evaluation.count_rule_flags(activity, 0) == set()


def test_verdict() -> None:
    assert evaluation.verdict("brier", 0.1, 0.2) == "better"
    assert evaluation.verdict("brier", 0.3, 0.2) == "WORSE"
    assert evaluation.verdict("auc", 0.6, 0.7) == "WORSE"
    assert evaluation.verdict("calibration_in_the_large", -0.01, 0.05) == "better"
    assert evaluation.verdict("interval_coverage", 0.8, None) == "-"
    assert evaluation.verdict("auc", None, 0.5) == "-"


def growth_frame(p_goal: list[float], reached: list[int]) -> pd.DataFrame:
    n = len(p_goal)
    return pd.DataFrame(
        {
            "run_date": [ORIGIN] * n,
            "status": ["ok"] * n,
            "user_id": range(1, n + 1),
            "p_goal": p_goal,
            "slope": [0.01] * n,
            "goal": [0.7] * n,
            "target_week_start": [ORIGIN + timedelta(weeks=4)] * n,
            "n_attempts": [10] * n,
            "n_correct": [8 if hit else 5 for hit in reached],
            "simple_p": [0.5] * n,
            "history_weeks": [4] * n,
            "history_hits": [2] * n,
        }
    )


def test_growth_rows_perfect_model_beats_the_baselines() -> None:
    reached = [1, 0] * 20
    rows = {row["metric"]: row for row in evaluation.score_growth(growth_frame(reached, reached), EvaluationSettings())}
    assert rows["brier"]["value"] == 0 and rows["brier"]["baseline_value"] == pytest.approx(0.25)
    assert rows["auc"]["value"] == 1
    assert rows["event_rate"]["value"] == 0.5
    assert rows["brier_vs_simple"]["baseline_value"] == pytest.approx(0.25)


def test_growth_rows_inverted_model_is_reported_worse() -> None:
    reached = [1, 0] * 20
    inverted = [1.0 - hit for hit in reached]
    rows = {
        row["metric"]: row for row in evaluation.score_growth(growth_frame(inverted, reached), EvaluationSettings())
    }
    assert evaluation.verdict("brier", rows["brier"]["value"], rows["brier"]["baseline_value"]) == "WORSE"
    assert rows["auc"]["value"] == 0


def test_growth_leaves_out_students_without_target_week_attempts() -> None:
    frame = growth_frame([0.9, 0.1, 0.5], [1, 0, 1])
    frame.loc[2, "n_attempts"] = 0
    rows = {row["metric"]: row for row in evaluation.score_growth(frame, EvaluationSettings())}
    assert rows["brier"]["n"] == 2
    assert "1 students without attempts" in rows["brier"]["note"]
    # Two cases: the calibration bins are too small to judge, reported with the reason.
    assert rows["calibration_max_error"]["value"] is None and "30" in rows["calibration_max_error"]["note"]


def test_least_squares_slopes() -> None:
    weekly = pd.DataFrame(
        {"user_id": [1] * 4 + [2] * 2, "week": [0, 1, 2, 3, 0, 1], "accuracy": [0.5, 0.6, 0.7, 0.8, 0.4, 0.5]}
    )
    slopes = evaluation.least_squares_slopes(weekly).set_index("user_id")["ls_slope"]
    assert slopes[1] == pytest.approx(0.1)
    assert np.isnan(slopes[2])  # fewer than three weeks


def test_activity_segments_are_equal_count_groups() -> None:
    assignments = pd.DataFrame({"user_id": range(9), "n_attempts": [5, 1, 9, 3, 7, 2, 8, 4, 6]})
    segments = evaluation.activity_segments(assignments, 3)
    assert segments.value_counts().to_dict() == {1: 3, 2: 3, 3: 3}
    assert segments[1] == 1 and segments[2] == 3


def test_evaluation_window_reads_nothing_of_the_current_week() -> None:
    window = evaluation.EvaluationWindow.for_run(date(2026, 11, 25), EvaluationSettings(lookback_weeks=2))
    assert window.outcome_end == date(2026, 11, 23)  # the Monday of the logical date's week
    assert (window.since, window.until) == (date(2026, 11, 9), date(2026, 11, 23))
