"""Typed settings for every pipeline, one source of truth per setting.

Each setting has exactly one name, used both as the environment variable that sets
its default (deployment-wide, e.g. ``LOOKBACK_WEEKS=12`` in production) and as the
DAG ``Param`` that overrides it for one run from the Airflow trigger form. The
defaults below are the product specification's. A DAG is built from its settings
class: ``params=GrowthSettings.params()`` and, inside a task,
``GrowthSettings.from_params(context["params"])``.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from airflow.sdk import Param

_TRUE = {"1", "true", "yes", "on"}

#: Environment variable of the platform's clock, and its default.
TIMEZONE_ENV = "LA_TIMEZONE"
DEFAULT_TIMEZONE = "Asia/Seoul"


def platform_timezone(environ: Mapping[str, str] | None = None) -> str:
    """The platform's clock: the IANA time zone (``LA_TIMEZONE``) whose days and weeks
    (Monday 00:00 local) every metric and model uses.

    Platform-wide, not a DAG Param: every table's days and weeks must be on one clock, so
    one run on another clock would mix weeks. Checked when a DAG file is parsed and
    again when a run starts.

    :raises ValueError: naming ``LA_TIMEZONE`` when the name is not a known time zone.
    """
    environ = os.environ if environ is None else environ
    name = environ.get(TIMEZONE_ENV, DEFAULT_TIMEZONE).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{TIMEZONE_ENV}: {name!r} is not a known IANA time zone name (e.g. Asia/Seoul, Europe/Berlin, UTC)"
        ) from None
    return name


_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SettingSpec:
    """How one setting is named, typed, bounded and documented."""

    name: str
    default: int | float | bool | str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    #: ``str`` settings that hold an optional integer (empty string = automatic).
    optional_int: bool = False

    def coerce(self, raw: Any, kind: type) -> Any:
        """Parse ``raw`` (env string or Param value) into ``kind`` and validate it.

        :raises ValueError: naming the setting and the offending value.
        """
        try:
            value = self._parse(raw, kind)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.name}: {err}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name}: {value!r} is not one of {', '.join(self.choices)}")
        numeric = int(value) if self.optional_int and value != "" else value
        if isinstance(numeric, int | float) and not isinstance(numeric, bool):
            if self.minimum is not None and numeric < self.minimum:
                raise ValueError(f"{self.name}: {numeric} is below the minimum {self.minimum}")
            if self.maximum is not None and numeric > self.maximum:
                raise ValueError(f"{self.name}: {numeric} is above the maximum {self.maximum}")
        return value

    def _parse(self, raw: Any, kind: type) -> Any:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"{raw!r} is not a boolean (use true or false)")
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(f"{raw!r} is not an integer")
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError(f"{raw!r} is not a number")
            return float(raw)
        text = "" if raw is None else str(raw).strip()
        if self.optional_int and text and not text.isdigit():
            raise ValueError(f"{raw!r} must be empty (automatic) or a positive integer")
        return text

    def param(self, default: Any, kind: type) -> Param:
        """The DAG ``Param`` for this setting with ``default`` taken from the environment."""
        schema: dict[str, Any] = {"description": self.description, "title": self.name}
        if kind is bool:
            schema["type"] = "boolean"
        elif kind is int:
            schema["type"] = "integer"
        elif kind is float:
            schema["type"] = "number"
        else:
            schema["type"] = "string"
        if self.minimum is not None and kind in (int, float):
            schema["minimum"] = self.minimum
        if self.maximum is not None and kind in (int, float):
            schema["maximum"] = self.maximum
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.optional_int:
            schema["pattern"] = "^[0-9]*$"
        return Param(default, **schema)


def setting(
    name: str,
    default: int | float | bool | str,
    description: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    optional_int: bool = False,
) -> Any:
    """Declare a settings field (used as ``field_name: int = setting(...)``)."""
    spec = SettingSpec(name, default, description, minimum, maximum, choices, optional_int)
    return field(default=default, metadata={"spec": spec})


class ModelSettings:
    """Base class of the per-pipeline settings dataclasses."""

    #: The DAG these settings configure, and its schedule (UTC cron), as in the spec.
    dag_id: ClassVar[str]
    schedule: ClassVar[str]

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field[Any], SettingSpec, type]]:
        hints = typing.get_type_hints(cls)
        return [(f, f.metadata["spec"], hints[f.name]) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def specs(cls) -> list[SettingSpec]:
        """Every setting of this pipeline, in declaration order."""
        return [spec for _, spec, _ in cls._fields()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Settings from environment variables, falling back to the spec defaults."""
        environ = os.environ if environ is None else environ
        values = {f.name: spec.coerce(environ.get(spec.name, spec.default), kind) for f, spec, kind in cls._fields()}
        return cls(**values)

    @classmethod
    def params(cls, environ: Mapping[str, str] | None = None) -> dict[str, Param]:
        """DAG ``Param``s named like the env vars, defaulting to the env value."""
        current = cls.from_env(environ)
        return {spec.name: spec.param(getattr(current, f.name), kind) for f, spec, kind in cls._fields()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Self:
        """Settings for one run: the run's ``params`` over the environment defaults.

        :raises ValueError: naming the first invalid setting.
        """
        current = cls.from_env(environ)
        values = {}
        for f, spec, kind in cls._fields():
            raw = params.get(spec.name, getattr(current, f.name))
            values[f.name] = spec.coerce(raw, kind)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """``{ENV_NAME: value}``: what a run used, recorded in the model meta tables."""
        return {spec.name: getattr(self, f.name) for f, spec, _ in self._fields()}


def _metrics_use_bayesian() -> Any:
    # One setting read by two DAGs: the weekly KPI builder (which P to keep) and the
    # growth DAG (whether to write its P into weekly_kpi).
    return setting(
        "METRICS_USE_BAYESIAN",
        False,
        "Take weekly_kpi.P from the Bayesian growth model (true) or keep the simple estimate (false).",
    )


def _goal_horizon_weeks() -> Any:
    return setting(
        "GOAL_HORIZON_WEEKS",
        8,
        "Cap, in weeks after the window, on the target week at which P(goal) is evaluated "
        "(a linear growth trend is not credible further out).",
        minimum=1,
        maximum=104,
    )


@dataclass(frozen=True)
class FeaturesSettings(ModelSettings):
    """``build_features_topic_daily``: per student, topic and day."""

    dag_id: ClassVar[str] = "build_features_topic_daily"
    schedule: ClassVar[str] = "0 3 * * *"

    lookback_days: int = setting(
        "FEATURES_LOOKBACK_DAYS",
        3,
        "Days before the logical date rebuilt by each run (late attempts are picked up).",
        minimum=1,
        maximum=3660,
    )


@dataclass(frozen=True)
class KpiSettings(ModelSettings):
    """``build_weekly_kpi``: one row per student-week."""

    dag_id: ClassVar[str] = "build_weekly_kpi"
    schedule: ClassVar[str] = "0 4 * * 1"

    lookback_weeks: int = setting(
        "KPI_LOOKBACK_WEEKS",
        2,
        "Complete weeks before the logical date rebuilt by each run.",
        minimum=1,
        maximum=520,
    )
    p_history_weeks: int = setting(
        "KPI_P_HISTORY_WEEKS",
        8,
        "Weeks of accuracy history behind the simple (non-Bayesian) P estimate.",
        minimum=2,
        maximum=52,
    )
    goal_horizon_weeks: int = _goal_horizon_weeks()
    metrics_use_bayesian: bool = _metrics_use_bayesian()


@dataclass(frozen=True)
class GrowthSettings(ModelSettings):
    """``fit_bayesian_growth``: brms hierarchical growth model on weekly accuracy."""

    dag_id: ClassVar[str] = "fit_bayesian_growth"
    schedule: ClassVar[str] = "30 4 * * 1"

    lookback_weeks: int = setting(
        "LOOKBACK_WEEKS", 8, "Complete weeks of history before the logical date.", minimum=2, maximum=104
    )
    iterations: int = setting("BRMS_ITER", 1000, "Iterations per chain (half warm-up).", minimum=200, maximum=20000)
    max_iterations: int = setting(
        "BRMS_MAX_ITER",
        5000,
        "A brms fit that misses BRMS_MIN_ESS or BRMS_MAX_RHAT without divergences is sampled "
        "again, for as many iterations per chain as its ESS says are needed, at most this many "
        "(set it to BRMS_ITER for a single run).",
        minimum=200,
        maximum=20000,
    )
    chains: int = setting("BRMS_CHAINS", 2, "MCMC chains per shard.", minimum=1, maximum=8)
    family: str = setting(
        "BRMS_FAMILY",
        "gaussian",
        "Likelihood: gaussian on accuracy, binomial on counts.",
        choices=("gaussian", "binomial"),
    )
    metrics_use_bayesian: bool = _metrics_use_bayesian()
    fit_mode: str = setting(
        "BRMS_FIT_MODE",
        "two_stage",
        "two_stage: brms on a stratified sample (stage 1), then every student's posterior given the "
        "population draws, in chunks (stage 2); full: a brms fit of every student (in shards of "
        "BRMS_SHARD_SIZE), for small populations and validation.",
        choices=("two_stage", "full"),
    )
    stage1_students: int = setting(
        "BRMS_STAGE1_STUDENTS",
        600,
        "two_stage: students in the stage-1 brms fit (stratified sample; the whole population if smaller).",
        minimum=20,
        maximum=20000,
    )
    stage2_draws: int = setting(
        "BRMS_STAGE2_DRAWS",
        400,
        "two_stage: population draws (evenly thinned) each student's posterior is computed for.",
        minimum=50,
        maximum=10000,
    )
    chunk_size: int = setting(
        "BRMS_CHUNK_SIZE",
        10000,
        "two_stage: students per stage-2 chunk; chunks are mapped tasks.",
        minimum=100,
        maximum=1000000,
    )
    shard_size: int = setting(
        "BRMS_SHARD_SIZE",
        200,
        "full: students per brms fit; shards are fitted as mapped tasks (no pooling across shards).",
        minimum=20,
        maximum=100000,
    )
    adapt_delta: float = setting(
        "BRMS_ADAPT_DELTA", 0.95, "Stan target acceptance rate (higher: fewer divergences).", minimum=0.5, maximum=0.999
    )
    max_rhat: float = setting(
        "BRMS_MAX_RHAT",
        1.01,
        "A fit converged when max Rhat over the population parameters is at most this, their bulk "
        "ESS at least BRMS_MIN_ESS and no transition diverged; otherwise no P is written.",
        minimum=1.0,
        maximum=2.0,
    )
    min_ess: int = setting(
        "BRMS_MIN_ESS",
        400,
        "Minimum bulk ESS of the population parameters (see BRMS_MAX_RHAT).",
        minimum=1,
        maximum=1000000,
    )
    min_students: int = setting(
        "BRMS_MIN_STUDENTS", 20, "Skip the fit when fewer students have data.", minimum=2, maximum=100000
    )
    min_weeks: int = setting(
        "BRMS_MIN_WEEKS", 4, "Skip the fit when fewer distinct weeks have data.", minimum=2, maximum=104
    )
    goal_horizon_weeks: int = _goal_horizon_weeks()
    seed: int = setting(
        "BRMS_SEED", 1, "Sampler seed (per shard: seed + shard index).", minimum=0, maximum=1_000_000_000
    )


@dataclass(frozen=True)
class ProphetSettings(ModelSettings):
    """``forecast_prophet``: per-student forecast and anomalies of the learning index I_t."""

    dag_id: ClassVar[str] = "forecast_prophet"
    schedule: ClassVar[str] = "0 5 * * 1"

    lookback_weeks: int = setting(
        "PROPHET_LOOKBACK_WEEKS", 12, "Complete weeks of I_t history before the logical date.", minimum=4, maximum=520
    )
    forecast_weeks: int = setting("PROPHET_FORECAST_WEEKS", 4, "Weeks forecast ahead.", minimum=1, maximum=104)
    anomaly_threshold: float = setting(
        "PROPHET_ANOMALY_THRESHOLD",
        2.5,
        "A week is anomalous when its score (z scale, |y - yhat| / sigma) exceeds this.",
        minimum=0.1,
        maximum=100.0,
    )
    chunk_size: int = setting(
        "PROPHET_CHUNK_SIZE", 500, "Series per request; chunks are fitted as mapped tasks.", minimum=1, maximum=100000
    )
    min_active_weeks: int = setting(
        "PROPHET_MIN_ACTIVE_WEEKS",
        4,
        "Weeks with attempts a student needs in the window to get a series.",
        minimum=4,
        maximum=520,
    )


@dataclass(frozen=True)
class SurvivalSettings(ModelSettings):
    """``fit_survival_churn``: Cox model of the time to a 14-day study gap."""

    dag_id: ClassVar[str] = "fit_survival_churn"
    schedule: ClassVar[str] = "0 5 * * *"

    lookback_days: int = setting(
        "SURVIVAL_LOOKBACK_DAYS", 90, "Days of attempts before the logical date.", minimum=28, maximum=3660
    )
    event_threshold_days: int = setting(
        "SURVIVAL_EVENT_THRESHOLD_DAYS", 14, "A gap of at least this many days without attempts is churn.", minimum=1
    )
    update_kpi: bool = setting("SURVIVAL_UPDATE_KPI", True, "Write each active student's churn risk into weekly_kpi.S.")
    horizon_days: int = setting(
        "SURVIVAL_HORIZON_DAYS", 14, "Horizon of the churn probability written as S.", minimum=1, maximum=365
    )


@dataclass(frozen=True)
class ClusterSettings(ModelSettings):
    """``cluster_segments``: behavioural segments by k-means (or PAM/CLARA)."""

    dag_id: ClassVar[str] = "cluster_segments"
    schedule: ClassVar[str] = "0 7 1,15 * *"

    lookback_weeks: int = setting(
        "CLUSTER_LOOKBACK_WEEKS", 12, "Complete weeks of features before the logical date.", minimum=2, maximum=520
    )
    n_clusters: str = setting(
        "CLUSTER_N_CLUSTERS",
        "",
        "Number of segments; empty = chosen automatically in k_range.",
        minimum=2,
        optional_int=True,
    )
    method: str = setting("CLUSTER_METHOD", "kmeans", "Clustering method.", choices=("kmeans", "pam", "clara"))
    k_min: int = setting("CLUSTER_K_MIN", 2, "Smallest k tried when choosing automatically.", minimum=2)
    k_max: int = setting("CLUSTER_K_MAX", 8, "Largest k tried when choosing automatically.", minimum=2)
    seed: int = setting("CLUSTER_SEED", 1, "Random seed (same data, same segments).", minimum=0, maximum=2147483647)

    @property
    def n_clusters_or_auto(self) -> int | None:
        """``CLUSTER_N_CLUSTERS`` as an int, or ``None`` for automatic choice."""
        return int(self.n_clusters) if self.n_clusters else None


@dataclass(frozen=True)
class EvaluationSettings(ModelSettings):
    """``evaluate_models``: the scoreboard, each model scored on what happened next."""

    dag_id: ClassVar[str] = "evaluate_models"
    schedule: ClassVar[str] = "0 9 * * 1"

    lookback_weeks: int = setting(
        "EVAL_LOOKBACK_WEEKS",
        12,
        "Model runs dated up to this many weeks before the logical date are scored "
        "(those whose outcome window has closed).",
        minimum=1,
        maximum=520,
    )
    calibration_bins: int = setting(
        "EVAL_CALIBRATION_BINS", 10, "Equal-count bins of the calibration tables (10 = deciles).", minimum=2, maximum=50
    )
    min_bin_students: int = setting(
        "EVAL_MIN_BIN_STUDENTS",
        30,
        "Calibration bins with fewer students are listed but not judged (too noisy).",
        minimum=1,
        maximum=100000,
    )


ALL_SETTINGS: tuple[type[ModelSettings], ...] = (
    FeaturesSettings,
    KpiSettings,
    GrowthSettings,
    ProphetSettings,
    SurvivalSettings,
    ClusterSettings,
    EvaluationSettings,
)
