"""The one missing-value rule, and that the request and warehouse paths both follow it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from learning_analytics.pipeline import column_table
from learning_analytics.values import none_if_missing
from learning_analytics.warehouse import frame_records


@pytest.mark.parametrize("missing", [None, float("nan"), np.float64("nan"), pd.NaT, pd.NA])
def test_every_kind_of_missing_value_becomes_none(missing: object) -> None:
    assert none_if_missing(missing) is None


@pytest.mark.parametrize("value", [0, 0.0, "", False, "nan", date(2026, 1, 5), {"a": None}])
def test_present_values_pass_unchanged(value: object) -> None:
    assert none_if_missing(value) is value


def test_service_requests_and_warehouse_rows_agree_on_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.5, np.nan],
            "n": pd.array([1, pd.NA], dtype="Int64"),
            "day": [date(2026, 1, 5), None],
            "label": ["a", None],
        }
    )
    assert column_table(frame) == {"x": [1.5, None], "n": [1, None], "day": ["2026-01-05", None], "label": ["a", None]}
    assert list(frame_records(frame)) == [(1.5, 1, date(2026, 1, 5), "a"), (None, None, None, None)]
