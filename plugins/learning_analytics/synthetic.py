"""Synthetic learners for a college-entrance prep platform, with their true parameters.

The generator simulates students answering questions for ``n_weeks`` weeks that end
(exclusively) at ``end_date``, a Monday. Every number that drives the simulation is
stored next to the data (``synthetic_run``, ``synthetic_truth_student``,
``synthetic_truth_anomaly``) so tests can check that each model recovers it:

* **Growth** - student ``i`` has a starting accuracy ``base_accuracy`` and a weekly
  gain ``weekly_slope``; the expected accuracy in week ``w`` (0 = first simulated
  week) is ``clip(base_accuracy + weekly_slope * w, 0.05, 0.97)``. An attempt at
  question ``q`` is correct with probability ``inv_logit(ability_iw - difficulty_q)``
  where ``ability_iw`` is solved so that the mean of that probability over the
  question bank equals the expected accuracy. A straight line through weekly
  accuracy therefore recovers ``weekly_slope``.
* **Segments** - four behavioural segments (:data:`SEGMENTS`) differ in sessions per
  week, attempts per session, seconds per question, topic breadth, weekend habit and
  in accuracy and growth, so k-means on per-student features separates them.
* **Churn** - every student has a constant daily hazard of stopping for good,
  ``exp(churn_log_hazard)`` with ``churn_log_hazard = log(CHURN_BASELINE_DAILY_HAZARD)
  + sum_k CHURN_COEFFICIENTS[k] * (x_k - CHURN_REFERENCE[k])``. The hazard acts from
  the second week until 14 days before ``end_date``, so every churned student shows
  a gap of 14+ days; ``churned_on`` is the first day without any further activity.
* **Anomalies** - about :data:`ANOMALY_RATE` of the student-weeks in which a student
  is active for the whole week get their session rate multiplied by a spike
  (:data:`SPIKE_FACTOR_RANGE`) or a dip (:data:`DIP_FACTOR_RANGE`) factor.

:func:`generate` is pure (no database); :func:`load` replaces the warehouse's source
and truth tables with one :class:`SyntheticData` in a single transaction through
binary ``COPY``. Same options and seed give identical rows.

Command line (``plugins/`` on ``PYTHONPATH``)::

    python -m learning_analytics.synthetic --students 500 --weeks 16 --seed 42 --dsn "$ANALYTICS_DB_URI"
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

#: Default exclusive end of the simulation: the Monday after the last simulated week.
DEFAULT_END_DATE = date(2026, 11, 23)

TOPIC_NAMES: tuple[str, ...] = (
    "Algebra",
    "Geometry",
    "Trigonometry",
    "Probability and Statistics",
    "Calculus",
    "Reading Comprehension",
    "Grammar and Usage",
    "Vocabulary",
    "Physics",
    "Chemistry",
)
QUESTIONS_PER_TOPIC = 50
#: Spread of question difficulty (logit scale) around each topic's mean of 0.
QUESTION_DIFFICULTY_SD = 0.9
#: Expected accuracy is clipped to this range so that it stays a probability that a
#: real learner could show (nobody is certain to fail or to succeed).
ACCURACY_BOUNDS = (0.05, 0.97)
#: First user id; ids are consecutive from here.
FIRST_USER_ID = 100_001


@dataclass(frozen=True)
class SegmentProfile:
    """Population means of one behavioural segment (student values vary around them)."""

    name: str
    share: float
    base_accuracy: float
    base_accuracy_sd: float
    weekly_slope: float
    weekly_slope_sd: float
    #: Median sessions per week (student values are log-normal around it).
    sessions_per_week: float
    #: Median attempts per session.
    attempts_per_session: float
    #: Median seconds per question.
    seconds_per_question: float
    #: Mean number of distinct topics the student works on.
    topic_breadth: float
    #: Session rate on a Saturday or Sunday relative to a weekday.
    weekend_weight: float


SEGMENTS: tuple[SegmentProfile, ...] = (
    SegmentProfile("steady_high", 0.30, 0.70, 0.05, 0.015, 0.006, 6.0, 18.0, 75.0, 7.0, 0.5),
    SegmentProfile("struggling_active", 0.25, 0.45, 0.05, 0.020, 0.007, 5.5, 14.0, 100.0, 5.0, 1.0),
    SegmentProfile("weekend_casual", 0.25, 0.55, 0.06, 0.012, 0.007, 2.2, 12.0, 40.0, 3.0, 3.0),
    SegmentProfile("broad_improver", 0.20, 0.48, 0.05, 0.035, 0.007, 3.0, 30.0, 55.0, 10.0, 1.0),
)
#: Log-normal spread of each student's habits around the segment medians.
HABIT_LOG_SD = {"sessions_per_week": 0.20, "attempts_per_session": 0.20, "seconds_per_question": 0.15}
#: Log-normal spread of one attempt's duration around the student's median.
ATTEMPT_TIME_LOG_SD = 0.45
#: Wrong answers take this much longer than right ones.
WRONG_ANSWER_TIME_FACTOR = 1.2

#: Daily churn hazard of a student at :data:`CHURN_REFERENCE`.
CHURN_BASELINE_DAILY_HAZARD = 0.0032
#: True log-hazard coefficients, per unit of each covariate (as a KPI would measure it:
#: ``accuracy`` = base_accuracy, ``sessions_per_week``, ``accuracy_trend`` = weekly_slope).
CHURN_COEFFICIENTS: dict[str, float] = {"accuracy": -4.0, "sessions_per_week": -0.3, "accuracy_trend": -40.0}
CHURN_REFERENCE: dict[str, float] = {"accuracy": 0.6, "sessions_per_week": 4.0, "accuracy_trend": 0.02}
#: Churn cannot happen in the first week (every student starts studying) nor in the
#: last this many days (so every churned student shows a gap of at least that long).
CHURN_GAP_DAYS = 14

ANOMALY_RATE = 0.025
SPIKE_FACTOR_RANGE = (3.0, 4.0)
DIP_FACTOR_RANGE = (0.1, 0.2)

_PG_EPOCH = date(2000, 1, 1)
_UNIX_TO_PG_EPOCH_US = 946_684_800 * 1_000_000
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SyntheticRun:
    """Options of one generation and the run-level truth (``synthetic_run``)."""

    seed: int
    n_students: int
    n_weeks: int
    start_date: date
    end_date: date
    churn_coefficients: dict[str, float]


@dataclass
class SyntheticData:
    """One generated data set: the source tables and the truth tables as DataFrames.

    Column names and order equal the warehouse tables'. ``truth_student`` holds one
    row per student (``churned_on`` is ``NaT`` for students who never churn).
    """

    run: SyntheticRun
    students: pd.DataFrame
    topics: pd.DataFrame
    questions: pd.DataFrame
    attempts: pd.DataFrame
    truth_student: pd.DataFrame
    truth_anomaly: pd.DataFrame
    segment_names: tuple[str, ...] = field(default=tuple(s.name for s in SEGMENTS))

    @property
    def n_attempts(self) -> int:
        """Number of generated attempts."""
        return len(self.attempts)


@dataclass(frozen=True)
class LoadSummary:
    """What :func:`load` wrote: rows per table and wall time in seconds."""

    rows: dict[str, int]
    elapsed_s: float

    @property
    def attempts_per_s(self) -> float:
        """Attempt rows loaded per second of the whole load."""
        return self.rows["attempt_log"] / self.elapsed_s if self.elapsed_s > 0 else float("inf")


def _inv_logit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _lognormal(rng: np.random.Generator, median: np.ndarray, log_sd: float) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, log_sd, size=median.shape))


def _validate(n_students: int, n_weeks: int, end_date: date) -> None:
    if n_students < 1:
        raise ValueError(f"n_students must be at least 1, got {n_students}")
    if n_weeks < 1:
        raise ValueError(f"n_weeks must be at least 1, got {n_weeks}")
    if end_date.isoweekday() != 1:
        raise ValueError(f"end_date must be a Monday, got {end_date.isoformat()} ({end_date:%A})")


def _ability_for_accuracy(expected_accuracy: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    """Logit-scale ability whose mean P(correct) over the question bank is the target.

    ``mean_q inv_logit(a - d_q)`` is increasing in ``a``, so a fine grid inverted by
    interpolation is exact to well below sampling noise.
    """
    grid = np.linspace(-10.0, 10.0, 4001)
    mean_accuracy = _inv_logit(grid[:, None] - difficulty[None, :]).mean(axis=1)
    return np.interp(expected_accuracy, mean_accuracy, grid)


def _question_bank(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_topics = len(TOPIC_NAMES)
    topics = pd.DataFrame({"topic_id": np.arange(1, n_topics + 1, dtype=np.int32), "name": list(TOPIC_NAMES)})
    raw = rng.normal(0.0, QUESTION_DIFFICULTY_SD, size=(n_topics, QUESTIONS_PER_TOPIC))
    # Centre each topic so that a student's topic mix does not shift their accuracy.
    difficulty = raw - raw.mean(axis=1, keepdims=True)
    questions = pd.DataFrame(
        {
            "question_id": np.arange(1, n_topics * QUESTIONS_PER_TOPIC + 1, dtype=np.int64),
            "topic_id": np.repeat(topics["topic_id"].to_numpy(), QUESTIONS_PER_TOPIC),
            "difficulty": difficulty.ravel().round(4),
        }
    )
    return topics, questions


def _attempt_second_of_day(
    rng: np.random.Generator,
    weekend_session: np.ndarray,
    sessions_per_student_day: np.ndarray,
    session_size: np.ndarray,
    step_s: np.ndarray,
) -> np.ndarray:
    """Second of the UTC day of every attempt.

    Sessions start at realistic hours (weekday evenings, some daytime; weekends in the
    day), a student's sessions on one day follow each other without overlapping and
    end before midnight, and within a session attempts follow each other by
    ``step_s`` (answer time plus pause).

    :param weekend_session: per session, whether its day is a Saturday or Sunday.
    :param sessions_per_student_day: sessions of each student-day, in the order the
        sessions are grouped (all sessions of one student-day are consecutive).
    :param session_size: attempts per session.
    :param step_s: per attempt, seconds until the next attempt of the session may start.
    """
    n_sessions = len(session_size)
    evening = rng.random(n_sessions) < 0.75
    start_hour = np.where(
        weekend_session,
        rng.normal(14.0, 3.5, size=n_sessions),
        np.where(evening, rng.normal(19.5, 1.8, size=n_sessions), rng.normal(12.0, 3.0, size=n_sessions)),
    )
    start_s = (np.clip(start_hour, 6.0, 23.5) * 3600).astype(np.int64)
    session_first = np.cumsum(session_size) - session_size
    length_s = np.add.reduceat(step_s, session_first) if n_sessions else np.zeros(0, dtype=np.int64)
    break_s = rng.integers(600, 3600, size=n_sessions)

    # Order the sessions of each student-day by start, push each one after the end of
    # the previous one, then pull them back from midnight (the last ends by 23:59:59).
    group = np.repeat(np.arange(len(sessions_per_student_day)), sessions_per_student_day)
    start_s = start_s[np.lexsort((start_s, group))]
    rank = np.arange(n_sessions) - np.repeat(
        np.cumsum(sessions_per_student_day) - sessions_per_student_day, sessions_per_student_day
    )
    max_rank = int(rank.max()) if n_sessions else 0
    for r in range(1, max_rank + 1):
        later = np.flatnonzero(rank == r)
        start_s[later] = np.maximum(start_s[later], start_s[later - 1] + length_s[later - 1] + break_s[later])
    is_last = np.append(group[1:] != group[:-1], True) if n_sessions else np.zeros(0, dtype=bool)
    start_s = np.where(is_last, np.minimum(start_s, _SECONDS_PER_DAY - 1 - length_s), start_s)
    for r in range(max_rank - 1, -1, -1):
        earlier = np.flatnonzero((rank == r) & ~is_last)
        start_s[earlier] = np.minimum(start_s[earlier], start_s[earlier + 1] - length_s[earlier] - break_s[earlier + 1])
    start_s = np.maximum(start_s, 0)

    elapsed_before = np.cumsum(step_s) - step_s
    offset_s = elapsed_before - np.repeat(elapsed_before[session_first], session_size)
    return np.minimum(np.repeat(start_s, session_size) + offset_s, _SECONDS_PER_DAY - 1)


def generate(n_students: int, n_weeks: int, seed: int, end_date: date = DEFAULT_END_DATE) -> SyntheticData:
    """Simulate ``n_students`` learners over the ``n_weeks`` weeks before ``end_date``.

    Pure and deterministic: the same arguments give identical frames.

    :param n_students: number of students (at least 1).
    :param n_weeks: number of simulated weeks (at least 1).
    :param seed: seed of the random generator.
    :param end_date: exclusive end, the Monday after the last simulated week.
    :raises ValueError: naming the offending argument.
    """
    _validate(n_students, n_weeks, end_date)
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    n_days = 7 * n_weeks
    start_date = end_date - timedelta(days=n_days)
    n_topics = len(TOPIC_NAMES)

    topics, questions = _question_bank(rng)
    difficulty = questions["difficulty"].to_numpy()

    # Segments: exact shares, then shuffled so ids do not reveal the segment.
    shares = np.array([s.share for s in SEGMENTS])
    sizes = np.floor(shares * n_students).astype(int)
    sizes[0] += n_students - sizes.sum()
    segment = rng.permutation(np.repeat(np.arange(len(SEGMENTS)), sizes))

    def profile(name: str) -> np.ndarray:
        return np.array([getattr(s, name) for s in SEGMENTS])[segment]

    base_accuracy = np.clip(rng.normal(profile("base_accuracy"), profile("base_accuracy_sd")), 0.15, 0.92)
    weekly_slope = rng.normal(profile("weekly_slope"), profile("weekly_slope_sd"))
    sessions_per_week = _lognormal(rng, profile("sessions_per_week"), HABIT_LOG_SD["sessions_per_week"])
    attempts_per_session = _lognormal(rng, profile("attempts_per_session"), HABIT_LOG_SD["attempts_per_session"])
    seconds_per_question = _lognormal(rng, profile("seconds_per_question"), HABIT_LOG_SD["seconds_per_question"])
    topic_breadth = np.clip(np.rint(rng.normal(profile("topic_breadth"), 1.0)), 1, n_topics).astype(int)
    weekend_weight = profile("weekend_weight")

    # Students: signed up before the window, goal in [0.60, 0.90] in steps of 0.05,
    # exam three weeks to six months after the window.
    signup_offset = rng.integers(0, 121, size=n_students)
    exam_offset = rng.integers(21, 181, size=n_students)
    students = pd.DataFrame(
        {
            "user_id": np.arange(FIRST_USER_ID, FIRST_USER_ID + n_students, dtype=np.int64),
            "signup_date": [start_date - timedelta(days=int(d)) for d in signup_offset],
            "accuracy_goal": np.round(rng.integers(12, 19, size=n_students) * 0.05, 2),
            "exam_date": [end_date + timedelta(days=int(d)) for d in exam_offset],
        }
    )

    # Churn: constant daily hazard between day 7 and n_days - CHURN_GAP_DAYS.
    covariates = {"accuracy": base_accuracy, "sessions_per_week": sessions_per_week, "accuracy_trend": weekly_slope}
    churn_log_hazard = np.log(CHURN_BASELINE_DAILY_HAZARD) + sum(
        CHURN_COEFFICIENTS[k] * (covariates[k] - CHURN_REFERENCE[k]) for k in CHURN_COEFFICIENTS
    )
    daily_hazard = np.minimum(np.exp(churn_log_hazard), 1.0)
    churn_day = 7 + rng.geometric(daily_hazard) - 1
    churn_possible = churn_day <= n_days - CHURN_GAP_DAYS
    churn_day = np.where(churn_possible, churn_day, n_days)  # n_days = never in the window
    churned_on = pd.to_datetime(
        [start_date + timedelta(days=int(d)) if c else None for d, c in zip(churn_day, churn_possible, strict=True)]
    )

    # Anomalies in weeks the student is active throughout; at most one per student-week.
    week_index = np.arange(n_weeks)
    active_week = (week_index[None, :] + 1) * 7 <= churn_day[:, None]
    is_anomaly = active_week & (rng.random((n_students, n_weeks)) < ANOMALY_RATE)
    is_spike = rng.random((n_students, n_weeks)) < 0.5
    spike = rng.uniform(*SPIKE_FACTOR_RANGE, size=(n_students, n_weeks))
    dip = rng.uniform(*DIP_FACTOR_RANGE, size=(n_students, n_weeks))
    activity_factor = np.where(is_anomaly, np.where(is_spike, spike, dip), 1.0).round(3)
    anomaly_student, anomaly_week = np.nonzero(is_anomaly)
    truth_anomaly = pd.DataFrame(
        {
            "user_id": students["user_id"].to_numpy()[anomaly_student],
            "week_start": [start_date + timedelta(weeks=int(w)) for w in anomaly_week],
            "activity_factor": activity_factor[anomaly_student, anomaly_week],
        }
    )

    # Sessions per student-day: Poisson around the weekly rate spread over the week.
    day_index = np.arange(n_days)
    is_weekend_day = (day_index % 7) >= 5  # start_date is a Monday
    day_weight = np.where(is_weekend_day[None, :], weekend_weight[:, None], 1.0)
    day_weight = day_weight / (5.0 + 2.0 * weekend_weight[:, None])
    session_rate = (
        sessions_per_week[:, None]
        * day_weight
        * activity_factor[:, day_index // 7]
        * (day_index[None, :] < churn_day[:, None])
    )
    sessions_per_day = rng.poisson(session_rate)
    session_student, session_day = np.nonzero(sessions_per_day)
    repeats = sessions_per_day[session_student, session_day]
    session_student = np.repeat(session_student, repeats)
    session_day = np.repeat(session_day, repeats)
    session_size = 1 + rng.poisson(attempts_per_session[session_student] - 1.0)

    # Attempts: topic from the student's own topic mix, question uniform in the topic.
    attempt_student = np.repeat(session_student, session_size)
    attempt_day = np.repeat(session_day, session_size)
    n_attempts = len(attempt_student)
    topic_rank = np.argsort(rng.random((n_students, n_topics)), axis=1).argsort(axis=1)
    topic_weight = rng.gamma(2.0, size=(n_students, n_topics)) * (topic_rank < topic_breadth[:, None])
    topic_cdf = np.cumsum(topic_weight / topic_weight.sum(axis=1, keepdims=True), axis=1)
    draw = rng.random(n_attempts)
    topic_index = np.minimum((draw[:, None] >= topic_cdf[attempt_student]).sum(axis=1), n_topics - 1)
    question_index = topic_index * QUESTIONS_PER_TOPIC + rng.integers(0, QUESTIONS_PER_TOPIC, size=n_attempts)

    expected_accuracy = np.clip(base_accuracy[:, None] + weekly_slope[:, None] * week_index[None, :], *ACCURACY_BOUNDS)
    ability = _ability_for_accuracy(expected_accuracy.ravel(), difficulty).reshape(n_students, n_weeks)
    p_correct = _inv_logit(ability[attempt_student, attempt_day // 7] - difficulty[question_index])
    is_correct = rng.random(n_attempts) < p_correct

    time_spent = (
        seconds_per_question[attempt_student]
        * np.exp(rng.normal(0.0, ATTEMPT_TIME_LOG_SD, size=n_attempts))
        * np.where(is_correct, 1.0, WRONG_ANSWER_TIME_FACTOR)
    )
    time_spent_s = np.clip(np.rint(time_spent), 5, 900).astype(np.int64)

    step_s = time_spent_s + rng.integers(2, 21, size=n_attempts)  # answer + a short pause
    second_of_day = _attempt_second_of_day(rng, is_weekend_day[session_day], repeats, session_size, step_s)
    start_unix_s = (start_date - date(1970, 1, 1)).days * _SECONDS_PER_DAY
    attempted_unix_s = start_unix_s + attempt_day * _SECONDS_PER_DAY + second_of_day

    # The log is in time order; attempt ids are sequential in that order.
    order = np.lexsort((attempt_student, attempted_unix_s))
    attempts = pd.DataFrame(
        {
            "attempt_id": np.arange(1, n_attempts + 1, dtype=np.int64),
            "user_id": students["user_id"].to_numpy()[attempt_student[order]],
            "question_id": questions["question_id"].to_numpy()[question_index[order]],
            "topic_id": topics["topic_id"].to_numpy()[topic_index[order]],
            "is_correct": is_correct[order],
            "time_spent_s": time_spent_s[order].astype(np.int32),
            "attempted_at": pd.to_datetime(attempted_unix_s[order] * 1_000_000, unit="us", utc=True),
        }
    )

    truth_student = pd.DataFrame(
        {
            "user_id": students["user_id"].to_numpy(),
            "segment": segment.astype(np.int32),
            "base_accuracy": base_accuracy,
            "weekly_slope": weekly_slope,
            "sessions_per_week": sessions_per_week,
            "churn_log_hazard": churn_log_hazard,
            "churned_on": churned_on,
            "attempts_per_session": attempts_per_session,
            "seconds_per_question": seconds_per_question,
            "topic_breadth": topic_breadth.astype(np.int32),
            "weekend_weight": weekend_weight,
        }
    )
    run = SyntheticRun(seed, n_students, n_weeks, start_date, end_date, dict(CHURN_COEFFICIENTS))
    log.info(
        "generated %d students x %d weeks: %d attempts, %d churned, %d anomalies in %.2f s",
        n_students,
        n_weeks,
        n_attempts,
        int(churn_possible.sum()),
        len(truth_anomaly),
        time.monotonic() - started,
    )
    return SyntheticData(run, students, topics, questions, attempts, truth_student, truth_anomaly)


# --- loading -----------------------------------------------------------------------

#: Every table the loader replaces. ``CASCADE`` also empties tables that reference
#: students (weekly_kpi, features_topic_daily, ...), which is intended: they describe
#: the data being replaced.
LOADED_TABLES = (
    "synthetic_truth_anomaly",
    "synthetic_truth_student",
    "synthetic_run",
    "attempt_log",
    "questions",
    "topics",
    "students",
)

_ATTEMPT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("attempt_id", ">i8"),
    ("user_id", ">i8"),
    ("question_id", ">i8"),
    ("topic_id", ">i4"),
    ("is_correct", "u1"),
    ("time_spent_s", ">i4"),
    ("attempted_at", ">i8"),
)
_COPY_CHUNK_ROWS = 200_000


def binary_copy_payload(columns: Sequence[tuple[np.ndarray, str]]) -> np.ndarray:
    """Rows of PostgreSQL binary COPY tuples for non-null fixed-width columns.

    Each tuple is a big-endian field count followed by ``(length, value)`` per field;
    building them as one numpy record array avoids a Python loop over rows.

    :param columns: ``(values, numpy big-endian dtype)`` per column, in table order.
    :returns: a structured array; ``payload.tobytes()`` is the tuple section of a
        binary COPY stream (without header and trailer).
    """
    fields: list[tuple[str, str]] = [("n_fields", ">i2")]
    for index, (_, dtype) in enumerate(columns):
        fields += [(f"len_{index}", ">i4"), (f"value_{index}", dtype)]
    n_rows = len(columns[0][0]) if columns else 0
    payload = np.empty(n_rows, dtype=np.dtype(fields))
    payload["n_fields"] = len(columns)
    for index, (values, dtype) in enumerate(columns):
        payload[f"len_{index}"] = np.dtype(dtype).itemsize
        payload[f"value_{index}"] = values
    return payload


def _attempt_columns(attempts: pd.DataFrame) -> list[tuple[np.ndarray, str]]:
    attempted_at_us = attempts["attempted_at"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()
    values = {name: attempts[name].to_numpy() for name, _ in _ATTEMPT_COLUMNS}
    values["attempted_at"] = attempted_at_us - _UNIX_TO_PG_EPOCH_US
    return [(values[name], dtype) for name, dtype in _ATTEMPT_COLUMNS]


def copy_attempts(cur: psycopg.Cursor, attempts: pd.DataFrame, table: str = "attempt_log") -> int:
    """COPY ``attempts`` into ``table`` (attempt_log's columns) in binary format."""
    payload = binary_copy_payload(_attempt_columns(attempts))
    names = ", ".join(name for name, _ in _ATTEMPT_COLUMNS)
    with cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"))
        for first in range(0, len(payload), _COPY_CHUNK_ROWS):
            copy.write(payload[first : first + _COPY_CHUNK_ROWS].tobytes())
        copy.write((-1).to_bytes(2, "big", signed=True))
    return len(payload)


@contextmanager
def _bulk_load_mode(cur: psycopg.Cursor, table: str) -> Iterator[None]:
    """Drop ``table``'s foreign keys and secondary indexes, restore them on exit.

    Row-by-row foreign-key triggers and index maintenance made COPY of the attempt
    log ~20x slower (546k rows: 9.6 s vs 0.5 s); validating each foreign key once and
    building each index once afterwards is what pg_restore does. The definitions are
    read from the catalog, so the schema stays defined only in the migrations, and
    everything happens inside the caller's transaction: on error nothing is lost.
    """
    cur.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        (table,),
    )
    foreign_keys = cur.fetchall()
    cur.execute(
        "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index AS x JOIN pg_class AS c ON c.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass AND NOT x.indisunique ORDER BY c.relname",
        (table,),
    )
    indexes = cur.fetchall()
    for name, _ in foreign_keys:
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    for _, definition in indexes:
        cur.execute(definition)
    for name, definition in foreign_keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
            + sql.SQL(definition)
        )


def _records(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """Frame rows as Python tuples with NaT/NaN as None and timestamps as dates."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series):
            columns.append([None if pd.isna(v) else v.date() for v in series])
        else:
            columns.append([None if isinstance(v, float) and np.isnan(v) else v for v in series.tolist()])
    return list(zip(*columns, strict=True))


def _copy_rows(cur: psycopg.Cursor, table: str, frame: pd.DataFrame) -> int:
    names = ", ".join(frame.columns)
    with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in _records(frame):
            copy.write_row(row)
    return len(frame)


def _run_frame(run: SyntheticRun, n_attempts: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "seed": [run.seed],
            "n_students": [run.n_students],
            "n_weeks": [run.n_weeks],
            "start_date": [run.start_date],
            "end_date": [run.end_date],
            "n_attempts": [n_attempts],
            "churn_coefficients": [json.dumps(run.churn_coefficients)],
        }
    )


def load(conn_or_uri: psycopg.Connection | str, data: SyntheticData) -> LoadSummary:
    """Replace the source and truth tables with ``data`` in one transaction.

    TRUNCATEs :data:`LOADED_TABLES` (CASCADE: tables built from them are emptied too),
    COPYs every table, and ANALYZEs the attempt log so the first queries plan well.
    On any error nothing changes.

    :param conn_or_uri: an open psycopg connection or a libpq URI/DSN.
    :returns: rows written per table and the elapsed wall time.
    """
    if isinstance(conn_or_uri, str):
        with psycopg.connect(conn_or_uri) as conn:
            return load(conn, data)
    conn = conn_or_uri
    started = time.monotonic()
    rows: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(LOADED_TABLES)} CASCADE")
        rows["students"] = _copy_rows(cur, "students", data.students)
        rows["topics"] = _copy_rows(cur, "topics", data.topics)
        rows["questions"] = _copy_rows(cur, "questions", data.questions)
        copy_started = time.monotonic()
        with _bulk_load_mode(cur, "attempt_log"):
            rows["attempt_log"] = copy_attempts(cur, data.attempts)
            log.info("copied %d attempts in %.2f s", rows["attempt_log"], time.monotonic() - copy_started)
        log.info("restored attempt_log indexes and foreign keys in %.2f s", time.monotonic() - copy_started)
        rows["synthetic_run"] = _copy_rows(cur, "synthetic_run", _run_frame(data.run, data.n_attempts))
        rows["synthetic_truth_student"] = _copy_rows(cur, "synthetic_truth_student", data.truth_student)
        rows["synthetic_truth_anomaly"] = _copy_rows(cur, "synthetic_truth_anomaly", data.truth_anomaly)
        cur.execute("ANALYZE attempt_log")
    summary = LoadSummary(rows, time.monotonic() - started)
    log.info("loaded %s in %.2f s", rows, summary.elapsed_s)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate and load one synthetic data set, print a one-line summary."""
    from learning_analytics.warehouse import add_dsn_argument, dsn_from_args

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=500, help="number of students (default 500)")
    parser.add_argument("--weeks", type=int, default=16, help="number of simulated weeks (default 16)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--end-date",
        type=date.fromisoformat,
        default=DEFAULT_END_DATE,
        help=f"exclusive end, a Monday (default {DEFAULT_END_DATE.isoformat()})",
    )
    add_dsn_argument(parser)
    args = parser.parse_args(argv)
    dsn = dsn_from_args(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        generate_started = time.monotonic()
        data = generate(args.students, args.weeks, args.seed, args.end_date)
        generate_s = time.monotonic() - generate_started
    except ValueError as err:
        parser.error(str(err))
    summary = load(dsn, data)
    churned = int(data.truth_student["churned_on"].notna().sum())
    print(
        f"synthetic data: {args.students} students x {args.weeks} weeks "
        f"({data.run.start_date} to {data.run.end_date}, seed {args.seed}): "
        f"{summary.rows['attempt_log']} attempts, {churned} churned, "
        f"{summary.rows['synthetic_truth_anomaly']} anomaly weeks; "
        f"generated in {generate_s:.2f} s, loaded in {summary.elapsed_s:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
