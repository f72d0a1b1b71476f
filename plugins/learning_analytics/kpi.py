"""The metrics job: ``features_topic_daily`` and ``weekly_kpi`` from raw attempts.

All aggregation happens in SQL (``include/sql/kpi/``); these functions only compute
the window from the logical date and run the SQL in one transaction.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from learning_analytics.settings import FeaturesSettings, KpiSettings
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, require_platform_clock
from learning_analytics.windows import RunWindow, daily_window, weekly_window

log = logging.getLogger(__name__)


#: Weekly attempts at which the learning index's effort factor reaches 1: I_t = 100 x
#: accuracy x min(1, ln(1 + attempts) / ln(1 + I_T_EFFORT_SATURATION)), as
#: ``include/sql/kpi/weekly_kpi.sql`` computes it (tests/integration/test_kpi_builders.py
#: checks the two agree). More attempts than this do not raise I_t.
I_T_EFFORT_SATURATION = 200


def learning_index_effort(n_attempts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The effort factor of I_t for weeks of ``n_attempts`` attempts: in [0, 1], 1 from 200 attempts."""
    return np.minimum(1.0, np.log1p(np.asarray(n_attempts, dtype=float)) / np.log1p(I_T_EFFORT_SATURATION))


def learning_index_standard_error(n_attempts: npt.ArrayLike, n_correct: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Sampling error of each week's I_t: its accuracy is measured from that week's attempts.

    ``100 x effort x sqrt(p (1 - p) / n)`` with ``p = (correct + 0.5) / (attempts + 1)``,
    so a week answered all right (or all wrong) still has an error. At the same accuracy a
    week of 20 attempts is 1.8x as noisy as one of 200 (sqrt(10) for the accuracy, times
    the smaller effort factor). NaN for a week without attempts (its I_t is 0 by
    definition, not a measurement).
    """
    attempts = np.asarray(n_attempts, dtype=float)
    accuracy = (np.asarray(n_correct, dtype=float) + 0.5) / (attempts + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = 100.0 * learning_index_effort(attempts) * np.sqrt(accuracy * (1.0 - accuracy) / attempts)
    return np.where(attempts > 0, error, np.nan)


class KpiNotReadyError(RuntimeError):
    """``weekly_kpi`` has not (completely) been built for a week a model needs."""


def require_weekly_kpi(warehouse: Warehouse, week_end: date) -> None:
    """Fail unless ``weekly_kpi`` was built for the week ending before ``week_end``.

    Models scheduled after the weekly KPI builder call this so that a late or failed
    KPI run makes them fail (and retry) instead of fitting on a stale or partial week.

    :raises KpiNotReadyError: naming the week and what to run.
    """
    readiness = warehouse.query_frame("kpi/readiness.sql", {"week_end": week_end}).iloc[0]
    if readiness["n_rows"] == 0 or readiness["n_complete_rows"] < readiness["n_rows"]:
        raise KpiNotReadyError(
            f"weekly_kpi is not complete for the week of {week_end - timedelta(days=7)}: "
            f"{readiness['n_rows']} rows, {readiness['n_complete_rows']} of them built for {week_end} or later "
            f"(latest build: {readiness['latest_built_for']}); run build_weekly_kpi for {week_end} first"
        )


def features_window(run_date: date, settings: FeaturesSettings) -> RunWindow:
    """The days a features run rebuilds: ``FEATURES_LOOKBACK_DAYS`` days before it."""
    return daily_window(run_date, settings.lookback_days)


def kpi_window(run_date: date, settings: KpiSettings) -> RunWindow:
    """The weeks a KPI run rebuilds: ``KPI_LOOKBACK_WEEKS`` complete weeks before it."""
    return weekly_window(run_date, settings.lookback_weeks)


def build_features_topic_daily(warehouse: Warehouse, window: RunWindow) -> int:
    """Replace ``features_topic_daily`` rows of the window's days; return rows written."""
    with warehouse.transaction() as tx:
        require_platform_clock(tx.conn, window.timezone)
        written = tx.execute_file("kpi/features_topic_daily.sql", window.as_sql_params())
    log.info("features_topic_daily: %s rows for %s .. %s", written, window.start, window.end)
    return written


def weekly_kpi_p_params(window: RunWindow, settings: KpiSettings) -> dict[str, Any]:
    """Parameters of ``kpi/weekly_kpi_p.sql``."""
    return {
        **window.as_sql_params(),
        "p_history_weeks": settings.p_history_weeks,
        "goal_horizon_weeks": settings.goal_horizon_weeks,
        "metrics_use_bayesian": settings.metrics_use_bayesian,
    }


def update_weekly_kpi_p(tx: WarehouseTransaction, window: RunWindow, settings: KpiSettings) -> int:
    """Compute ``weekly_kpi.P`` of the window's weeks (``kpi/weekly_kpi_p.sql``, the one
    definition of P: the growth model's where a converged run has one and
    ``METRICS_USE_BAYESIAN`` is on, else the simple estimate); return the rows updated.
    """
    return tx.execute_file("kpi/weekly_kpi_p.sql", weekly_kpi_p_params(window, settings))


def build_weekly_kpi(warehouse: Warehouse, window: RunWindow, settings: KpiSettings) -> int:
    """Rebuild ``weekly_kpi`` for the window's weeks (activity, then P); return the rows built."""
    with warehouse.transaction() as tx:
        require_platform_clock(tx.conn, window.timezone)
        written = tx.execute_file("kpi/weekly_kpi.sql", window.as_sql_params())
        with_p = update_weekly_kpi_p(tx, window, settings)
    log.info(
        "weekly_kpi: %s student-weeks for %s .. %s, %s given a P (from %s)",
        written,
        window.start,
        window.end,
        with_p,
        "brms where available" if settings.metrics_use_bayesian else "the simple estimate",
    )
    return written
