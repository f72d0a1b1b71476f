"""Simulation of learners on a college-entrance prep platform, with their true parameters.

The generator simulates students answering questions for ``n_weeks`` weeks of history
that end (exclusively) at ``end_date``, a Monday (the run date of the models), and
optionally ``future_weeks`` more weeks after it in which everyone keeps behaving as
before: the realized outcomes a prediction made at ``end_date`` is scored against.
Days and weeks are those of the platform's local clock (``timezone``): sessions are
placed at local wall-clock times and stored as UTC instants (:mod:`.clock`); weeks start
on local Mondays. Every number that drives the simulation is returned next to the data
(the ``truth_*`` frames) so tests and the scoreboard can check each model against it:

* **Growth** - student ``i`` has a starting accuracy ``base_accuracy`` and a weekly
  gain ``weekly_slope``; the expected accuracy in week ``w`` (0 = first simulated
  week) is ``clip(base_accuracy + weekly_slope * w, 0.05, 0.97)`` (``truth_weekly``,
  history and future weeks). An attempt at question ``q`` is correct with probability
  ``inv_logit(ability_iw - difficulty_q)`` where ``ability_iw`` is solved so that the
  mean of that probability over the question bank equals the expected accuracy. A
  straight line through weekly accuracy therefore recovers ``weekly_slope``.
* **Segments** - four behavioural segments (:data:`SEGMENTS`) differ in sessions per
  week, attempts per session, seconds per question, topic breadth, weekend habit and
  in accuracy and growth, so k-means on per-student features separates them.
* **Churn** - every student has a constant daily hazard of stopping for good,
  ``exp(churn_log_hazard)`` with ``churn_log_hazard = log(CHURN_BASELINE_DAILY_HAZARD)
  + sum_k CHURN_COEFFICIENTS[k] * (x_k - CHURN_REFERENCE[k])``. The hazard acts from
  the second week to the end of the simulated data (future weeks included), so some
  students stop in the last days before any date, as real students drifting away do;
  ``churned_on`` is the day they stop: no attempt on or after it.
* **Anomalies** - about :data:`ANOMALY_RATE` of the student-weeks in which a student
  is active for the whole week get their session rate multiplied by a spike
  (:data:`SPIKE_FACTOR_RANGE`) or a dip (:data:`DIP_FACTOR_RANGE`) factor.

:func:`generate` is pure (no database, no clock) and deterministic: same arguments,
identical frames. The students and their parameters depend only on ``n_students`` and
``seed``, so adding future weeks changes nothing about who the students are.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from learning_analytics.synthetic.clock import SECONDS_PER_DAY, local_to_utc, zone

log = logging.getLogger(__name__)

#: Default run date: the Monday that ends the history.
DEFAULT_END_DATE = date(2026, 11, 23)
#: Default local clock of the platform (its students are in Korea; the LA_TIMEZONE default).
DEFAULT_TIMEZONE = "Asia/Seoul"
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
#: Churn cannot happen in the first week: every student starts studying.
CHURN_FIRST_DAY = 7

ANOMALY_RATE = 0.025
SPIKE_FACTOR_RANGE = (3.0, 4.0)
DIP_FACTOR_RANGE = (0.1, 0.2)


@dataclass(frozen=True)
class SyntheticRun:
    """Options of one generation and the run-level truth (``synthetic_run``).

    ``end_date`` is the history end (the run date the models are run for); the data go
    on for ``future_weeks`` weeks after it. Dates are local calendar dates in ``timezone``.
    """

    seed: int
    n_students: int
    #: Weeks of history, before ``end_date``.
    n_weeks: int
    #: Monday of the first simulated week.
    start_date: date
    #: Monday after the last week of history (exclusive history end).
    end_date: date
    churn_coefficients: dict[str, float]
    #: Weeks simulated after ``end_date``.
    future_weeks: int = 0
    timezone: str = DEFAULT_TIMEZONE

    @property
    def history_end(self) -> date:
        """The Monday that ends the history (= ``end_date``)."""
        return self.end_date

    @property
    def data_end(self) -> date:
        """Monday after the last simulated week, future included (exclusive)."""
        return self.end_date + timedelta(weeks=self.future_weeks)

    @property
    def n_simulated_weeks(self) -> int:
        """History and future weeks."""
        return self.n_weeks + self.future_weeks


@dataclass
class SyntheticData:
    """One generated data set: the source tables and the truth tables as DataFrames.

    Column names equal the warehouse tables'. Date columns hold ``datetime.date``
    values (``None`` where the table has NULL, e.g. ``truth_student.churned_on`` of a
    student who never churns).
    """

    run: SyntheticRun
    students: pd.DataFrame
    topics: pd.DataFrame
    questions: pd.DataFrame
    attempts: pd.DataFrame
    truth_student: pd.DataFrame
    truth_anomaly: pd.DataFrame
    truth_weekly: pd.DataFrame
    segment_names: tuple[str, ...] = field(default=tuple(s.name for s in SEGMENTS))

    @property
    def n_attempts(self) -> int:
        """Number of generated attempts."""
        return len(self.attempts)

    def history(self) -> pd.DataFrame:
        """The attempts before ``end_date`` 00:00 local time (what a run on ``end_date`` may see)."""
        end = local_to_utc(
            self.run.end_date, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), self.run.timezone
        )
        return self.attempts[self.attempts["attempted_at"] < end.iloc[0]]


@dataclass(frozen=True)
class _Habits:
    """Each student's true parameters, drawn around the segment profiles."""

    segment: np.ndarray
    base_accuracy: np.ndarray
    weekly_slope: np.ndarray
    sessions_per_week: np.ndarray
    attempts_per_session: np.ndarray
    seconds_per_question: np.ndarray
    topic_breadth: np.ndarray
    weekend_weight: np.ndarray


def _inv_logit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _lognormal(rng: np.random.Generator, median: np.ndarray, log_sd: float) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, log_sd, size=median.shape))


def _validate(n_students: int, n_weeks: int, end_date: date, future_weeks: int, timezone: str) -> None:
    if n_students < 1:
        raise ValueError(f"n_students must be at least 1, got {n_students}")
    if n_weeks < 1:
        raise ValueError(f"n_weeks must be at least 1, got {n_weeks}")
    if future_weeks < 0:
        raise ValueError(f"future_weeks must be at least 0, got {future_weeks}")
    if end_date.isoweekday() != 1:
        raise ValueError(f"end_date must be a Monday, got {end_date.isoformat()} ({end_date:%A})")
    zone(timezone)


def _ability_for_accuracy(expected_accuracy: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    """Logit-scale ability whose mean P(correct) over the question bank is the target.

    ``mean_q inv_logit(a - d_q)`` is increasing in ``a``, so a fine grid inverted by
    interpolation is exact to well below sampling noise.
    """
    grid = np.linspace(-10.0, 10.0, 4001)
    mean_accuracy = _inv_logit(grid[:, None] - difficulty[None, :]).mean(axis=1)
    return np.interp(expected_accuracy, mean_accuracy, grid)


def expected_accuracy(base_accuracy: np.ndarray, weekly_slope: np.ndarray, n_weeks: int) -> np.ndarray:
    """True expected accuracy of every student (rows) in every simulated week (columns)."""
    week = np.arange(n_weeks)
    return np.clip(base_accuracy[:, None] + weekly_slope[:, None] * week[None, :], *ACCURACY_BOUNDS)


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


def _habits(rng: np.random.Generator, n_students: int) -> _Habits:
    # Segments: exact shares, then shuffled so ids do not reveal the segment.
    shares = np.array([s.share for s in SEGMENTS])
    sizes = np.floor(shares * n_students).astype(int)
    sizes[0] += n_students - sizes.sum()
    segment = rng.permutation(np.repeat(np.arange(len(SEGMENTS)), sizes))

    def profile(name: str) -> np.ndarray:
        return np.array([getattr(s, name) for s in SEGMENTS])[segment]

    return _Habits(
        segment=segment,
        base_accuracy=np.clip(rng.normal(profile("base_accuracy"), profile("base_accuracy_sd")), 0.15, 0.92),
        weekly_slope=rng.normal(profile("weekly_slope"), profile("weekly_slope_sd")),
        sessions_per_week=_lognormal(rng, profile("sessions_per_week"), HABIT_LOG_SD["sessions_per_week"]),
        attempts_per_session=_lognormal(rng, profile("attempts_per_session"), HABIT_LOG_SD["attempts_per_session"]),
        seconds_per_question=_lognormal(rng, profile("seconds_per_question"), HABIT_LOG_SD["seconds_per_question"]),
        topic_breadth=np.clip(np.rint(rng.normal(profile("topic_breadth"), 1.0)), 1, len(TOPIC_NAMES)).astype(int),
        weekend_weight=profile("weekend_weight"),
    )


def _students(rng: np.random.Generator, n_students: int, start_date: date, end_date: date) -> pd.DataFrame:
    """Signed up before the first week; goal in [0.60, 0.90] in steps of 0.05; exam three
    weeks to six months after the history end (so it may fall inside the future weeks)."""
    signup_offset = rng.integers(0, 121, size=n_students)
    exam_offset = rng.integers(21, 181, size=n_students)
    return pd.DataFrame(
        {
            "user_id": np.arange(FIRST_USER_ID, FIRST_USER_ID + n_students, dtype=np.int64),
            "signup_date": [start_date - timedelta(days=int(d)) for d in signup_offset],
            "accuracy_goal": np.round(rng.integers(12, 19, size=n_students) * 0.05, 2),
            "exam_date": [end_date + timedelta(days=int(d)) for d in exam_offset],
        }
    )


def churn_log_hazard(habits: _Habits) -> np.ndarray:
    """Each student's true log daily churn hazard."""
    covariates = {
        "accuracy": habits.base_accuracy,
        "sessions_per_week": habits.sessions_per_week,
        "accuracy_trend": habits.weekly_slope,
    }
    return np.log(CHURN_BASELINE_DAILY_HAZARD) + sum(
        CHURN_COEFFICIENTS[k] * (covariates[k] - CHURN_REFERENCE[k]) for k in CHURN_COEFFICIENTS
    )


def _churn_day(rng: np.random.Generator, log_hazard: np.ndarray, n_days: int) -> np.ndarray:
    """Day index (from the first simulated day) on which each student stops for good;
    ``n_days`` for students who study to the end of the simulated data."""
    daily_hazard = np.minimum(np.exp(log_hazard), 1.0)
    churn_day = CHURN_FIRST_DAY + rng.geometric(daily_hazard) - 1
    return np.minimum(churn_day, n_days)


def _activity_factor(rng: np.random.Generator, churn_day: np.ndarray, n_weeks: int) -> tuple[np.ndarray, np.ndarray]:
    """Anomalies in weeks the student is active throughout; at most one per student-week.

    :returns: the session-rate multiplier of every student-week (1 = normal) and whether
        each student-week is an anomaly.
    """
    n_students = len(churn_day)
    active_throughout = (np.arange(n_weeks)[None, :] + 1) * 7 <= churn_day[:, None]
    is_anomaly = active_throughout & (rng.random((n_students, n_weeks)) < ANOMALY_RATE)
    is_spike = rng.random((n_students, n_weeks)) < 0.5
    spike = rng.uniform(*SPIKE_FACTOR_RANGE, size=(n_students, n_weeks))
    dip = rng.uniform(*DIP_FACTOR_RANGE, size=(n_students, n_weeks))
    return np.where(is_anomaly, np.where(is_spike, spike, dip), 1.0).round(3), is_anomaly


def _attempt_second_of_day(
    rng: np.random.Generator,
    weekend_session: np.ndarray,
    sessions_per_student_day: np.ndarray,
    session_size: np.ndarray,
    step_s: np.ndarray,
) -> np.ndarray:
    """Second of the local day (wall clock) of every attempt.

    Sessions start at realistic local hours (weekday evenings, some daytime; weekends in
    the day), a student's sessions on one day follow each other without overlapping and
    end before midnight, and within a session attempts follow each other by ``step_s``
    (answer time plus pause).

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
    start_s = np.where(is_last, np.minimum(start_s, SECONDS_PER_DAY - 1 - length_s), start_s)
    for r in range(max_rank - 1, -1, -1):
        earlier = np.flatnonzero((rank == r) & ~is_last)
        start_s[earlier] = np.minimum(start_s[earlier], start_s[earlier + 1] - length_s[earlier] - break_s[earlier + 1])
    start_s = np.maximum(start_s, 0)

    elapsed_before = np.cumsum(step_s) - step_s
    offset_s = elapsed_before - np.repeat(elapsed_before[session_first], session_size)
    return np.minimum(np.repeat(start_s, session_size) + offset_s, SECONDS_PER_DAY - 1)


def _dates(first_day: date, day_index: np.ndarray) -> list[date]:
    return [first_day + timedelta(days=int(d)) for d in day_index]


@dataclass(frozen=True)
class _Sessions:
    """Study sessions, one entry per session (student and day index), and their sizes."""

    student: np.ndarray
    day: np.ndarray
    #: Sessions the student had that day (repeated for each of them).
    same_day: np.ndarray
    #: Attempts in the session.
    size: np.ndarray
    is_weekend_day: np.ndarray


def _sessions(
    rng: np.random.Generator, habits: _Habits, churn_day: np.ndarray, activity_factor: np.ndarray, n_days: int
) -> _Sessions:
    """Sessions per student-day: Poisson around the weekly rate spread over the week,
    scaled by the week's activity factor, none from the churn day on."""
    day_index = np.arange(n_days)
    is_weekend_day = (day_index % 7) >= 5  # the start date is a Monday
    weekend_weight = habits.weekend_weight
    day_weight = np.where(is_weekend_day[None, :], weekend_weight[:, None], 1.0)
    day_weight = day_weight / (5.0 + 2.0 * weekend_weight[:, None])
    session_rate = (
        habits.sessions_per_week[:, None]
        * day_weight
        * activity_factor[:, day_index // 7]
        * (day_index[None, :] < churn_day[:, None])
    )
    sessions_per_day = rng.poisson(session_rate)
    student, day = np.nonzero(sessions_per_day)
    same_day = sessions_per_day[student, day]
    student = np.repeat(student, same_day)
    day = np.repeat(day, same_day)
    size = 1 + rng.poisson(habits.attempts_per_session[student] - 1.0)
    return _Sessions(student, day, same_day, size, is_weekend_day)


def _attempt_questions(
    rng: np.random.Generator, habits: _Habits, attempt_student: np.ndarray, n_students: int
) -> tuple[np.ndarray, np.ndarray]:
    """(topic index, question index) of each attempt: the topic from the student's own
    topic mix (``topic_breadth`` topics, gamma weights), the question uniform in it."""
    n_topics = len(TOPIC_NAMES)
    n_attempts = len(attempt_student)
    topic_rank = np.argsort(rng.random((n_students, n_topics)), axis=1).argsort(axis=1)
    topic_weight = rng.gamma(2.0, size=(n_students, n_topics)) * (topic_rank < habits.topic_breadth[:, None])
    topic_cdf = np.cumsum(topic_weight / topic_weight.sum(axis=1, keepdims=True), axis=1)
    draw = rng.random(n_attempts)
    topic_index = np.minimum((draw[:, None] >= topic_cdf[attempt_student]).sum(axis=1), n_topics - 1)
    question_index = topic_index * QUESTIONS_PER_TOPIC + rng.integers(0, QUESTIONS_PER_TOPIC, size=n_attempts)
    return topic_index, question_index


def _time_spent_s(
    rng: np.random.Generator, habits: _Habits, attempt_student: np.ndarray, is_correct: np.ndarray
) -> np.ndarray:
    """Seconds on each attempt: the student's pace, log-normal noise, wrong answers slower."""
    time_spent = (
        habits.seconds_per_question[attempt_student]
        * np.exp(rng.normal(0.0, ATTEMPT_TIME_LOG_SD, size=len(attempt_student)))
        * np.where(is_correct, 1.0, WRONG_ANSWER_TIME_FACTOR)
    )
    return np.clip(np.rint(time_spent), 5, 900).astype(np.int64)


def _truth_student(
    habits: _Habits,
    students: pd.DataFrame,
    log_hazard: np.ndarray,
    churn_day: np.ndarray,
    start_date: date,
    n_days: int,
) -> pd.DataFrame:
    """Each student's true parameters (what the models should recover)."""
    churned = churn_day < n_days
    return pd.DataFrame(
        {
            "user_id": students["user_id"].to_numpy(),
            "segment": habits.segment.astype(np.int32),
            "base_accuracy": habits.base_accuracy,
            "weekly_slope": habits.weekly_slope,
            "sessions_per_week": habits.sessions_per_week,
            "churn_log_hazard": log_hazard,
            "churned_on": pd.Series(
                [start_date + timedelta(days=int(d)) if c else None for d, c in zip(churn_day, churned, strict=True)],
                dtype=object,
            ),
            "attempts_per_session": habits.attempts_per_session,
            "seconds_per_question": habits.seconds_per_question,
            "topic_breadth": habits.topic_breadth.astype(np.int32),
            "weekend_weight": habits.weekend_weight,
            "exam_week": [exam - timedelta(days=exam.weekday()) for exam in students["exam_date"]],
        }
    )


def _truth_anomaly(
    user_ids: np.ndarray, activity_factor: np.ndarray, is_anomaly: np.ndarray, start_date: date
) -> pd.DataFrame:
    """The injected activity spikes and dips, one row per student-week."""
    anomaly_student, anomaly_week = np.nonzero(is_anomaly)
    anomaly_factor = activity_factor[anomaly_student, anomaly_week]
    return pd.DataFrame(
        {
            "user_id": user_ids[anomaly_student],
            "week_start": _dates(start_date, 7 * anomaly_week),
            "activity_factor": anomaly_factor,
            "kind": np.where(anomaly_factor > 1.0, "spike", "dip"),
        }
    )


def _truth_weekly(user_ids: np.ndarray, accuracy: np.ndarray, churn_day: np.ndarray, start_date: date) -> pd.DataFrame:
    """Expected accuracy and whether the student still studies, per student-week."""
    n_students, n_weeks = accuracy.shape
    week_student, week = np.divmod(np.arange(n_students * n_weeks), n_weeks)
    return pd.DataFrame(
        {
            "user_id": user_ids[week_student],
            "week_start": _dates(start_date, 7 * week),
            "expected_accuracy": accuracy[week_student, week],
            # Not churned yet: the student studies on at least the week's first day.
            "active": 7 * week < churn_day[week_student],
        }
    )


def generate(
    n_students: int,
    n_weeks: int,
    seed: int,
    end_date: date = DEFAULT_END_DATE,
    future_weeks: int = 0,
    timezone: str = DEFAULT_TIMEZONE,
) -> SyntheticData:
    """Simulate ``n_students`` learners over ``n_weeks`` weeks before ``end_date`` and
    ``future_weeks`` weeks after it.

    Pure and deterministic: the same arguments give identical frames.

    :param n_students: number of students (at least 1).
    :param n_weeks: weeks of history (at least 1).
    :param seed: seed of the random generator.
    :param end_date: the history end, a Monday (local): the run date of the models.
    :param future_weeks: weeks simulated after ``end_date`` (at least 0).
    :param timezone: IANA zone of the platform's local clock (days, weeks, study hours).
    :raises ValueError: naming the offending argument.
    """
    _validate(n_students, n_weeks, end_date, future_weeks, timezone)
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    n_simulated_weeks = n_weeks + future_weeks
    n_days = 7 * n_simulated_weeks
    start_date = end_date - timedelta(weeks=n_weeks)

    topics, questions = _question_bank(rng)
    difficulty = questions["difficulty"].to_numpy()
    habits = _habits(rng, n_students)
    students = _students(rng, n_students, start_date, end_date)
    user_ids = students["user_id"].to_numpy()

    log_hazard = churn_log_hazard(habits)
    churn_day = _churn_day(rng, log_hazard, n_days)
    activity_factor, is_anomaly = _activity_factor(rng, churn_day, n_simulated_weeks)
    sessions = _sessions(rng, habits, churn_day, activity_factor, n_days)

    attempt_student = np.repeat(sessions.student, sessions.size)
    attempt_day = np.repeat(sessions.day, sessions.size)
    n_attempts = len(attempt_student)
    topic_index, question_index = _attempt_questions(rng, habits, attempt_student, n_students)

    accuracy = expected_accuracy(habits.base_accuracy, habits.weekly_slope, n_simulated_weeks)
    ability = _ability_for_accuracy(accuracy.ravel(), difficulty).reshape(accuracy.shape)
    p_correct = _inv_logit(ability[attempt_student, attempt_day // 7] - difficulty[question_index])
    is_correct = rng.random(n_attempts) < p_correct
    time_spent_s = _time_spent_s(rng, habits, attempt_student, is_correct)

    step_s = time_spent_s + rng.integers(2, 21, size=n_attempts)  # answer + a short pause
    second_of_day = _attempt_second_of_day(
        rng, sessions.is_weekend_day[sessions.day], sessions.same_day, sessions.size, step_s
    )
    attempted_at = local_to_utc(start_date, attempt_day, second_of_day, timezone)

    # The log is in time order; attempt ids are sequential in that order.
    order = np.lexsort((attempt_student, attempted_at.dt.as_unit("us").astype("int64").to_numpy()))
    attempts = pd.DataFrame(
        {
            "attempt_id": np.arange(1, n_attempts + 1, dtype=np.int64),
            "user_id": user_ids[attempt_student[order]],
            "question_id": questions["question_id"].to_numpy()[question_index[order]],
            "topic_id": topics["topic_id"].to_numpy()[topic_index[order]],
            "is_correct": is_correct[order],
            "time_spent_s": time_spent_s[order].astype(np.int32),
            "attempted_at": attempted_at.iloc[order].reset_index(drop=True),
        }
    )
    truth_student = _truth_student(habits, students, log_hazard, churn_day, start_date, n_days)
    truth_anomaly = _truth_anomaly(user_ids, activity_factor, is_anomaly, start_date)
    truth_weekly = _truth_weekly(user_ids, accuracy, churn_day, start_date)
    run = SyntheticRun(
        seed, n_students, n_weeks, start_date, end_date, dict(CHURN_COEFFICIENTS), future_weeks, timezone
    )
    log.info(
        "generated %d students x %d + %d weeks (%s): %d attempts, %d churned, %d anomalies in %.2f s",
        n_students,
        n_weeks,
        future_weeks,
        timezone,
        n_attempts,
        int((churn_day < n_days).sum()),
        len(truth_anomaly),
        time.monotonic() - started,
    )
    return SyntheticData(run, students, topics, questions, attempts, truth_student, truth_anomaly, truth_weekly)
