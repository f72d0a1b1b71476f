"""Lookback windows derived from a run's logical date.

Airflow 3 cron schedules create ``CronTriggerTimetable`` runs whose data interval is
empty (start == end == logical date), so windows are computed here from the
logical date. Manual runs may have no logical date: they use the current date.
Every row a run writes is keyed by ``run_date`` so reruns and backfills replace.

Days and weeks are on the platform's clock (``LA_TIMEZONE``, see
:func:`learning_analytics.settings.platform_timezone`): ``run_date`` is the local date
of the logical date, a window ``[start, end)`` runs from local midnight of ``start``
to local midnight of ``end`` (SQL: ``(%(window_start)s::date)::timestamp AT TIME ZONE
%(tz)s``), and weeks start on Monday 00:00 local time. The schedules are UTC crons: the
Monday 04:30 UTC run is Monday 13:30 in Seoul, after the local week closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from learning_analytics.settings import platform_timezone


@dataclass(frozen=True)
class RunWindow:
    """The local dates a run reads (``start`` inclusive, ``end`` exclusive) and writes under."""

    run_date: date
    start: date
    end: date
    #: The clock of the dates (IANA name); ``LA_TIMEZONE`` unless given.
    timezone: str = field(default_factory=platform_timezone)

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError(f"empty window: start {self.start} is not before end {self.end}")

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days

    def as_sql_params(self) -> dict[str, date | str]:
        """Parameters every SQL file of a run gets: the dates and ``tz``, the clock they are on."""
        return {"run_date": self.run_date, "window_start": self.start, "window_end": self.end, "tz": self.timezone}


def week_start(day: date) -> date:
    """The Monday on or before ``day`` (ISO weeks of local dates)."""
    return day - timedelta(days=day.weekday())


def weekly_window(run_date: date, weeks: int, timezone: str | None = None) -> RunWindow:
    """``weeks`` complete ISO weeks ending before the week containing ``run_date``.

    A Monday run covers the weeks up to the Sunday just finished.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    end = week_start(run_date)
    return RunWindow(run_date, end - timedelta(weeks=weeks), end, timezone or platform_timezone())


def daily_window(run_date: date, days: int, timezone: str | None = None) -> RunWindow:
    """``days`` complete days ending before ``run_date``."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    return RunWindow(run_date, run_date - timedelta(days=days), run_date, timezone or platform_timezone())


def run_date_from_context(context: Mapping[str, Any], now: datetime | None = None, timezone: str | None = None) -> date:
    """The local date that keys a run: of its logical date, or of now for runs without one.

    Local on the platform's clock: the Monday 04:30 UTC run is Monday in Seoul (13:30)
    but Sunday in Los Angeles (20:30), where the week has not closed yet, so there it
    covers the weeks up to the one before.
    """
    zone = ZoneInfo(timezone or platform_timezone())
    instant = context.get("logical_date") or now or datetime.now(UTC)
    return instant.astimezone(zone).date()
