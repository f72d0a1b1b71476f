"""The platform's local clock: local calendar days and wall-clock seconds -> UTC instants.

Students study by their local clock (evenings, weekends), so the generator places every
session in local time and stores ``attempted_at`` as the UTC instant it corresponds to.
Days and weeks of the simulation are local (weeks start on local Mondays).

Daylight saving time: a local day is 23, 24 or 25 hours long. Wall-clock times that do
not exist (the hour skipped in spring) are moved forward to the end of the gap, times
that exist twice (the hour repeated in autumn) are taken at their first occurrence, so
the mapping never goes backwards: attempts that follow each other on the wall clock
follow each other in UTC.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400


def zone(timezone: str) -> ZoneInfo:
    """The IANA time zone ``timezone`` (e.g. ``Asia/Seoul``).

    :raises ValueError: naming the argument when the zone is unknown.
    """
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"timezone: unknown IANA time zone {timezone!r}") from err


def local_to_utc(first_day: date, day_index: np.ndarray, second_of_day: np.ndarray, timezone: str) -> pd.Series:
    """UTC instants of local wall-clock times.

    :param first_day: local calendar date of day index 0.
    :param day_index: per instant, local days after ``first_day``.
    :param second_of_day: per instant, seconds after local midnight (0 .. 86399).
    :param timezone: IANA zone name of the local clock.
    :returns: a ``datetime64[us, UTC]`` series, one value per instant.
    """
    local = pd.DatetimeIndex(
        np.datetime64(first_day, "s")
        + day_index.astype("timedelta64[D]").astype("timedelta64[s]")
        + second_of_day.astype("timedelta64[s]")
    )
    instants = local.tz_localize(
        zone(timezone),
        ambiguous=np.ones(len(local), dtype=bool),  # True = the daylight-saving (first) occurrence
        nonexistent="shift_forward",
    )
    return pd.Series(instants.tz_convert("UTC").as_unit("us"))
