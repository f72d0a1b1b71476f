"""What the Learning analytics pages read: queries in ``include/sql/ui/``, read-only.

Every query goes through :class:`~learning_analytics.warehouse.Warehouse` (the
``analytics_db`` connection) and selects only columns that exist on the model tables
since their first migration, so columns other pipelines add later cannot break a page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from learning_analytics.warehouse import Warehouse

PAGES = ("growth", "prophet", "survival", "cluster", "scoreboard")
#: Normal quantile of a two-sided 95% interval.
Z_95 = 1.959963984540054


class Reader:
    """Read-only access to the warehouse for one request."""

    def __init__(self, warehouse: Warehouse | None = None) -> None:
        self.warehouse = warehouse or Warehouse()

    def frame(self, name: str, **params: Any) -> pd.DataFrame:
        return self.warehouse.query_frame(f"ui/{name}.sql", params)

    def run_dates(self) -> dict[str, list[date]]:
        """Run dates with results per page, newest first."""
        rows = self.frame("run_dates")
        return {page: list(rows.loc[rows["page"] == page, "run_date"]) for page in PAGES}


def parse_date(text: str | None) -> date | None:
    """An ISO date from a query string, or None when absent or malformed."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None  # type: ignore[arg-type]
    except ValueError:
        return None


def jsonb(value: Any) -> Any:
    """A jsonb cell as Python (psycopg already decodes jsonb; text is decoded here)."""
    if isinstance(value, str):
        return json.loads(value)
    return value


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier survival curve with its pointwise 95% (log-log) interval."""

    label: str
    n: int
    events: int
    times: list[float]
    survival: list[float]
    lower: list[float]
    upper: list[float]


def kaplan_meier(time: Sequence[float], event: Sequence[int], label: str) -> KaplanMeier:
    """The product-limit estimate S(t) = prod_{t_i <= t} (1 - d_i / n_i).

    Greenwood's variance on the log(-log S) scale gives intervals inside [0, 1].
    The curve starts at (0, 1) and steps at every event time.
    """
    data = sorted(zip(time, event, strict=True))
    n_at_risk = len(data)
    times, surv, lower, upper = [0.0], [1.0], [1.0], [1.0]
    s, greenwood = 1.0, 0.0
    index = 0
    while index < len(data):
        t = data[index][0]
        deaths = removed = 0
        while index < len(data) and data[index][0] == t:
            deaths += int(data[index][1] == 1)
            removed += 1
            index += 1
        if deaths:
            s *= 1 - deaths / n_at_risk
            if n_at_risk > deaths:
                greenwood += deaths / (n_at_risk * (n_at_risk - deaths))
            times.append(float(t))
            surv.append(s)
            if 0 < s < 1 and greenwood > 0:
                half = Z_95 * math.sqrt(greenwood) / abs(math.log(s))
                lower.append(s ** math.exp(half))
                upper.append(s ** math.exp(-half))
            else:
                lower.append(s)
                upper.append(s)
        n_at_risk -= removed
    if data and times[-1] < data[-1][0]:
        times.append(float(data[-1][0]))
        surv.append(s)
        lower.append(lower[-1])
        upper.append(upper[-1])
    return KaplanMeier(label, len(data), sum(int(e == 1) for _, e in data), times, surv, lower, upper)


def risk_groups(frame: pd.DataFrame, n_groups: int = 3) -> list[tuple[str, pd.DataFrame]]:
    """Students split into equal-sized groups by risk score (low .. high)."""
    if len(frame) < n_groups:
        return [("all", frame)] if len(frame) else []
    names = {3: ("low risk", "medium risk", "high risk")}.get(n_groups) or tuple(
        f"group {i + 1}" for i in range(n_groups)
    )
    ranks = frame["risk_score"].rank(method="first")
    group = pd.qcut(ranks, n_groups, labels=False)
    return [(names[i], frame[group == i]) for i in range(n_groups)]
