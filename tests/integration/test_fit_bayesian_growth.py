"""fit_bayesian_growth end to end: real warehouse, real r-brms-plumber, `airflow dags test`.

One synthetic population (120 students, 8-week window), both families, both fit modes:
the two-stage fit (the default) is validated against the full brms fit of the same
students, and both are checked against the generator's true slopes, each check next to
a deliberately wrong model that must fail it (issue 18).
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, fetch_all, table_snapshot
from learning_analytics.kpi import build_weekly_kpi
from learning_analytics.r_service import RServiceHook, RServiceRequestError
from learning_analytics.settings import KpiSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import weekly_window

LOOKBACK_WEEKS = 8
N_STUDENTS = 120
#: Stage 1 on the whole population (the default BRMS_STAGE1_STUDENTS=600 is larger: the
#: validation against the full fit, as the issue asks), and, for the gaussian family, a
#: third run on a stratified sample of 70 of the ~90 students with data (the sampling path).
STAGE1_SAMPLE = 70
#: The defaults (BRMS_ITER=1000, BRMS_MAX_ITER=5000): a fit short of the ESS bar is
#: sampled once more, longer (the service's answer says how many iterations it took).
CONF = {"LOOKBACK_WEEKS": LOOKBACK_WEEKS, "METRICS_USE_BAYESIAN": True}
GROWTH_TABLES = ("growth_brms_meta", "growth_brms_user", "weekly_kpi")
USER_COLUMNS = "user_id, slope, slope_lower, slope_upper, p_goal, p_null_reason, target_week_start"


def user_rows(db: psycopg.Connection, run_date: date = TEST_LOGICAL_DATE) -> dict[int, tuple]:
    rows = fetch_all(db, f"SELECT {USER_COLUMNS} FROM growth_brms_user WHERE run_date = %s", (run_date,))
    return {row[0]: row[1:] for row in rows}


@pytest.fixture(scope="module")
def fitted(load_synthetic, run_dag, warehouse_uri) -> dict:
    """120 synthetic students, weekly KPI built; per family a full and a two-stage run
    of the same date, and a gaussian two-stage run on a stage-1 sample."""
    world = load_synthetic(n_students=N_STUDENTS, n_weeks=16, seed=7)
    kpi = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 16}, {})
    build_weekly_kpi(Warehouse(), weekly_window(TEST_LOGICAL_DATE, 16), kpi)
    runs: dict = {}
    plan = [
        (("binomial", "full"), {"BRMS_FAMILY": "binomial", "BRMS_FIT_MODE": "full"}),
        (("binomial", "two_stage"), {"BRMS_FAMILY": "binomial"}),
        (("gaussian", "full"), {"BRMS_FIT_MODE": "full"}),
        (("gaussian", "two_stage"), {}),
        # Last, so that its rows stay for the tests that read the warehouse.
        (("gaussian", "sampled"), {"BRMS_STAGE1_STUDENTS": STAGE1_SAMPLE, "BRMS_STAGE2_DRAWS": 300}),
    ]
    with psycopg.connect(warehouse_uri, autocommit=True) as db:
        for name, overrides in plan:
            result = run_dag("fit_bayesian_growth", conf={**CONF, "BRMS_SHARD_SIZE": 1000, **overrides})
            assert result.succeeded, result.output[-5000:]
            (meta,) = fetch_all(
                db,
                "SELECT status, message, converged, rhat_max, ess_bulk_min, divergences, stage1, n_users "
                "FROM growth_brms_meta WHERE run_date = %s",
                (TEST_LOGICAL_DATE,),
            )
            runs[name] = {"output": result.output, "meta": meta, "users": user_rows(db)}
    return {"world": world, "run_dag": run_dag, "runs": runs}


def true_slopes(db: psycopg.Connection) -> dict[int, float]:
    """Each student's true accuracy slope over the fitted window.

    The generator's expected accuracy is clip(base + slope * week, 0.05, 0.97); a fast
    learner reaching the 0.97 ceiling inside the window really does gain less, so the
    truth to recover is the least-squares slope of the clipped curve over the window.
    """
    (start_date,) = fetch_all(db, "SELECT start_date FROM synthetic_run")[0]
    window = weekly_window(TEST_LOGICAL_DATE, LOOKBACK_WEEKS)
    weeks = np.array([(window.start + timedelta(weeks=w) - start_date).days // 7 for w in range(LOOKBACK_WEEKS)])
    truth = fetch_all(db, "SELECT user_id, base_accuracy, weekly_slope FROM synthetic_truth_student")
    return {
        user_id: float(np.polyfit(weeks, np.clip(base + slope * weeks, 0.05, 0.97), 1)[0])
        for user_id, base, slope in truth
    }


@pytest.mark.parametrize(
    ("family", "mode"),
    [
        ("gaussian", "full"),
        ("gaussian", "two_stage"),
        ("gaussian", "sampled"),
        ("binomial", "full"),
        ("binomial", "two_stage"),
    ],
)
def test_run_converged_with_one_meaning(fitted: dict, family: str, mode: str) -> None:
    """The meta row's `converged` is the service's answer on the judged fit (stage 1, or
    the full fit) under the issue's thresholds, and the log line says the same."""
    status, message, converged, rhat_max, ess_bulk_min, divergences, stage1, n_users = fitted["runs"][family, mode][
        "meta"
    ]
    assert (status, message, converged) == ("ok", None, True), (rhat_max, ess_bulk_min, divergences, message)
    assert rhat_max <= 1.01 and ess_bulk_min >= 400 and divergences == 0
    if mode != "full":
        assert stage1["diagnostics"]["converged"] is True
        assert stage1["n_population"] == n_users > 80
    assert "NOT CONVERGED" not in fitted["runs"][family, mode]["output"]


def test_stage1_sample_larger_than_population_uses_everyone_and_logs_it(fitted: dict) -> None:
    run = fitted["runs"]["binomial", "two_stage"]
    stage1 = run["meta"][6]
    assert stage1["n_users"] == stage1["n_population"]
    assert (
        f"BRMS_STAGE1_STUDENTS=600 >= {stage1['n_population']} students: fitting the whole population" in run["output"]
    )
    sampled = fitted["runs"]["gaussian", "sampled"]
    assert sampled["meta"][6]["n_users"] == STAGE1_SAMPLE < sampled["meta"][6]["n_population"]
    assert "fitting the whole population" not in sampled["output"]


def compare(full: dict[int, tuple], two_stage: dict[int, tuple], truth: dict[int, float]) -> dict[str, float]:
    users = sorted(set(full) & set(two_stage))
    slope_full = np.array([full[u][0] for u in users])
    slope_two = np.array([two_stage[u][0] for u in users])
    p_pairs = np.array([(full[u][3], two_stage[u][3]) for u in users if None not in (full[u][3], two_stage[u][3])])
    true = np.array([truth[u] for u in users])

    def coverage(rows: dict[int, tuple]) -> float:
        return float(np.mean([rows[u][1] <= truth[u] <= rows[u][2] for u in users]))

    return {
        "n": len(users),
        "r": float(np.corrcoef(slope_full, slope_two)[0, 1]),
        "p_diff": float(np.mean(np.abs(p_pairs[:, 0] - p_pairs[:, 1]))),
        "coverage_full": coverage(full),
        "coverage_two_stage": coverage(two_stage),
        "true_sd": float(true.std()),
    }


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_two_stage_matches_the_full_brms_fit(fitted: dict, db: psycopg.Connection, family: str) -> None:
    """Issue 11's bars: per-student slope means r >= 0.99, mean |P difference| <= 0.03,
    coverage of the true slopes within 3 points of the full fit's.

    Why these can be met and why they mean something: given the population parameters,
    a student's posterior depends only on their own data, so the two stages differ from
    the full fit only by (a) Monte Carlo error (400 population draws: SE of a posterior
    mean ~ posterior sd / 20, far below the spread of slopes across students, hence r
    ~0.999) and (b) the stage-1 population posterior coming from a sample (here stage 1
    sees every student, as at the default sample size for populations below 600; a
    70-student sample moves individual intervals by its own sampling error, and is
    judged against the truth in the recovery test). Negative control: the same comparison with the
    two-stage slopes shuffled across students, or with P from another student, fails.
    """
    runs, truth = fitted["runs"], true_slopes(db)
    result = compare(runs[family, "full"]["users"], runs[family, "two_stage"]["users"], truth)
    assert result["n"] > 80
    assert result["r"] >= 0.99, result
    assert result["p_diff"] <= 0.03, result
    assert abs(result["coverage_two_stage"] - result["coverage_full"]) <= 0.03, result

    two_stage = runs[family, "two_stage"]["users"]
    users = sorted(two_stage)
    rng = np.random.default_rng(1)
    shuffled = dict(zip(users, [two_stage[u] for u in rng.permutation(users)], strict=True))
    wrong = compare(runs[family, "full"]["users"], shuffled, truth)
    assert wrong["r"] < 0.99 and wrong["p_diff"] > 0.03, wrong


def recovery(estimates: dict[int, tuple], truth: dict[int, float]) -> dict[str, float]:
    users = sorted(estimates)
    estimated = np.array([estimates[u][0] for u in users])
    true = np.array([truth[u] for u in users])
    width = np.array([estimates[u][2] - estimates[u][1] for u in users])
    coverage = np.mean([estimates[u][1] <= truth[u] <= estimates[u][2] for u in users])
    # Regression of the truth on the posterior mean: E[true | estimate] = estimate for a
    # calibrated posterior, so the coefficient is 1 (the regression the other way round
    # equals the reliability, < 1 by design of shrinkage).
    calibration_slope = float(np.polyfit(estimated, true, 1)[0])
    return {
        "calibration_slope": calibration_slope,
        "coverage": float(coverage),
        "width_ratio": float(width.mean() / (2 * 1.96 * true.std())),
    }


def assert_recovers(result: dict[str, float]) -> None:
    """Bars from theory: the calibration slope is 1 up to its sampling error (with ~100
    students and reliability ~0.6 its SE is ~0.1: 0.7-1.3 is 3 SE); 95% intervals cover
    85-100% of true slopes (binomial SE of coverage ~0.02, plus the generator's clip);
    the mean interval width is at most 90% of a prior-only interval (4 population sds):
    the data must narrow it."""
    assert 0.7 <= result["calibration_slope"] <= 1.3, result
    assert 0.85 <= result["coverage"] <= 1.0, result
    assert result["width_ratio"] <= 0.9, result


# Not the 70-student sample: with 8 weeks per student it estimates the slope sd with
# ~25% error (0.0059 and 0.0068 at two seeds vs 0.0085 from everyone, truth 0.0083), and
# a too-small sd shrinks every slope too far (calibration slope 1.3-1.5): the reason the
# default stage-1 sample is 600 students (docs/metrics.md).
@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_two_stage_recovers_true_slopes_on_scale(fitted: dict, db: psycopg.Connection, family: str) -> None:
    truth = true_slopes(db)
    estimates = fitted["runs"][family, "two_stage"]["users"]
    assert_recovers(recovery(estimates, truth))

    # Negative controls: slopes shrunk 60% toward their mean (intervals shrunk too),
    # slopes rescaled x2, and shuffled ids must each fail.
    mean = np.mean([row[0] for row in estimates.values()])

    def transformed(scale: float) -> dict[int, tuple]:
        return {
            u: (mean + scale * (s - mean), mean + scale * (lo - mean), mean + scale * (hi - mean), *rest)
            for u, (s, lo, hi, *rest) in estimates.items()
        }

    users = sorted(estimates)
    shuffled = dict(zip(users, [estimates[u] for u in np.random.default_rng(2).permutation(users)], strict=True))
    for wrong in (transformed(0.4), transformed(2.0), shuffled):
        with pytest.raises(AssertionError):
            assert_recovers(recovery(wrong, truth))


def test_no_p_for_inactive_students_and_weeks_without_attempts(fitted: dict, db: psycopg.Connection) -> None:
    """Both paths: NULL P with a reason, never a number, for students without an attempt
    in the 14 days before the week's end and for weeks without attempts."""
    last_week = TEST_LOGICAL_DATE - timedelta(days=7)
    growth = fetch_all(
        db,
        "SELECT g.p_goal, g.p_null_reason, max(a.attempt_date) "
        "FROM growth_brms_user AS g JOIN attempt AS a USING (user_id) "
        "WHERE g.run_date = %s AND a.attempt_date < %s GROUP BY 1, 2, g.user_id",
        (TEST_LOGICAL_DATE, TEST_LOGICAL_DATE),
    )
    inactive = [(p, reason) for p, reason, last in growth if last < TEST_LOGICAL_DATE - timedelta(days=14)]
    assert inactive, "the synthetic population should have students who stopped"
    assert all(p is None and reason == "inactive_14_days" for p, reason in inactive)
    active = [(p, reason) for p, reason, last in growth if last >= last_week]
    assert all(p is not None and reason is None for p, reason in active)

    kpi = fetch_all(
        db,
        "SELECT n_attempts, p, p_null_reason, p_target_week FROM weekly_kpi WHERE week_start >= %s",
        (TEST_LOGICAL_DATE - timedelta(weeks=8),),
    )
    empty = [row for row in kpi if row[0] == 0]
    assert empty and all(
        p is None and reason in ("inactive_14_days", "no_attempts_in_week") for _, p, reason, _ in empty
    )
    with_p = [row for row in kpi if row[1] is not None]
    assert with_p and all(0 <= p <= 1 and target is not None and reason is None for _, p, reason, target in with_p)


def test_bayesian_p_written_to_the_last_week_with_its_target_week(fitted: dict, db: psycopg.Connection) -> None:
    last_week = TEST_LOGICAL_DATE - timedelta(days=7)
    rows = fetch_all(
        db,
        "SELECT k.p, g.p_goal, k.p_target_week, g.target_week_start FROM weekly_kpi AS k "
        "JOIN growth_brms_user AS g USING (user_id) "
        "WHERE k.week_start = %s AND g.run_date = %s AND k.p_source = 'brms'",
        (last_week, TEST_LOGICAL_DATE),
    )
    assert len(rows) > 40
    assert all(p == p_goal and 0 <= p <= 1 and target == g_target for p, p_goal, target, g_target in rows)
    # Goal probabilities must discriminate: students far below their goal get low P.
    assert min(p for p, *_ in rows) < 0.2 and max(p for p, *_ in rows) > 0.8


def test_binomial_counts_exceeding_attempts_are_a_400_naming_the_field(fitted: dict) -> None:
    body = {
        "family": "binomial",
        "data": {"user_id": [1, 1, 2, 2, 3, 3], "week": [0, 1, 0, 1, 0, 1], "n_attempts": [10] * 6,
                 "n_correct": [5, 6, 11, 4, 5, 5]},
    }  # fmt: skip
    with pytest.raises(RServiceRequestError) as raised:
        RServiceHook("r_brms").call("growth/fit", body)
    assert raised.value.status == 400
    assert "data.n_correct" in raised.value.message and "n_attempts" in raised.value.message


def test_too_little_data_skips_the_fit_with_a_clear_record(fitted: dict, db: psycopg.Connection) -> None:
    skip_date = date(2026, 11, 16)
    result = fitted["run_dag"](
        "fit_bayesian_growth", logical_date=skip_date, conf={**CONF, "BRMS_MIN_STUDENTS": 100000}
    )
    assert result.succeeded, result.output[-5000:]
    assert "skipping the fit: too little data to fit" in result.output
    ((status, message, n_shards, converged),) = fetch_all(
        db, "SELECT status, message, n_shards, converged FROM growth_brms_meta WHERE run_date = %s", (skip_date,)
    )
    assert (status, n_shards, converged) == ("skipped", 0, False)
    assert "BRMS_MIN_STUDENTS=100000" in message
    assert fetch_all(db, "SELECT count(*) FROM growth_brms_user WHERE run_date = %s", (skip_date,)) == [(0,)]


def test_stopped_service_fails_the_run_and_changes_nothing(
    fitted: dict, db: psycopg.Connection, refused_port: int
) -> None:
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": refused_port, "password": "unused"}
    before = {table: table_snapshot(db, table) for table in GROWTH_TABLES}
    result = fitted["run_dag"](
        "fit_bayesian_growth",
        conf=CONF,
        env={"AIRFLOW_CONN_R_BRMS": json.dumps(connection), "LA_TASK_RETRIES": "1", "LA_RETRY_DELAY_SECONDS": "1"},
    )
    assert not result.succeeded
    assert "Connection refused" in result.output or "ConnectionError" in result.output
    assert {table: table_snapshot(db, table) for table in GROWTH_TABLES} == before
