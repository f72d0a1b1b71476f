"""Synthetic learners for a college-entrance prep platform, with their true parameters.

Three parts:

* :mod:`.simulate` - :func:`generate`: students, questions and attempts over weeks of
  history and, optionally, future weeks after the run date, plus the truth tables
  (pure, deterministic; the model of the learners is described there);
* :mod:`.clock` - local wall-clock times of the platform's time zone -> UTC instants;
* :mod:`.loader` - :func:`load`: one data set into the warehouse in one transaction
  (binary COPY);
* ``python -m learning_analytics.synthetic`` - the command line (:mod:`.__main__`).

What the truth tables hold and how scoring uses them: ``docs/synthetic.md``.
"""

from learning_analytics.synthetic.clock import local_to_utc
from learning_analytics.synthetic.loader import LOADED_TABLES, LoadSummary, binary_copy_payload, copy_attempts, load
from learning_analytics.synthetic.simulate import (
    ACCURACY_BOUNDS,
    ANOMALY_RATE,
    CHURN_COEFFICIENTS,
    CHURN_FIRST_DAY,
    DEFAULT_END_DATE,
    DEFAULT_TIMEZONE,
    DIP_FACTOR_RANGE,
    SEGMENTS,
    SPIKE_FACTOR_RANGE,
    SegmentProfile,
    SyntheticData,
    SyntheticRun,
    expected_accuracy,
    generate,
)

__all__ = [
    "ACCURACY_BOUNDS",
    "ANOMALY_RATE",
    "CHURN_COEFFICIENTS",
    "CHURN_FIRST_DAY",
    "DEFAULT_END_DATE",
    "DEFAULT_TIMEZONE",
    "DIP_FACTOR_RANGE",
    "LOADED_TABLES",
    "SEGMENTS",
    "SPIKE_FACTOR_RANGE",
    "LoadSummary",
    "SegmentProfile",
    "SyntheticData",
    "SyntheticRun",
    "binary_copy_payload",
    "copy_attempts",
    "expected_accuracy",
    "generate",
    "load",
    "local_to_utc",
]
