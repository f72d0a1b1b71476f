"""fit_survival_churn end to end: real warehouse, real r-forecast-plumber, `airflow dags test`."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, fetch_all
from learning_analytics.kpi import build_weekly_kpi
from learning_analytics.paths import read_sql
from learning_analytics.pipelines.survival import (
    COVARIATES,
    SurvivalPipeline,
    fit_payload,
    fit_rows,
    kpi_week,
    observation_params,
    predict_payload,
    score_rows,
)
from learning_analytics.settings import KpiSettings, SurvivalSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import daily_window, weekly_window

DAG_ID = "fit_survival_churn"
SETTINGS = SurvivalSettings.from_env({})
#: The synthetic truth's covariates and the model covariates that measure them. The
#: generator's sessions_per_week is left out: the model carries the activity rate jointly
#: with days idle (missed_active_days), so its main effect is not the generator's.
MATCHING_COVARIATE = {"accuracy": "accuracy", "accuracy_trend": "accuracy_trend"}


# --- the landmark rows on a hand-made attempt history -----------------------------------

#: Far from the synthetic data, so other rows in the warehouse cannot interfere (a Monday).
HAND_MADE_RUN_DATE = date(2031, 3, 10)
HAND_MADE_TOPIC = 9_901
HAND_MADE_QUESTION = 99_010_001


def active_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def hand_made_history() -> tuple[dict[int, list[date]], dict[tuple[str, int, int], dict]]:
    """Attempt days per student, and the rows the extract must give for them.

    W is the run date, the window W - 90 .. W - 1; landmarks L_k = W - 1 - 7k. Expected rows
    are keyed by (role, student, k): at L_1 = W - 8 follow-up is 7 days, at L_2 = W - 15 it
    is the 14-day horizon.
    """
    window = daily_window(HAND_MADE_RUN_DATE, SETTINGS.lookback_days)
    first, w = window.start, window.end

    def day(offset: int) -> date:
        return w + timedelta(days=offset)

    days = {
        1: active_days(first, day(-1)),  # daily to the end
        2: active_days(first, day(-18)),  # stops on W - 18: the 14-day gap completes on W - 4
        3: active_days(first, day(-14)),  # stops on W - 14: 13 idle days at the end, not churned
        4: active_days(first, day(-15)),  # stops on W - 15: 14 idle days at the end, churned
        5: active_days(first, day(-15)) + [day(-1)],  # 13 idle days, then back on W - 1
        6: [first - timedelta(days=3)],  # only before the window: no row
        7: active_days(day(-5), day(-1)),  # starts on W - 5: scored only
    }
    expected = {
        ("fit", 1, 2): {"days_idle": 0, "time_days": 14, "event": 0},
        ("fit", 2, 2): {"days_idle": 3, "time_days": 11, "event": 1, "churn_completed_on": day(-4)},
        ("fit", 2, 1): {"days_idle": 10, "time_days": 4, "event": 1},
        ("fit", 3, 1): {"days_idle": 6, "time_days": 7, "event": 0},  # completes on W: not seen yet
        ("fit", 4, 1): {"days_idle": 7, "time_days": 7, "event": 1, "churn_completed_on": day(-1)},
        ("fit", 5, 2): {"days_idle": 0, "time_days": 14, "event": 0},
        ("fit", 5, 1): {"days_idle": 7, "time_days": 7, "event": 0},  # came back on the 14th day
        ("score", 1, 0): {"status": "active", "days_idle": 0},
        ("score", 2, 0): {"status": "churned", "days_idle": 17},
        ("score", 3, 0): {"status": "active", "days_idle": 13},
        ("score", 4, 0): {"status": "churned", "days_idle": 14},
        ("score", 5, 0): {"status": "active", "days_idle": 0},
        ("score", 7, 0): {"status": "active", "days_idle": 0, "baseline_attempts": 5},
    }
    return days, expected


def test_landmark_rows_on_a_hand_made_history(warehouse_uri: str) -> None:
    """Days idle, events, censoring and churned students at the landmarks; rolled back afterwards.

    Attempts are made at 23:30 Seoul time (14:30 UTC): they count for that local day.
    """
    days, expected = hand_made_history()
    user_ids = {user: 900_000 + user for user in days}
    window = daily_window(HAND_MADE_RUN_DATE, SETTINGS.lookback_days, "Asia/Seoul")
    seoul = ZoneInfo("Asia/Seoul")
    with psycopg.connect(warehouse_uri) as conn:  # one transaction, rolled back: nothing stays
        with conn.cursor() as cur:
            cur.execute("INSERT INTO topics VALUES (%s, 'survival test topic')", (HAND_MADE_TOPIC,))
            cur.execute("INSERT INTO questions VALUES (%s, %s, 0.0)", (HAND_MADE_QUESTION, HAND_MADE_TOPIC))
            for user_id in user_ids.values():
                cur.execute(
                    "INSERT INTO students VALUES (%s, %s, 0.7, %s)",
                    (user_id, window.start - timedelta(days=30), window.end + timedelta(days=60)),
                )
            cur.executemany(
                "INSERT INTO attempt_log VALUES ((SELECT coalesce(max(attempt_id), 0) + 1 FROM attempt_log),"
                " %s, %s, %s, %s, 60, %s)",
                [
                    # Alternate right and wrong so that accuracy varies.
                    (
                        user_ids[user],
                        HAND_MADE_QUESTION,
                        HAND_MADE_TOPIC,
                        index % 2 == 0,
                        datetime.combine(day, time(23, 30), tzinfo=seoul),
                    )  # fmt: skip
                    for user in days
                    for index, day in enumerate(days[user])
                ],
            )
            cur.execute(read_sql("survival/churn_observations.sql"), observation_params(window, SETTINGS))
            rows = pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])
        conn.rollback()

    rows = rows[rows["user_id"].isin(user_ids.values())].copy()
    rows["k"] = [(HAND_MADE_RUN_DATE - timedelta(days=1) - day).days // 7 for day in rows["landmark_day"]]
    rows["user"] = rows["user_id"] - 900_000
    indexed = rows.set_index(["role", "user", "k"])
    assert set(rows["k"]) == set(range(9)), "landmarks every 7 days while the 28-day baseline fits in 90 days"
    for key, want in expected.items():
        assert key in indexed.index, f"no row {key}"
        got = indexed.loc[key]
        for column, value in want.items():
            assert got[column] == value, f"{key}: {column} {got[column]} != {value}"
    # Churned at a landmark = idle for 14 days: no fit row (not at risk), e.g. student 2 at k = 0.
    assert (rows.loc[rows["role"] == "fit", "days_idle"] < SETTINGS.event_threshold_days).all()
    assert 6 not in set(rows["user"]) and set(rows.loc[rows["user"] == 7, "role"]) == {"score"}
    assert set(rows.loc[rows["status"] == "churned", "user"]) == {2, 4}


# --- the synthetic population and the DAG ---------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_run(load_synthetic, run_dag) -> dict:
    """400 synthetic students, weekly KPI built, one survival run for the test date.

    400 students give ~2,500 student-landmarks with ~130 churn events: the held-out
    concordance is then measured to about +-0.02.
    """
    world = load_synthetic(n_students=400, n_weeks=16, seed=42)
    build_weekly_kpi(Warehouse(), weekly_window(TEST_LOGICAL_DATE, 16), KpiSettings.from_env())
    result = run_dag(DAG_ID)
    assert result.succeeded, result.output[-5000:]
    return {"world": world}


META_COLUMNS = (
    "status",
    "message",
    "model_id",
    "coefficients",
    "concordance",
    "concordance_in_sample",
    "ph_test",
    "ph_actions",
    "constraints",
    "n",
    "n_events",
    "sizes",
    "settings",
    "covariates",
)


def meta_row(db: psycopg.Connection, run_date: date = TEST_LOGICAL_DATE) -> dict:
    rows = fetch_all(db, f"SELECT {', '.join(META_COLUMNS)} FROM survival_fit_meta WHERE run_date = %s", (run_date,))
    assert len(rows) == 1
    return dict(zip(META_COLUMNS, rows[0], strict=True))


def expected_terms(meta: dict) -> list[str]:
    """The coefficient terms a fit must report: one per covariate, two for a covariate given a
    time interaction, none for a term the monotone constraint fixed at 0."""
    split = {action["covariate"]: action["terms"] for action in meta["ph_actions"]}
    terms = [term for covariate in COVARIATES for term in split.get(covariate, [covariate])]
    return [term for term in terms if term not in meta["constraints"]["fixed_at_zero"]]


def test_run_records_the_fit_and_the_risks(synthetic_run: dict, db: psycopg.Connection) -> None:
    meta = meta_row(db)
    assert meta["status"] == "ok" and meta["model_id"]
    assert meta["covariates"] == list(COVARIATES)
    assert [row["term"] for row in meta["coefficients"]] == expected_terms(meta)
    assert all({"coef", "hazard_ratio", "se", "p_value"} <= set(row) for row in meta["coefficients"])
    # The PH test was acted on: every covariate with p < 0.01 got a time interaction, no other did.
    ph = dict(zip(meta["ph_test"]["term"], meta["ph_test"]["p_value"], strict=True))
    assert {action["covariate"] for action in meta["ph_actions"]} == {name for name in COVARIATES if ph[name] < 0.01}
    assert meta["constraints"]["monotone"] == ["days_idle", "missed_active_days"]
    assert meta["settings"]["SURVIVAL_LOOKBACK_DAYS"] == 90 and meta["settings"]["LA_TIMEZONE"] == "Asia/Seoul"
    sizes = meta["sizes"]
    assert sizes["n_fit_rows"] == meta["n"] and sizes["n_events"] == meta["n_events"] >= 30
    assert sizes["n_landmarks"] == 8
    ((n_risk, n_events),) = fetch_all(
        db, "SELECT count(*), sum(event) FROM survival_risk WHERE run_date = %s", (TEST_LOGICAL_DATE,)
    )
    assert (n_risk, n_events) == (meta["n"], meta["n_events"])

    # S = each student's p_event, in the week of the day before the logical date; churned = 1.
    kpi = dict(
        fetch_all(
            db,
            "SELECT user_id, s FROM weekly_kpi WHERE week_start = %s AND s_run_date = %s",
            (kpi_week(TEST_LOGICAL_DATE), TEST_LOGICAL_DATE),
        )
    )
    risk = fetch_all(
        db,
        "SELECT user_id, status, days_idle, p_event FROM survival_active_risk WHERE run_date = %s",
        (TEST_LOGICAL_DATE,),
    )
    assert len(risk) == sizes["n_active"] + sizes["n_churned"] and sizes["n_active"] > 100
    assert kpi == pytest.approx({user_id: p for user_id, _, _, p in risk}) and sizes["n_kpi_updated"] == len(kpi)
    for _, status, days_idle, p in risk:
        if days_idle >= SETTINGS.event_threshold_days:
            assert (status, p) == ("churned", 1.0)
        else:
            assert status == "active" and 0 < p < 1


def test_hazard_ratios_have_the_true_signs(synthetic_run: dict, db: psycopg.Connection) -> None:
    """Accuracy and study frequency: fitted hazard ratios on the true side of 1 (a model
    with flipped signs fails). The accuracy trend: its 95% interval reaches the true sign.
    Measured over a 28-day baseline it is mostly noise (true slopes vary by ~0.01/week, a
    student's 28-day slope of correctness has an SE several times that), so its sign is
    not identified: with churn allowed up to the run date the seed-42 fit gave
    coef 1.5 +- 3.4 (p = 0.66)."""
    ((truth,),) = fetch_all(db, "SELECT churn_coefficients FROM synthetic_run")
    meta = meta_row(db)
    for true_name, fitted_name in MATCHING_COVARIATE.items():
        rows = [row for row in meta["coefficients"] if row["term"].split(".")[0] == fitted_name]
        assert rows, fitted_name
        for row in rows:
            message = f"{true_name}: true {truth[true_name]}, fitted {row}"
            if true_name == "accuracy_trend":
                # A weak effect measured from few noisy days: its 95% interval must not
                # exclude the true sign (a point estimate of the wrong sign can happen).
                sign = -1.0 if truth[true_name] < 0 else 1.0
                assert sign * (row["coef"] + sign * 1.959964 * row["se"]) > 0, message
            else:
                assert (row["hazard_ratio"] < 1) == (truth[true_name] < 0), message


def test_s_never_decreases_with_days_idle_on_a_hand_made_cohort(synthetic_run: dict, db: psycopg.Connection) -> None:
    """The run's model scores 14 copies of three real students that differ only in days idle
    (0 .. 13, missed study days growing with them): S must not decrease along any of them, and
    the run's own S must rise with days idle across students (a student idle a week is more
    at risk on average than one active yesterday)."""
    meta = meta_row(db)
    window = daily_window(TEST_LOGICAL_DATE, SETTINGS.lookback_days)
    students = score_rows(
        Warehouse().query_frame("survival/churn_observations.sql", observation_params(window, SETTINGS))
    )
    service = SurvivalPipeline().service()
    for _, student in students.sample(3, random_state=1).iterrows():
        cohort = pd.DataFrame([student] * 14).reset_index(drop=True)
        cohort["user_id"] = range(1, 15)
        cohort["days_idle"] = range(14)
        cohort["missed_active_days"] = cohort["days_idle"] * student["active_days_per_week"] / 7
        prediction = service.call("survival/predict", predict_payload(meta["model_id"], cohort, SETTINGS.horizon_days))
        assert np.all(np.diff(prediction["p_event"]) >= 0), prediction["p_event"]
        assert prediction["p_event"][13] > prediction["p_event"][0]
    by_idle = pd.DataFrame(
        fetch_all(
            db,
            "SELECT days_idle, p_event FROM survival_active_risk WHERE run_date = %s AND status = 'active'",
            (TEST_LOGICAL_DATE,),
        ),  # fmt: skip
        columns=["days_idle", "p_event"],
    )
    assert (
        by_idle.loc[by_idle["days_idle"] >= 7, "p_event"].mean()
        > 2 * by_idle.loc[by_idle["days_idle"] <= 1, "p_event"].mean()
    )


def test_concordance_is_held_out_and_fails_for_a_model_that_knows_nothing(
    synthetic_run: dict, db: psycopg.Connection
) -> None:
    """Held-out concordance (5-fold by student, in the meta row) of at least 0.75.

    Why 0.75: it is the scoreboard's AUC bar for S. The model reaches 0.89-0.91 over three
    seeds (docs/bench-survival-quality.md), and with ~130 events the concordance has a
    standard error of about 0.02, so 0.75 fails only a model that lost most of its signal.
    Negative control: the same fit with the covariates shuffled across rows (a model that
    knows nothing about the student) must fall below the bar; so must the in-sample C
    stay above the held-out one (in-sample optimism), which a mislabelled in-sample C would not.
    """
    meta = meta_row(db)
    assert meta["concordance"] >= 0.75, meta["concordance"]
    assert meta["concordance_in_sample"] >= meta["concordance"]

    window = daily_window(TEST_LOGICAL_DATE, SETTINGS.lookback_days)
    rows = fit_rows(Warehouse().query_frame("survival/churn_observations.sql", observation_params(window, SETTINGS)))
    shuffled = rows.copy()
    order = np.random.default_rng(7).permutation(len(rows))
    shuffled[list(COVARIATES)] = rows[list(COVARIATES)].to_numpy()[order]
    blind = SurvivalPipeline().service().fit("survival/fit", fit_payload(shuffled, SETTINGS.horizon_days), poll_s=0.5)
    assert blind["concordance"] < 0.75, blind["concordance"]


def test_a_lookback_without_events_is_recorded_as_skipped(synthetic_run: dict, db: psycopg.Connection, run_dag) -> None:
    """A 28-day lookback holds only the run's own landmark (no follow-up, so no event seen)."""
    run_date = TEST_LOGICAL_DATE - timedelta(days=1)
    conf = {"SURVIVAL_LOOKBACK_DAYS": 28, "SURVIVAL_HORIZON_DAYS": 7, "SURVIVAL_EVENT_THRESHOLD_DAYS": 10}
    result = run_dag(DAG_ID, logical_date=run_date, conf=conf)
    assert result.succeeded, result.output[-5000:]
    meta = meta_row(db, run_date)
    assert meta["status"] == "skipped" and meta["model_id"] is None
    assert meta["message"].startswith("too few churn events to fit: 0 in 0 student-landmarks")
    assert {name: meta["settings"][name] for name in conf} == conf
    assert meta["sizes"]["n_churned"] > 0  # idle for 10 days now counts as churned
    counts = fetch_all(
        db,
        "SELECT (SELECT count(*) FROM survival_risk WHERE run_date = %(d)s),"
        " (SELECT count(*) FROM survival_active_risk WHERE run_date = %(d)s),"
        " (SELECT count(*) FROM weekly_kpi WHERE s_run_date = %(d)s)",
        {"d": run_date},
    )
    assert counts == [(0, 0, 0)]


def test_rerun_replaces_the_run(synthetic_run: dict, db: psycopg.Connection, run_dag) -> None:
    # Leftovers an earlier run of the same date could have written, and a new run must remove.
    stale_user = fetch_all(
        db,
        "SELECT user_id FROM weekly_kpi WHERE week_start = %s AND s IS NULL LIMIT 1",
        (kpi_week(TEST_LOGICAL_DATE),),
    )[0][0]
    db.execute("UPDATE weekly_kpi SET s = 0.99, s_run_date = %s WHERE user_id = %s AND week_start = %s",
               (TEST_LOGICAL_DATE, stale_user, kpi_week(TEST_LOGICAL_DATE)))  # fmt: skip
    db.execute(
        "INSERT INTO survival_risk (run_date, user_id, landmark_day, days_idle, time_days, event, risk_score, p_event)"
        " VALUES (%s, 1, '2020-01-01', 0, 1, 0, 0, 0.5)",
        (TEST_LOGICAL_DATE,),
    )
    snapshot_sql = (
        "SELECT user_id, landmark_day, days_idle, time_days, event, risk_score, p_event FROM survival_risk"
        " WHERE run_date = %(d)s ORDER BY user_id, landmark_day"
    )
    before = fetch_all(db, snapshot_sql, {"d": TEST_LOGICAL_DATE})
    active_sql = "SELECT * FROM survival_active_risk WHERE run_date = %(d)s ORDER BY user_id"
    active_before = fetch_all(db, active_sql, {"d": TEST_LOGICAL_DATE})

    result = run_dag(DAG_ID)
    assert result.succeeded, result.output[-5000:]
    after = fetch_all(db, snapshot_sql, {"d": TEST_LOGICAL_DATE})
    # Same data, same model: identical rows (risks to rounding), the planted row gone.
    assert [row[:5] for row in after] == [row[:5] for row in before if row[0] != 1]
    assert np.allclose([row[6] for row in after], [row[6] for row in before if row[0] != 1])
    active_after = fetch_all(db, active_sql, {"d": TEST_LOGICAL_DATE})
    # run_date, user_id, last_active_day, status, days_idle; covariates and p_event to rounding
    # (PostgreSQL's regression aggregates may sum in another order).
    assert [(*row[:3], *row[6:]) for row in active_after] == [(*row[:3], *row[6:]) for row in active_before]

    def numbers(rows: list[tuple]) -> np.ndarray:
        return np.array(
            [[row[5]] + [np.nan if row[3][name] is None else row[3][name] for name in COVARIATES] for row in rows],
            dtype=float,
        )

    assert np.allclose(numbers(active_after), numbers(active_before), equal_nan=True)
    assert fetch_all(db, "SELECT s FROM weekly_kpi WHERE user_id = %s AND week_start = %s",
                     (stale_user, kpi_week(TEST_LOGICAL_DATE))) == [(None,)]  # fmt: skip


def test_update_kpi_false_leaves_weekly_kpi_s_untouched(synthetic_run: dict, db: psycopg.Connection, run_dag) -> None:
    snapshot_sql = "SELECT user_id, week_start, s, s_run_date FROM weekly_kpi ORDER BY user_id, week_start"
    before = fetch_all(db, snapshot_sql)
    assert any(s is not None for _, _, s, _ in before)
    result = run_dag(DAG_ID, conf={"SURVIVAL_UPDATE_KPI": False})
    assert result.succeeded, result.output[-5000:]
    assert fetch_all(db, snapshot_sql) == before
    meta = meta_row(db)
    assert meta["settings"]["SURVIVAL_UPDATE_KPI"] is False and meta["sizes"]["n_kpi_updated"] == 0
    # The model is still fitted and recorded, and the students still scored.
    assert meta["status"] == "ok" and meta["model_id"]
    assert [row["term"] for row in meta["coefficients"]] == expected_terms(meta)
    ((n_scored,),) = fetch_all(
        db, "SELECT count(*) FROM survival_active_risk WHERE run_date = %s", (TEST_LOGICAL_DATE,)
    )
    assert n_scored == meta["sizes"]["n_active"] + meta["sizes"]["n_churned"] > 100


def test_a_persist_that_fails_half_way_leaves_every_table_unchanged(
    synthetic_run: dict, db: psycopg.Connection, run_dag
) -> None:
    """The meta row is written last: a constraint that rejects it makes the run fail after
    survival_risk, survival_active_risk and weekly_kpi.s were written inside the transaction,
    and every one of them must be as before (one transaction, rolled back)."""
    tables = {
        "survival_risk": "SELECT * FROM survival_risk ORDER BY run_date, user_id, landmark_day",
        "survival_active_risk": "SELECT * FROM survival_active_risk ORDER BY run_date, user_id",
        "weekly_kpi.s": "SELECT user_id, week_start, s, s_run_date FROM weekly_kpi ORDER BY user_id, week_start",
        "survival_fit_meta": "SELECT run_date, status, model_id, n FROM survival_fit_meta ORDER BY run_date",
    }
    # A rerun with other settings would change every table if it were committed.
    db.execute("UPDATE weekly_kpi SET s = 0.5 WHERE s_run_date = %s", (TEST_LOGICAL_DATE,))
    before = {name: fetch_all(db, query) for name, query in tables.items()}
    db.execute(
        "ALTER TABLE survival_fit_meta ADD CONSTRAINT reject_test_run"
        f" CHECK (run_date <> '{TEST_LOGICAL_DATE}') NOT VALID"
    )
    try:
        result = run_dag(DAG_ID, conf={"SURVIVAL_HORIZON_DAYS": 10}, env={"LA_TASK_RETRIES": "0"})
    finally:
        db.execute("ALTER TABLE survival_fit_meta DROP CONSTRAINT reject_test_run")
    assert not result.succeeded
    assert "reject_test_run" in result.output
    assert {name: fetch_all(db, query) for name, query in tables.items()} == before
