"""The metrics job: ``features_topic_daily`` and ``weekly_kpi`` from raw attempts.

All aggregation happens in SQL (``include/sql/kpi/``); these functions only compute
the window from the logical date and run the SQL in one transaction.
"""

from __future__ import annotations

import logging

from learning_analytics.settings import FeaturesSettings, KpiSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import RunWindow, daily_window, weekly_window

log = logging.getLogger(__name__)


def features_window(run_date, settings: FeaturesSettings) -> RunWindow:
    """The days a features run rebuilds: ``FEATURES_LOOKBACK_DAYS`` days before it."""
    return daily_window(run_date, settings.lookback_days)


def kpi_window(run_date, settings: KpiSettings) -> RunWindow:
    """The weeks a KPI run rebuilds: ``KPI_LOOKBACK_WEEKS`` complete weeks before it."""
    return weekly_window(run_date, settings.lookback_weeks)


def build_features_topic_daily(warehouse: Warehouse, window: RunWindow) -> int:
    """Replace ``features_topic_daily`` rows of the window's days; return rows written."""
    with warehouse.transaction() as tx:
        written = tx.execute_file("kpi/features_topic_daily.sql", window.as_sql_params())
    log.info("features_topic_daily: %s rows for %s .. %s", written, window.start, window.end)
    return written


def build_weekly_kpi(warehouse: Warehouse, window: RunWindow, settings: KpiSettings) -> int:
    """Rebuild ``weekly_kpi`` for the window's weeks; return the rows given a P."""
    params = {
        **window.as_sql_params(),
        "p_history_weeks": settings.p_history_weeks,
        "goal_horizon_weeks": settings.goal_horizon_weeks,
        "metrics_use_bayesian": settings.metrics_use_bayesian,
    }
    with warehouse.transaction() as tx:
        written = tx.execute_file("kpi/weekly_kpi.sql", params)
    log.info(
        "weekly_kpi: %s student-weeks for %s .. %s (P from %s)",
        written,
        window.start,
        window.end,
        "brms where available" if settings.metrics_use_bayesian else "the simple estimate",
    )
    return written
