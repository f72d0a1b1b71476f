"""Pure parts of the cluster_segments pipeline: selection, request, id matching, profiles, rows."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from learning_analytics.paths import SQL_DIR
from learning_analytics.pipeline import RunContext
from learning_analytics.pipelines.cluster import (
    FEATURE_NAMES,
    PROFILE_WORDS,
    STUDENT_COLUMNS,
    FeaturesNotReadyError,
    PreviousRun,
    check_k_settings,
    fit_payload,
    min_active_weeks,
    run_meta_row,
    segment_tables,
    select_students,
)
from learning_analytics.segments import AVERAGE_PROFILE, SegmentMatch, match_segments, segment_profile, standardise
from learning_analytics.settings import ClusterSettings
from learning_analytics.windows import weekly_window


def centres(rows: dict[int, list[float]], columns: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))


def feature_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """``student_features.sql``-shaped rows: varied features, 12 active weeks each."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in FEATURE_NAMES})
    frame.insert(0, "user_id", np.arange(1, n + 1))
    frame.insert(1, "active_weeks", 12)
    frame.insert(2, "n_attempts", 100)
    return frame


# -- who is clustered ------------------------------------------------------------------


@pytest.mark.parametrize(("lookback", "expected"), [(2, 3), (5, 3), (6, 3), (7, 4), (12, 6), (13, 7), (52, 26)])
def test_min_active_weeks_is_half_the_window_with_a_floor(lookback: int, expected: int) -> None:
    assert min_active_weeks(lookback) == expected


def test_select_students_drops_inactive_students_and_incomplete_rows() -> None:
    rows = feature_rows(6)
    rows.loc[0, "active_weeks"] = 5
    rows.loc[1, "topic_breadth"] = np.nan  # no features_topic_daily rows for this student
    selection = select_students(rows, min_weeks=6)
    assert selection.frame["user_id"].tolist() == [3, 4, 5, 6]
    assert list(selection.frame.columns) == ["user_id", *FEATURE_NAMES]
    assert (selection.n_active, selection.n_too_few_weeks, selection.n_missing_features) == (6, 1, 1)
    assert not selection.frame.isna().any().any()
    assert selection.summary()["n_students"] == 4


def test_select_students_drops_a_feature_with_one_value() -> None:
    rows = feature_rows(5)
    rows["weekend_share"] = 0.0
    selection = select_students(rows, min_weeks=3)
    assert selection.constant_features == ["weekend_share"]
    assert "weekend_share" not in selection.features
    assert list(selection.frame.columns) == ["user_id", *selection.features]


def test_select_students_fails_when_the_feature_builder_has_not_run() -> None:
    rows = feature_rows(4)
    rows["topic_breadth"] = np.nan
    with pytest.raises(FeaturesNotReadyError, match="build_features_topic_daily"):
        select_students(rows, min_weeks=3)


def test_select_students_with_nobody_active_enough_is_empty() -> None:
    rows = feature_rows(3)
    rows["active_weeks"] = 2
    selection = select_students(rows, min_weeks=6)
    assert selection.frame.empty and selection.n_too_few_weeks == 3


# -- request ---------------------------------------------------------------------------


def test_fit_payload_is_column_oriented_with_automatic_k() -> None:
    students = pd.DataFrame({"user_id": [11, 12, 13], "accuracy_mean": [0.5, 0.6, 0.7], "topic_breadth": [3, 4, 5]})
    payload = fit_payload(students, ["accuracy_mean", "topic_breadth"], ClusterSettings.from_params({}, {}))
    assert payload == {
        "data": {"user_id": [11, 12, 13], "accuracy_mean": [0.5, 0.6, 0.7], "topic_breadth": [3.0, 4.0, 5.0]},
        "features": ["accuracy_mean", "topic_breadth"],
        "method": "kmeans",
        "n_clusters": None,
        "k_range": [2, 8],
        "seed": 1,
    }


def test_fit_payload_carries_fixed_k_method_range_and_seed() -> None:
    settings = ClusterSettings.from_params(
        {"CLUSTER_N_CLUSTERS": "5", "CLUSTER_METHOD": "pam", "CLUSTER_K_MIN": 3, "CLUSTER_K_MAX": 6, "CLUSTER_SEED": 9},
        {},
    )
    payload = fit_payload(pd.DataFrame({"user_id": [1], "x": [1.0], "extra": [0]}), ["x"], settings)
    assert (payload["n_clusters"], payload["method"], payload["k_range"], payload["seed"]) == (5, "pam", [3, 6], 9)
    assert set(payload["data"]) == {"user_id", "x"}


def test_contradicting_k_settings_fail_early() -> None:
    with pytest.raises(ValueError, match="CLUSTER_K_MIN"):
        check_k_settings(ClusterSettings.from_params({"CLUSTER_K_MIN": 6, "CLUSTER_K_MAX": 4}, {}))


def test_standardise_uses_the_fit_scaling_and_common_features() -> None:
    scaling = {"center": {"a": 1.0, "b": 10.0, "c": 0.0}, "scale": {"a": 2.0, "b": 5.0, "c": 1.0}}
    z = standardise(centres({1: [3.0, 0.0]}), scaling)
    assert list(z.columns) == ["a", "b"]
    assert z.loc[1].tolist() == [1.0, -2.0]


# -- stable ids ------------------------------------------------------------------------


def test_first_run_keeps_the_fit_numbering() -> None:
    matches = match_segments(centres({1: [0, 0], 2: [5, 5], 3: [9, 0]}), pd.DataFrame())
    assert matches == [SegmentMatch(1, 1, None), SegmentMatch(2, 2, None), SegmentMatch(3, 3, None)]


def test_segments_take_the_id_of_the_nearest_previous_centre() -> None:
    previous = centres({7: [0.0, 0.0], 3: [5.0, 5.0], 9: [10.0, 0.0]})
    new = centres({1: [9.8, 0.1], 2: [0.1, -0.1], 3: [5.2, 4.9]})
    matches = match_segments(new, previous)
    assert [(m.fit_segment, m.segment) for m in matches] == [(1, 9), (2, 7), (3, 3)]
    assert all(m.previous_distance is not None and m.previous_distance < 0.5 for m in matches)
    assert matches[0].previous_distance == pytest.approx(np.hypot(0.2, 0.1))


def test_matching_minimises_the_total_distance_not_each_nearest() -> None:
    # Greedy nearest-first would give new 1 (at 1.1) the id of previous 20 (at 2, distance
    # 0.9) and leave new 2 (at 3) with previous 10 (distance 3): total 3.9. The optimum
    # pairs 1 with 10 (1.1) and 2 with 20 (1.0): total 2.1.
    previous = centres({10: [0.0], 20: [2.0]}, columns=("a",))
    new = centres({1: [1.1], 2: [3.0]}, columns=("a",))
    assert [m.segment for m in match_segments(new, previous)] == [10, 20]


def test_a_new_segment_gets_the_smallest_id_the_previous_run_did_not_use() -> None:
    previous = centres({2: [0.0, 0.0], 5: [5.0, 5.0]})
    new = centres({1: [5.1, 5.0], 2: [0.0, 0.2], 3: [20.0, 20.0], 4: [-20.0, 20.0]})
    matches = match_segments(new, previous)
    assert [m.segment for m in matches] == [5, 2, 1, 3]
    assert [m.previous_distance is None for m in matches] == [False, False, True, True]


def test_when_k_shrinks_the_closest_previous_ids_survive() -> None:
    previous = centres({1: [0.0, 0.0], 2: [5.0, 5.0], 3: [10.0, 0.0], 4: [0.0, 10.0]})
    new = centres({1: [9.0, 0.5], 2: [0.2, 9.5]})
    assert [m.segment for m in match_segments(new, previous)] == [3, 4]


# -- profiles --------------------------------------------------------------------------


def test_profile_names_the_most_distinctive_features_first() -> None:
    profile = segment_profile({"accuracy_mean": 1.2, "active_days_per_week": -1.5, "topic_breadth": 0.2}, PROFILE_WORDS)
    assert profile == "infrequent study, high accuracy"


def test_profile_keeps_at_most_three_terms() -> None:
    z = {"accuracy_mean": -2.0, "weekend_share": 1.9, "seconds_per_question": -1.8, "topic_breadth": 1.7}
    assert segment_profile(z, PROFILE_WORDS) == "low accuracy, weekend-heavy, quick answers"


def test_profile_of_an_average_centre() -> None:
    assert segment_profile({"accuracy_mean": 0.49, "i_t_mean": -0.3}, PROFILE_WORDS) == AVERAGE_PROFILE


# -- rows written ----------------------------------------------------------------------


def fit_answer() -> dict:
    """A ``/cluster/fit`` answer on features a and b: 3 segments numbered by size."""
    return {
        "model_id": "cluster-test",
        "k": 3,
        "method": "kmeans",
        "silhouette": 0.61,
        "silhouette_sample_size": 6,
        "centers": [
            {"segment": 1, "accuracy_mean": 0.8, "topic_breadth": 4.0},
            {"segment": 2, "accuracy_mean": 0.5, "topic_breadth": 9.0},
            {"segment": 3, "accuracy_mean": 0.4, "topic_breadth": 2.0},
        ],
        "scaling": {
            "center": {"accuracy_mean": 0.6, "topic_breadth": 5.0},
            "scale": {"accuracy_mean": 0.1, "topic_breadth": 2.0},
        },
        "assignments": {
            "user_id": [101, 102, 103, 104, 105, 106],
            "segment": [1, 1, 1, 2, 2, 3],
            "distance": [0.1, 0.2, 0.3, 0.4, 0.5, 0.0],
        },
        "sizes": [3, 2, 1],
        "k_selection": {"k": [2, 3], "silhouette": [0.5, 0.61]},
    }


def test_segment_tables_renumber_to_the_previous_run() -> None:
    window = weekly_window(date(2026, 11, 23), 12)
    previous = PreviousRun(
        run_date=date(2026, 11, 9),
        centres=centres({4: [0.79, 4.2], 6: [0.52, 8.7]}, columns=("accuracy_mean", "topic_breadth")),
    )
    tables = segment_tables(fit_answer(), ["accuracy_mean", "topic_breadth"], previous, window, {"CLUSTER_SEED": 1})

    assert tables.user_segment.columns.tolist() == ["run_date", "user_id", "segment", "distance"]
    assert tables.user_segment["segment"].tolist() == [4, 4, 4, 6, 6, 1]
    assert (tables.user_segment["run_date"] == window.run_date).all()

    meta = tables.segment_meta.set_index("segment")
    assert meta.index.tolist() == [1, 4, 6]
    assert meta["size"].to_dict() == {1: 1, 4: 3, 6: 2}
    assert meta["fit_segment"].to_dict() == {1: 3, 4: 1, 6: 2}
    assert meta.loc[4, "center"] == {"accuracy_mean": 0.8, "topic_breadth": 4.0}
    assert meta.loc[4, "center_z"] == pytest.approx({"accuracy_mean": 2.0, "topic_breadth": -0.5})
    assert meta.loc[4, "profile"] == "high accuracy, narrow topic mix"
    assert meta.loc[6, "profile"] == "broad topic mix, low accuracy"
    assert meta.loc[4, "previous_run_date"] == date(2026, 11, 9) and meta.loc[4, "previous_distance"] > 0
    assert meta.loc[1, "previous_run_date"] is None and pd.isna(meta.loc[1, "previous_distance"])
    assert (meta["k"] == 3).all() and (meta["n_users"] == 6).all() and (meta["model_id"] == "cluster-test").all()
    assert meta.loc[1, "window_start"] == window.start and meta.loc[1, "window_end"] == window.end
    assert meta.loc[1, "k_selection"] == {"k": [2, 3], "silhouette": [0.5, 0.61]}


def test_segment_tables_without_a_previous_run_keep_the_fit_ids() -> None:
    tables = segment_tables(
        fit_answer(), ["accuracy_mean", "topic_breadth"], None, weekly_window(date(2026, 11, 23), 12), {}
    )
    assert tables.user_segment["segment"].tolist() == [1, 1, 1, 2, 2, 3]
    assert tables.segment_meta["previous_distance"].isna().all()


def test_previous_run_survives_the_trip_through_xcom() -> None:
    rows = pd.DataFrame(
        {
            "run_date": [date(2026, 11, 9)] * 2,
            "segment": [3, 7],
            "center": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}],
        }
    )
    previous = PreviousRun.from_rows(rows)
    assert previous is not None
    restored = PreviousRun.from_json(previous.to_json())
    assert restored is not None and restored.run_date == date(2026, 11, 9)
    pd.testing.assert_frame_equal(restored.centres, previous.centres)
    assert PreviousRun.from_rows(rows.iloc[:0]) is None and PreviousRun.from_json(None) is None


def test_run_meta_row_records_a_skipped_run_and_a_fitted_one() -> None:
    """Every run leaves one cluster_run_meta row: a skipped one its reason, a fit its k."""
    run = RunContext(
        window=weekly_window(date(2026, 11, 23), 12),
        settings=ClusterSettings.from_params({}),
        dag_id="cluster_segments",
        run_id="test",
    )
    summary = {"n_students": 5, "features": ["accuracy_mean"], "min_active_weeks": 6, "previous_run": {"x": 1}}
    skipped = run_meta_row(None, {"skip_reason": "5 students", "summary": summary}, run)
    assert skipped["status"] == "skipped" and skipped["message"] == "5 students" and skipped["n_users"] == 0
    assert "previous_run" not in skipped["sizes"] and '"n_students": 5' in skipped["sizes"]
    fitted = run_meta_row(fit_answer(), {"skip_reason": None, "summary": summary}, run)
    assert fitted["status"] == "ok" and fitted["message"] is None
    assert (fitted["k"], fitted["n_users"], fitted["model_id"]) == (3, 6, "cluster-test")


def test_the_features_are_the_columns_of_the_sql_each_with_its_words() -> None:
    """The SQL's output columns are the feature list; every one has a meaning and profile
    words in FEATURES, in the same order (a column added on one side only fails here)."""
    text = (SQL_DIR / "cluster" / "student_features.sql").read_text()
    final_select = text[text.rindex("\nSELECT ") : text.rindex("\nFROM ")]
    columns = [re.split(r"[.\s]", item.strip())[-1] for item in final_select.removeprefix("\nSELECT ").split(",\n")]
    assert tuple(columns) == (*STUDENT_COLUMNS, *FEATURE_NAMES)
