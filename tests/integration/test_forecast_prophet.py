"""forecast_prophet end to end: real warehouse, real r-forecast-plumber, ``airflow dags test``.

One synthetic population (300 students, seed 42, 16 weeks of history and 4 realized
weeks after the run date) and its weekly_kpi are loaded once for the module and the DAG
is run for TEST_LOGICAL_DATE; the tests then check what it wrote against the truth and
the realized weeks, rerun it (same settings, smaller chunks, a stopped service) and
compare. The window is the 12 complete weeks before 2026-11-23: 2026-08-31 .. 2026-11-16;
the run reads nothing after it.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from la_testing import PLATFORM_TIMEZONE, TEST_LOGICAL_DATE, DagRunResult, fetch_all, table_snapshot
from learning_analytics import synthetic
from learning_analytics.kpi import build_weekly_kpi
from learning_analytics.settings import KpiSettings, ProphetSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import weekly_window

DAG_ID = "forecast_prophet"
WINDOW = weekly_window(TEST_LOGICAL_DATE, 12)
LAST_WEEK = WINDOW.end - timedelta(weeks=1)
TABLES = ("prophet_fit_meta", "prophet_anomalies", "prophet_forecast")
FUTURE_WEEKS = 4
# Columns that legitimately differ between two runs with the same result.
RUN_SPECIFIC_COLUMNS = {"created_at", "model_id"}


@dataclass(frozen=True)
class FirstRun:
    result: DagRunResult
    n_eligible: int


def run_rows(conn: psycopg.Connection, table: str, ignore: frozenset[str] = frozenset()) -> list[tuple[Any, ...]]:
    """The rows of ``table`` for TEST_LOGICAL_DATE without run-specific (or ``ignore``d) columns, sorted."""
    columns = [
        name
        for (name,) in fetch_all(
            conn,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
        if name not in RUN_SPECIFIC_COLUMNS | ignore
    ]
    rows = fetch_all(conn, f"SELECT {', '.join(columns)} FROM {table} WHERE run_date = %s", (TEST_LOGICAL_DATE,))
    return sorted(rows, key=repr)


def eligible_students(conn: psycopg.Connection) -> set[int]:
    """Students who must get a series, by the documented rule, computed independently."""
    rows = fetch_all(
        conn,
        "SELECT user_id FROM weekly_kpi WHERE week_start >= %s AND week_start < %s GROUP BY user_id"
        " HAVING count(*) FILTER (WHERE n_attempts > 0) >= %s AND max(week_start) = %s",
        (WINDOW.start, WINDOW.end, ProphetSettings.from_env().min_active_weeks, LAST_WEEK),
    )
    return {user_id for (user_id,) in rows}


@pytest.fixture(scope="module")
def first_run(warehouse_uri: str, run_dag: Callable[..., DagRunResult]) -> FirstRun:
    data = synthetic.generate(
        n_students=300,
        n_weeks=16,
        seed=42,
        end_date=TEST_LOGICAL_DATE,
        future_weeks=FUTURE_WEEKS,
        timezone=PLATFORM_TIMEZONE,
    )
    synthetic.load(warehouse_uri, data)
    build_weekly_kpi(
        Warehouse(),
        weekly_window(TEST_LOGICAL_DATE + timedelta(weeks=FUTURE_WEEKS), 16 + FUTURE_WEEKS),
        KpiSettings.from_env(),
    )
    with psycopg.connect(warehouse_uri, autocommit=True) as conn:
        n_eligible = len(eligible_students(conn))
    result = run_dag(DAG_ID)
    assert result.succeeded, result.output[-5000:]
    return FirstRun(result, n_eligible)


def inactive_students(conn: psycopg.Connection) -> set[int]:
    """Eligible students without any attempt in the window's last two weeks (14 days before the run date)."""
    rows = fetch_all(
        conn,
        "SELECT user_id FROM weekly_kpi WHERE week_start >= %s AND week_start < %s GROUP BY user_id"
        " HAVING sum(n_attempts) = 0",
        (WINDOW.end - timedelta(weeks=2), WINDOW.end),
    )
    return {user_id for (user_id,) in rows} & eligible_students(conn)


def test_dag_run_writes_meta_forecasts_and_anomalies(first_run: FirstRun, db: psycopg.Connection) -> None:
    statuses = dict(
        fetch_all(
            db, "SELECT status, count(*) FROM prophet_fit_meta WHERE run_date = %s GROUP BY 1", (TEST_LOGICAL_DATE,)
        )
    )
    # 300 synthetic students: most study throughout; churners are inactive, skipped or absent.
    assert first_run.n_eligible >= 150
    inactive = inactive_students(db)
    assert inactive, "the synthetic churners should include students inactive at the run date"
    assert statuses.get("fitted") == first_run.n_eligible - len(inactive), statuses
    assert statuses.get("failed") is None, statuses
    by_status = {
        status: {
            user_id
            for (user_id,) in fetch_all(
                db,
                "SELECT user_id FROM prophet_fit_meta WHERE run_date = %s AND status = %s",
                (TEST_LOGICAL_DATE, status),
            )
        }  # fmt: skip
        for status in ("fitted", "inactive")
    }
    assert by_status["inactive"] == inactive
    assert by_status["fitted"] == eligible_students(db) - inactive

    skipped = fetch_all(
        db,
        "SELECT reason, n_points FROM prophet_fit_meta WHERE run_date = %s AND status = 'skipped'",
        (TEST_LOGICAL_DATE,),
    )
    assert skipped and all(reason.startswith("too little activity") and n_points >= 1 for reason, n_points in skipped)
    ((inactive_reason,),) = fetch_all(
        db,
        "SELECT DISTINCT reason FROM prophet_fit_meta WHERE run_date = %s AND status = 'inactive'",
        (TEST_LOGICAL_DATE,),
    )
    assert inactive_reason.startswith("no activity in the last 2 weeks")

    ((params, changepoints, sigma, n_points, settings, model_id),) = fetch_all(
        db,
        "SELECT params, changepoints, sigma, n_points, settings, model_id FROM prophet_fit_meta"
        " WHERE run_date = %s AND status = 'fitted' ORDER BY user_id LIMIT 1",
        (TEST_LOGICAL_DATE,),
    )
    assert {"growth", "k", "m", "delta", "slope_per_week", "scale"} <= params.keys()
    assert isinstance(changepoints, list) and sigma > 0 and 4 <= n_points <= 12 and model_id.startswith("prophet-")
    assert settings["PROPHET_LOOKBACK_WEEKS"] == 12 and settings["PROPHET_FORECAST_WEEKS"] == 4
    assert settings["PROPHET_ANOMALY_THRESHOLD"] == 2.5 and settings["window_start"] == WINDOW.start.isoformat()
    assert settings["service"]["anomaly_threshold"] == 2.5

    # Four forecast weeks right after the window for every fitted (not inactive) student,
    # inside I_t's range [0, 100], the band around the median.
    forecast_weeks = fetch_all(
        db,
        "SELECT week_start, count(*), count(*) FILTER (WHERE 0 <= yhat_lower AND yhat_lower <= yhat"
        " AND yhat <= yhat_upper AND yhat_upper <= 100)"
        " FROM prophet_forecast WHERE run_date = %s GROUP BY 1 ORDER BY 1",
        (TEST_LOGICAL_DATE,),
    )
    n_fitted = len(by_status["fitted"])
    assert forecast_weeks == [(WINDOW.end + timedelta(weeks=week), n_fitted, n_fitted) for week in range(4)]
    ((n_anomalies, min_score, n_outside_window, series, directions),) = fetch_all(
        db,
        "SELECT count(*), min(score), count(*) FILTER (WHERE week_start < %s OR week_start >= %s),"
        " array_agg(DISTINCT series ORDER BY series), array_agg(DISTINCT direction ORDER BY direction)"
        " FROM prophet_anomalies WHERE run_date = %s",
        (WINDOW.start, WINDOW.end, TEST_LOGICAL_DATE),
    )
    assert n_anomalies > 0 and min_score > 2.5 and n_outside_window == 0
    assert series == ["activity", "learning_index"] and directions == ["dip", "spike"]
    # Weeks after a student's last active week are never flagged.
    ((after_last_active,),) = fetch_all(
        db,
        """
        SELECT count(*) FROM prophet_anomalies AS a
        WHERE a.run_date = %(run_date)s AND a.week_start > (
            SELECT max(k.week_start) FROM weekly_kpi AS k
            WHERE k.user_id = a.user_id AND k.n_attempts > 0 AND k.week_start < %(end)s)
        """,
        {"run_date": TEST_LOGICAL_DATE, "end": WINDOW.end},
    )
    assert after_last_active == 0


def test_rerun_of_the_same_date_replaces_the_rows(
    first_run: FirstRun, db: psycopg.Connection, run_dag: Callable[..., DagRunResult]
) -> None:
    before = {table: run_rows(db, table) for table in TABLES}
    result = run_dag(DAG_ID)
    assert result.succeeded, result.output[-5000:]
    after = {table: run_rows(db, table) for table in TABLES}
    assert {table: len(rows) for table, rows in after.items()} == {table: len(rows) for table, rows in before.items()}
    assert after == before


def test_many_students_are_fitted_in_several_mapped_chunks(
    first_run: FirstRun, db: psycopg.Connection, run_dag: Callable[..., DagRunResult]
) -> None:
    # settings differ by PROPHET_CHUNK_SIZE; everything else must not.
    without_settings = frozenset({"settings"})
    unchunked = {table: run_rows(db, table, without_settings) for table in TABLES}
    chunk_size = 40
    result = run_dag(DAG_ID, conf={"PROPHET_CHUNK_SIZE": chunk_size})
    assert result.succeeded, result.output[-5000:]
    expected_chunks = -(-first_run.n_eligible // chunk_size)
    # Each chunk is one request, i.e. one model_id, fitted by its own mapped task instance.
    ((n_models, n_ok),) = fetch_all(
        db,
        "SELECT count(DISTINCT model_id), count(*) FROM prophet_fit_meta"
        " WHERE run_date = %s AND status IN ('fitted', 'inactive')",
        (TEST_LOGICAL_DATE,),
    )
    assert n_models == expected_chunks > 1
    assert n_ok == first_run.n_eligible
    for chunk in range(expected_chunks):
        assert f"chunk {chunk}: " in result.output
    ((settings,),) = fetch_all(
        db, "SELECT DISTINCT settings FROM prophet_fit_meta WHERE run_date = %s", (TEST_LOGICAL_DATE,)
    )
    assert settings["PROPHET_CHUNK_SIZE"] == chunk_size
    # Series are fitted independently, so chunking changes nothing in the results.
    assert {table: run_rows(db, table, without_settings) for table in TABLES} == unchunked


def window_activity(conn: psycopg.Connection) -> pd.DataFrame:
    """Weekly attempts and I_t in the window of the students that got a series, up to their last active week."""
    rows = fetch_all(
        conn,
        """
        SELECT k.user_id, k.week_start, k.n_attempts, k.i_t
        FROM weekly_kpi AS k
        JOIN prophet_fit_meta AS m ON m.user_id = k.user_id AND m.run_date = %(run_date)s
        WHERE m.status IN ('fitted', 'inactive') AND k.week_start >= %(start)s AND k.week_start < %(end)s
          AND k.week_start <= (SELECT max(l.week_start) FROM weekly_kpi AS l
                               WHERE l.user_id = k.user_id AND l.n_attempts > 0 AND l.week_start < %(end)s)
        ORDER BY 1, 2
        """,
        {"run_date": TEST_LOGICAL_DATE, "start": WINDOW.start, "end": WINDOW.end},
    )
    return pd.DataFrame(rows, columns=["user_id", "week_start", "n_attempts", "i_t"])


def top_weeks(weeks: pd.DataFrame, value: str, n_flags: int) -> set[tuple[int, Any]]:
    """The ``n_flags`` student-weeks with the largest |robust z| of ``value`` against the student's other weeks."""
    scored: list[tuple[float, int, Any]] = []
    for user_id, student in weeks.groupby("user_id"):
        values = student[value].to_numpy(dtype=float)
        for i, week in enumerate(student["week_start"]):
            others = np.delete(values, i)
            median = np.median(others)
            scale = max(1.4826 * np.median(np.abs(others - median)), 1.0)
            scored.append((abs(values[i] - median) / scale, user_id, week))
    scored.sort(key=lambda item: item[0], reverse=True)
    return {(user_id, week) for _, user_id, week in scored[:n_flags]}


def test_anomaly_flags_beat_the_count_baseline_and_flat_median_does_not(
    first_run: FirstRun, db: psycopg.Connection
) -> None:
    """Activity flags vs the injected anomalies, against the issue-12 count baseline.

    Truth: ``synthetic_truth_anomaly`` in the window, for the students sent to the
    service (the generator multiplies a week's session rate by 3-4 or 0.1-0.2).
    Bars, none taken from the model's own output:

    * Baseline bar: at the same number of flags (the model's), the model finds at least
      as many injected weeks as the count rule of issue 12 (weekly attempts against the
      median and MAD of the student's other weeks, up to the last active week). Same
      number of flags, so this is precision AND recall at least the baseline's.
      Negative control: issue 18's flat-median rule (I_t against the student's median,
      robust z) with the same number of flags must fail this bar.
    * Theory bar: precision at least 4x the base rate (the share of injected weeks among
      the weeks scored): a rule without information about the injection, e.g. one that
      misaligned weeks or students, flags at the base rate. Negative control: the same
      flags against the truth moved to random students (same weeks) must fail it.
    * Direction: at least 90% of the found weeks have the injected direction (spike for
      factors > 1), as the activity series is the count itself. Negative control:
      directions drawn at random (expected 50%) fail it.
    """
    truth_rows = fetch_all(
        db,
        """
        SELECT t.user_id, t.week_start, t.activity_factor FROM synthetic_truth_anomaly AS t
        JOIN prophet_fit_meta AS m ON m.user_id = t.user_id AND m.run_date = %(run_date)s
        WHERE m.status IN ('fitted', 'inactive') AND t.week_start >= %(start)s AND t.week_start < %(end)s
        """,
        {"run_date": TEST_LOGICAL_DATE, "start": WINDOW.start, "end": WINDOW.end},
    )
    truth = {(user_id, week): factor for user_id, week, factor in truth_rows}
    flags = {
        (user_id, week): direction
        for user_id, week, direction in fetch_all(
            db,
            "SELECT user_id, week_start, direction FROM prophet_anomalies WHERE run_date = %s AND series = 'activity'",
            (TEST_LOGICAL_DATE,),
        )
    }
    weeks = window_activity(db)
    n_flags = len(flags)
    hits = flags.keys() & truth.keys()
    baseline_hits = top_weeks(weeks, "n_attempts", n_flags) & truth.keys()
    flat_median_hits = top_weeks(weeks, "i_t", n_flags) & truth.keys()
    base_rate = len(truth) / len(weeks)
    rng = random.Random(42)
    students = sorted(weeks["user_id"].unique())
    shuffled_truth = {(rng.choice(students), week) for _, week in truth}
    right_direction = sum((flags[week] == "spike") == (truth[week] > 1) for week in hits)
    random_direction = sum(rng.choice(["spike", "dip"]) == ("spike" if truth[week] > 1 else "dip") for week in hits)
    spikes = {week for week, factor in truth.items() if factor > 1}
    print(
        f"activity flags: {n_flags} flagged, {len(truth)} injected, {len(hits)} found (precision "
        f"{len(hits) / n_flags:.2f}, recall {len(hits) / len(truth):.2f}, spikes {len(hits & spikes)}/{len(spikes)}); "
        f"count baseline {len(baseline_hits)}, flat median {len(flat_median_hits)}, base rate {base_rate:.3f}, "
        f"shuffled truth {len(flags.keys() & shuffled_truth)}, right direction {right_direction}/{len(hits)}"
    )
    assert len(truth) >= 30 and n_flags >= 20

    def beats_baseline(found: set) -> bool:
        return len(found) >= len(baseline_hits)

    def informative(found: set, n: int) -> bool:
        return len(found) / n >= 4 * base_rate

    def directed(n_right: int) -> bool:
        return n_right >= 0.9 * len(hits)

    assert beats_baseline(hits)
    assert not beats_baseline(flat_median_hits)
    assert informative(hits, n_flags)
    assert not informative(flags.keys() & shuffled_truth, n_flags)
    assert directed(right_direction)
    assert not directed(random_direction)


def test_learning_index_flags_are_no_more_than_a_calibrated_score_gives(
    first_run: FirstRun, db: psycopg.Connection
) -> None:
    """The synthetic world has no accuracy anomalies: every ``learning_index`` flag is a false alarm.

    Bar: at most the share of scored weeks (weeks with attempts) that a calibrated
    two-sided score flags at the threshold, 2 Phi(-2.5) = 1.24%. Each week is judged
    against its own sampling error (``y_se``, which the DAG sends) times the dispersion of
    the student's other weeks, at least 1, so it flags fewer (0.19-0.45% on the bench's
    400-student worlds, docs/bench-prophet-quality.md). The negative control of the
    yardstick itself (one residual sigma per student flags 2-7x as many ordinary weeks)
    is the service's test ``test-prophet-model.R``.
    """
    n_flags = fetch_all(
        db,
        "SELECT count(*) FROM prophet_anomalies WHERE run_date = %s AND series = 'learning_index'",
        (TEST_LOGICAL_DATE,),
    )[0][0]
    weeks = window_activity(db)
    n_scored = int((weeks["n_attempts"] > 0).sum())
    print(f"learning_index flags: {n_flags} of {n_scored} weeks with attempts ({n_flags / n_scored:.4f})")
    assert n_scored >= 1000
    # 2 Phi(-threshold), the two-sided share of a standard normal beyond the threshold.
    assert n_flags / n_scored <= math.erfc(ProphetSettings.from_env({}).anomaly_threshold / math.sqrt(2))


def realized_forecasts(conn: psycopg.Connection) -> pd.DataFrame:
    """Forecasts of fitted students with the realized I_t of those weeks and the naive forecast."""
    rows = fetch_all(
        conn,
        """
        SELECT f.user_id, f.week_start, f.yhat, f.yhat_lower, f.yhat_upper, k.i_t, k.n_attempts,
               (SELECT avg(h.i_t) FROM weekly_kpi AS h WHERE h.user_id = f.user_id
                  AND h.week_start >= %(end)s::date - 28 AND h.week_start < %(end)s) AS naive
        FROM prophet_forecast AS f
        JOIN weekly_kpi AS k ON k.user_id = f.user_id AND k.week_start = f.week_start
        WHERE f.run_date = %(run_date)s
        """,
        {"run_date": TEST_LOGICAL_DATE, "end": WINDOW.end},
    )
    return pd.DataFrame(
        rows, columns=["user_id", "week_start", "yhat", "yhat_lower", "yhat_upper", "i_t", "n_attempts", "naive"]
    ).astype({"yhat": float, "yhat_lower": float, "yhat_upper": float, "i_t": float, "naive": float})


def test_forecasts_beat_naive_on_active_weeks_and_intervals_cover(first_run: FirstRun, db: psycopg.Connection) -> None:
    """Forecasts vs the 4 realized weeks after the run date (never read by the run).

    * Accuracy bar (baseline): on realized weeks with attempts, the median forecast's
      MAE is below the naive forecast's (mean of the last 4 weeks, the scoreboard's
      baseline). Weeks without attempts (I_t = 0, mostly churn after the run date) are
      left out here: no weekly model predicts who stops; the full MASE is measured in
      bench/prophet_quality.py. Negative control: the same forecasts given to random
      other students must fail the bar.
    * Coverage bar (theory): the 80% band covers between 65% and 92% of all realized
      weeks: 80% +- 2.5 binomial standard errors of ~1,000 correlated weeks, plus the
      spread over seeds measured in docs/bench-prophet-quality.md. Negative control: the
      band halved around the median (what a band without trend and effort uncertainty
      looks like) must fail it.
    """
    realized = realized_forecasts(db)
    assert len(realized) >= 500
    active = realized[realized["n_attempts"] > 0]
    mae = (active["yhat"] - active["i_t"]).abs().mean()
    naive_mae = (active["naive"] - active["i_t"]).abs().mean()
    rng = np.random.default_rng(42)
    other_students = active["yhat"].to_numpy()[rng.permutation(len(active))]
    shuffled_mae = np.abs(other_students - active["i_t"].to_numpy()).mean()
    covered = ((realized["yhat_lower"] <= realized["i_t"]) & (realized["i_t"] <= realized["yhat_upper"])).mean()
    half_lower = realized["yhat"] - (realized["yhat"] - realized["yhat_lower"]) / 2
    half_upper = realized["yhat"] + (realized["yhat_upper"] - realized["yhat"]) / 2
    half_covered = ((half_lower <= realized["i_t"]) & (realized["i_t"] <= half_upper)).mean()
    print(
        f"forecasts: {len(realized)} realized weeks ({len(active)} active): MAE {mae:.2f} vs naive {naive_mae:.2f}"
        f" (shuffled {shuffled_mae:.2f}); coverage {covered:.3f} (halved band {half_covered:.3f})"
    )
    assert mae < naive_mae
    assert not shuffled_mae < naive_mae
    assert 0.65 <= covered <= 0.92
    assert not 0.65 <= half_covered <= 0.92


def test_stopped_service_fails_the_run_after_retries_and_leaves_the_warehouse_unchanged(
    first_run: FirstRun, db: psycopg.Connection, run_dag: Callable[..., DagRunResult], refused_port: int
) -> None:
    connection = json.loads(os.environ["AIRFLOW_CONN_R_FORECAST"])
    before = {table: table_snapshot(db, table) for table in TABLES}
    result = run_dag(
        DAG_ID,
        env={
            "AIRFLOW_CONN_R_FORECAST": json.dumps({**connection, "port": refused_port}),
            "LA_TASK_RETRIES": "1",
            "LA_RETRY_DELAY_SECONDS": "1",
        },
    )
    assert not result.succeeded
    assert "attempt 1/4 failed" in result.output  # the hook retried within the try ...
    assert "up_for_retry" in result.output.lower()  # ... and the task was retried
    assert {table: table_snapshot(db, table) for table in TABLES} == before
