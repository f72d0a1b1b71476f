"""cluster_segments end to end: real warehouse, real r-cluster-plumber, `airflow dags test`.

One scenario (module fixture) on 300 synthetic students over 16 weeks:

1. run A for 2026-11-09 (window: the 12 weeks before 2026-11-09);
2. A's segment ids are renumbered in the warehouse to 7, 3, 9, 5 (as an earlier history
   could have left them), so that keeping the service's numbering 1..k cannot pass;
3. run B for 2026-11-23, two weeks later (the window moved by two weeks: slightly
   different data), then B again (a rerun of the same date).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import numpy as np
import psycopg
import pytest
from sklearn.metrics import adjusted_rand_score

from la_testing import PLATFORM_TIMEZONE, TEST_LOGICAL_DATE, fetch_all, table_snapshot
from learning_analytics import synthetic
from learning_analytics.kpi import build_features_topic_daily, build_weekly_kpi, features_window, kpi_window
from learning_analytics.pipelines.cluster import min_active_weeks
from learning_analytics.settings import ClusterSettings, FeaturesSettings, KpiSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import weekly_window

DAG_ID = "cluster_segments"
RUN_A = date(2026, 11, 9)
RUN_B = TEST_LOGICAL_DATE
#: A's ids after renumbering (service segment -> id): none of them is in 1..4.
RENUMBERING = {1: 7, 2: 3, 3: 9, 4: 5}
N_STUDENTS = 300
#: The generator's four segments (synthetic.SEGMENTS).
TRUE_K = len(synthetic.SEGMENTS)
#: Adjusted Rand index the found segments must reach against the true ones. Measured
#: 0.96-0.99 over data seeds 7, 42, 123, 2024 and both run dates (0.987 / 0.986 for
#: seed 42). The true segments overlap: each student's habits are drawn around the
#: segment's medians (log-normal SD 0.15-0.20, accuracy SD 0.05) and accuracy trends
#: from ~10 noisy weeks are imprecise, so a few students sit nearer another segment's
#: centre. 0.90 (about 3-4 % of students placed apart from their segment) leaves room
#: for that while failing a merge of two true segments (ARI 0.67-0.77 with these
#: shares) or a split of the largest one (0.87); splitting a small segment is caught by
#: the check that k equals the true number of segments.
MIN_ADJUSTED_RAND = 0.90


@pytest.fixture(scope="module")
def scenario(warehouse_uri: str, run_dag: Any) -> dict[str, Any]:
    data = synthetic.generate(
        n_students=N_STUDENTS, n_weeks=16, seed=42, end_date=TEST_LOGICAL_DATE, timezone=PLATFORM_TIMEZONE
    )
    synthetic.load(warehouse_uri, data)
    warehouse = Warehouse()
    build_features_topic_daily(
        warehouse, features_window(TEST_LOGICAL_DATE, FeaturesSettings.from_params({"FEATURES_LOOKBACK_DAYS": 112}, {}))
    )
    kpi = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 16}, {})
    build_weekly_kpi(warehouse, kpi_window(TEST_LOGICAL_DATE, kpi), kpi)
    with psycopg.connect(warehouse_uri, autocommit=True) as conn:
        # The scenario controls which earlier run B is matched to.
        conn.execute("DELETE FROM user_segment")
        conn.execute("DELETE FROM segment_meta")

        run_a = run_dag(DAG_ID, logical_date=RUN_A)
        assert run_a.succeeded, run_a.output[-5000:]
        a_service_ids = dict(fetch_all(conn, "SELECT user_id, segment FROM user_segment WHERE run_date = %s", (RUN_A,)))
        # Through negative ids: the primary key is checked row by row.
        case = "CASE segment " + " ".join(f"WHEN {-old} THEN {new}" for old, new in RENUMBERING.items()) + " END"
        for table in ("user_segment", "segment_meta"):
            conn.execute(f"UPDATE {table} SET segment = -segment WHERE run_date = %s", (RUN_A,))
            conn.execute(f"UPDATE {table} SET segment = {case} WHERE run_date = %s", (RUN_A,))

        run_b = run_dag(DAG_ID, logical_date=RUN_B)
        assert run_b.succeeded, run_b.output[-5000:]
        first_b = {table: table_snapshot(conn, table) for table in ("user_segment", "segment_meta")}
        first_b_meta = meta_without_run_identity(conn, RUN_B)

        rerun_b = run_dag(DAG_ID, logical_date=RUN_B)
        assert rerun_b.succeeded, rerun_b.output[-5000:]
    truth = dict(zip(data.truth_student["user_id"].tolist(), data.truth_student["segment"].tolist(), strict=True))
    return {"truth": truth, "a_service_ids": a_service_ids, "first_b": first_b, "first_b_meta": first_b_meta}


def meta_without_run_identity(conn: psycopg.Connection, run_date: date) -> list[tuple]:
    """``segment_meta`` of a run without what differs between two fits of the same data
    (``model_id`` names the fit, ``created_at`` its time)."""
    return fetch_all(
        conn,
        "SELECT segment, size, center, profile, k, method, silhouette, settings, window_start, window_end, "
        "n_users, center_z, scaling, fit_segment, previous_run_date, previous_distance, k_selection "
        "FROM segment_meta WHERE run_date = %s ORDER BY segment",
        (run_date,),
    )


def segments_of(conn: psycopg.Connection, run_date: date) -> dict[int, int]:
    return dict(fetch_all(conn, "SELECT user_id, segment FROM user_segment WHERE run_date = %s", (run_date,)))


def majority_truth(found: dict[int, int], truth: dict[int, int]) -> dict[int, int]:
    """Found segment id -> the true segment most of its students belong to."""
    by_segment: dict[int, Counter] = {}
    for user_id, segment in found.items():
        by_segment.setdefault(segment, Counter())[truth[user_id]] += 1
    return {segment: counts.most_common(1)[0][0] for segment, counts in by_segment.items()}


def test_rerun_of_the_same_date_replaces_its_rows(scenario: dict, db: psycopg.Connection) -> None:
    counts = fetch_all(
        db,
        "SELECT (SELECT count(*) FROM user_segment WHERE run_date = %(d)s), "
        "(SELECT count(DISTINCT user_id) FROM user_segment WHERE run_date = %(d)s), "
        "(SELECT count(*) FROM segment_meta WHERE run_date = %(d)s)",
        {"d": RUN_B},
    )[0]
    assert counts[0] == counts[1] > 0 and counts[2] == TRUE_K
    # Same data, same seed, same earlier run: identical rows, ids included.
    assert table_snapshot(db, "user_segment") == scenario["first_b"]["user_segment"]
    assert meta_without_run_identity(db, RUN_B) == scenario["first_b_meta"]
    assert fetch_all(db, "SELECT DISTINCT run_date FROM segment_meta ORDER BY 1") == [(RUN_A,), (RUN_B,)]


def test_clustered_students_are_those_active_in_half_the_window(scenario: dict, db: psycopg.Connection) -> None:
    window = weekly_window(RUN_B, ClusterSettings.from_params({}, {}).lookback_weeks)
    eligible = {
        user_id
        for (user_id,) in fetch_all(
            db,
            "SELECT user_id FROM weekly_kpi WHERE week_start >= %s AND week_start < %s AND n_attempts > 0 "
            "GROUP BY user_id HAVING count(*) >= %s",
            (window.start, window.end, min_active_weeks(12)),
        )
    }
    clustered = set(segments_of(db, RUN_B))
    assert clustered == eligible
    assert 0.6 * N_STUDENTS < len(clustered) < N_STUDENTS  # churned students are left out, the rest are in


@pytest.mark.parametrize("run_date", [RUN_A, RUN_B])
def test_segments_recover_the_true_segments(scenario: dict, db: psycopg.Connection, run_date: date) -> None:
    found = segments_of(db, run_date)
    users = sorted(found)
    ari = adjusted_rand_score([scenario["truth"][u] for u in users], [found[u] for u in users])
    ((k, silhouette, k_selection),) = fetch_all(
        db, "SELECT DISTINCT k, silhouette, k_selection FROM segment_meta WHERE run_date = %s", (run_date,)
    )
    print(f"{run_date}: ARI {ari:.3f}, k {k}, silhouette {silhouette:.3f}, k_selection {k_selection}")
    assert k == TRUE_K, f"automatic k chose {k}; silhouettes {k_selection}"
    assert ari >= MIN_ADJUSTED_RAND


def test_segment_ids_follow_the_closest_previous_centres(scenario: dict, db: psycopg.Connection) -> None:
    truth = scenario["truth"]
    a_ids = segments_of(db, RUN_A)
    b_ids = segments_of(db, RUN_B)
    # A was renumbered after its run; B must have followed that numbering.
    assert {RENUMBERING[s] for s in scenario["a_service_ids"].values()} == set(a_ids.values())
    assert set(b_ids.values()) == set(RENUMBERING.values())
    # The same id means the same kind of student in both runs.
    assert majority_truth(b_ids, truth) == majority_truth(a_ids, truth)
    # And each of B's centres kept the id of the nearest of A's centres (B's standard units).
    rows = fetch_all(
        db,
        "SELECT run_date, segment, center, scaling, previous_run_date, previous_distance FROM segment_meta "
        "WHERE run_date IN (%s, %s)",
        (RUN_A, RUN_B),
    )
    a_centres = {segment: center for run_date, segment, center, *_ in rows if run_date == RUN_A}
    for run_date, segment, center, scaling, previous_run_date, previous_distance in rows:
        if run_date != RUN_B:
            continue
        features = list(scaling["center"])

        def z(point: dict[str, float], features: list[str] = features, scaling: dict = scaling) -> np.ndarray:
            return np.array([(point[f] - scaling["center"][f]) / scaling["scale"][f] for f in features])

        distances = {
            a_segment: float(np.linalg.norm(z(center) - z(a_centre))) for a_segment, a_centre in a_centres.items()
        }
        assert min(distances, key=distances.get) == segment
        assert previous_run_date == RUN_A
        assert previous_distance == pytest.approx(distances[segment])
        assert previous_distance < 1.0  # two weeks later the same segments are close by


def test_profiles_describe_the_true_segments(scenario: dict, db: psycopg.Connection) -> None:
    """The generator's steady_high segment is the most accurate, weekend_casual studies on
    weekends: their segments' profiles must say so."""
    truth_of = majority_truth(segments_of(db, RUN_B), scenario["truth"])
    profiles = dict(fetch_all(db, "SELECT segment, profile FROM segment_meta WHERE run_date = %s", (RUN_B,)))
    by_truth = {synthetic.SEGMENTS[truth_of[segment]].name: profiles[segment] for segment in profiles}
    assert "high accuracy" in by_truth["steady_high"]
    assert "weekend-heavy" in by_truth["weekend_casual"]
    assert all(profiles.values())
