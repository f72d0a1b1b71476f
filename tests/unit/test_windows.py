"""Lookback windows from logical dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from learning_analytics.windows import daily_window, run_date_from_context, week_start, weekly_window


def test_monday_run_covers_the_complete_weeks_before_it() -> None:
    window = weekly_window(date(2026, 11, 23), 8)  # a Monday
    assert (window.start, window.end) == (date(2026, 9, 28), date(2026, 11, 23))
    assert window.n_days == 56


def test_midweek_run_ends_at_the_last_complete_week() -> None:
    assert weekly_window(date(2026, 11, 26), 1).end == date(2026, 11, 23)
    assert week_start(date(2026, 11, 29)) == date(2026, 11, 23)


def test_daily_window_ends_before_the_run_date() -> None:
    window = daily_window(date(2026, 11, 23), 90)
    assert (window.start, window.end) == (date(2026, 8, 25), date(2026, 11, 23))


def test_run_without_logical_date_uses_today_on_the_platform_clock() -> None:
    now = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # Friday 08:30 in Seoul
    assert run_date_from_context({"logical_date": None}, now=now, timezone="Asia/Seoul") == date(2026, 11, 27)
    assert run_date_from_context({"logical_date": None}, now=now, timezone="UTC") == date(2026, 11, 26)


def test_the_spec_schedules_fall_on_the_local_day_after_the_week_closed() -> None:
    """Monday 04:30 UTC is Monday 13:30 in Seoul and Monday 05:30 in Berlin (winter): the run
    date is that Monday, so a weekly run covers the weeks up to the Sunday just ended. In a zone
    behind UTC it is still Sunday: the run covers the weeks up to the one before."""
    monday_0430 = {"logical_date": datetime(2026, 11, 23, 4, 30, tzinfo=UTC)}
    assert run_date_from_context(monday_0430, timezone="Asia/Seoul") == date(2026, 11, 23)
    assert run_date_from_context(monday_0430, timezone="Europe/Berlin") == date(2026, 11, 23)
    assert run_date_from_context(monday_0430, timezone="America/Los_Angeles") == date(2026, 11, 22)
    assert weekly_window(date(2026, 11, 22), 1).end == date(2026, 11, 16)


def test_windows_carry_the_platform_clock_into_sql() -> None:
    window = daily_window(date(2026, 11, 23), 7, timezone="Europe/Berlin")
    assert window.as_sql_params()["tz"] == "Europe/Berlin"
    assert daily_window(date(2026, 11, 23), 7).timezone == "Asia/Seoul"  # LA_TIMEZONE's default


def test_empty_windows_are_rejected() -> None:
    with pytest.raises(ValueError, match="weeks must be at least 1"):
        weekly_window(date(2026, 11, 23), 0)
