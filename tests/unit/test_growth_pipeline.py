"""Pure parts of the growth pipeline and the shared shard/table helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from learning_analytics.pipeline import chunk_by_key, column_table, frame_from_columns
from learning_analytics.pipelines.growth import combine_fixed_effects


def test_combination_weights_shards_by_precision() -> None:
    shards = [
        [{"term": "week", "estimate": 0.02, "est_error": 0.001}],
        [{"term": "week", "estimate": 0.03, "est_error": 0.002}],
    ]
    (week,) = combine_fixed_effects(shards)
    # weights 1/0.001^2 = 4x those of 1/0.002^2: (4 * 0.02 + 0.03) / 5
    assert week["estimate"] == pytest.approx(0.022)
    assert week["est_error"] == pytest.approx(math.sqrt(1 / (1e6 + 2.5e5)))
    assert week["lower"] < week["estimate"] < week["upper"]
    assert week["n_shards"] == 2


def test_combination_of_one_shard_is_that_shard() -> None:
    (intercept,) = combine_fixed_effects([[{"term": "Intercept", "estimate": 0.5, "est_error": 0.01}]])
    assert (intercept["estimate"], intercept["est_error"]) == (0.5, 0.01)


def test_chunks_bound_keys_keep_each_key_whole_and_are_deterministic() -> None:
    frame = pd.DataFrame({"user_id": np.repeat(np.arange(1, 11), 3), "week": np.tile([0, 1, 2], 10)})
    parts = chunk_by_key(frame, "user_id", max_keys=4)
    assert len(parts) == 3
    assert all(part["user_id"].nunique() <= 4 for part in parts)
    assert sorted(pd.concat(parts)["user_id"].tolist()) == sorted(frame["user_id"].tolist())
    owners = {user: index for index, part in enumerate(parts) for user in part["user_id"].unique()}
    assert len(owners) == 10  # no student straddles two shards
    again = chunk_by_key(frame.sample(frac=1, random_state=3), "user_id", max_keys=4)
    assert [sorted(part["user_id"].unique()) for part in again] == [sorted(part["user_id"].unique()) for part in parts]
    assert chunk_by_key(frame.iloc[0:0], "user_id", 4) == []


def test_column_tables_round_trip_with_nulls_and_dates() -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "y": [0.5, np.nan], "ds": pd.to_datetime(["2026-11-02", "2026-11-09"])})
    table = column_table(frame)
    assert table == {"user_id": [1, 2], "y": [0.5, None], "ds": ["2026-11-02", "2026-11-09"]}
    assert frame_from_columns({"user_id": 7, "p_goal": 0.4}).to_dict("records") == [{"user_id": 7, "p_goal": 0.4}]
