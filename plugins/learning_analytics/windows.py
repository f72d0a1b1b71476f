"""Lookback windows derived from a run's logical date.

Airflow 3 cron schedules create ``CronTriggerTimetable`` runs whose data interval is
empty (start == end == logical date), so windows are computed here from the
logical date. Manual runs may have no logical date: they use the current UTC date.
Every row a run writes is keyed by ``run_date`` so reruns and backfills replace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class RunWindow:
    """The dates a run reads (``start`` inclusive, ``end`` exclusive) and writes under."""

    run_date: date
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError(f"empty window: start {self.start} is not before end {self.end}")

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days

    def as_sql_params(self) -> dict[str, date]:
        return {"run_date": self.run_date, "window_start": self.start, "window_end": self.end}


def week_start(day: date) -> date:
    """The Monday on or before ``day`` (weeks are ISO weeks, UTC)."""
    return day - timedelta(days=day.weekday())


def weekly_window(run_date: date, weeks: int) -> RunWindow:
    """``weeks`` complete ISO weeks ending before the week containing ``run_date``.

    A Monday run covers the weeks up to the Sunday just finished.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    end = week_start(run_date)
    return RunWindow(run_date=run_date, start=end - timedelta(weeks=weeks), end=end)


def daily_window(run_date: date, days: int) -> RunWindow:
    """``days`` complete days ending before ``run_date``."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    return RunWindow(run_date=run_date, start=run_date - timedelta(days=days), end=run_date)


def run_date_from_context(context: Mapping[str, Any], now: datetime | None = None) -> date:
    """The UTC date that keys a run: its logical date, or today for runs without one."""
    logical_date = context.get("logical_date")
    if logical_date is None:
        return (now or datetime.now(UTC)).astimezone(UTC).date()
    return logical_date.astimezone(UTC).date()
