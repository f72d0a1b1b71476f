"""The one rule for missing values leaving pandas: NaN, NaT, ``pd.NA`` and ``None`` become
``None`` (JSON ``null`` for the R services, SQL ``NULL`` for the warehouse).

Used by :func:`learning_analytics.pipeline.column_table` (service requests),
:func:`learning_analytics.warehouse.frame_records` (COPY into the warehouse, also for the
synthetic loader) and the pipelines' JSON columns, so a missing value means the same on
every path.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def none_if_missing(value: Any) -> Any:
    """``value``, or ``None`` when it is a missing value (None, NaN, NaT, pd.NA)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
