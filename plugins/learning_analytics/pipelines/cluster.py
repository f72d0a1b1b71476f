"""Cluster segments: behavioural segments of students, with segment ids stable across runs.

Features (one row per student over the ``CLUSTER_LOOKBACK_WEEKS`` complete weeks before
the logical date, aggregated in SQL by ``include/sql/cluster/student_features.sql``
from ``weekly_kpi`` and ``features_topic_daily``) are the columns that query returns
after :data:`STUDENT_COLUMNS` (one list: the SQL's); :data:`FEATURES` gives each its
meaning and profile words (a unit test keeps both in the same order). A
week is *active* when the student made at least one attempt in it; rates are taken
over active weeks so that a student who stopped part-way is described by how they
studied, not by when they stopped.

Who is clustered (:func:`select_students`): students with attempts in at least
:func:`min_active_weeks` weeks of the window (half the window, at least
:data:`MIN_ACTIVE_WEEKS_FLOOR`). With fewer, the accuracy trend of a handful of noisy
weeks dominates the distances: on the synthetic learners a 3- or 4-week minimum
sometimes let a few such students form a segment of their own (k = 5 instead of the
true 4); half the window (6 of 12 weeks) never did in 8 runs (4 data seeds x 2 dates). Students lacking a
feature (their days are missing from
``features_topic_daily``) are left out and counted; a feature with a single value
over everyone is dropped (it cannot separate anyone, and the service rejects it).
All students are fitted together in one shard: segments are relative to the whole
population.

Stable segment ids (:func:`learning_analytics.segments.match_segments`): the service numbers segments 1..k by
decreasing size, which says nothing about what a segment means. Each run's centres are
matched to the centres of the latest earlier run (``segment_meta`` with an earlier
``run_date``) by minimising the total distance between matched centres, both
standardised with this run's scaling (Hungarian assignment). A matched segment takes
the previous run's id; a segment left over when k grew gets the smallest id the
previous run did not use.

Profiles (:func:`learning_analytics.segments.segment_profile`): a centre's features in population standard
deviations from the mean of the clustered students; the (at most
``PROFILE_MAX_TERMS``) features at least ``PROFILE_Z_THRESHOLD`` SD away, largest
first, named by their "high"/"low" words, e.g. "high accuracy, infrequent study".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from learning_analytics.pipeline import Extracted, ModelPipeline, RunContext, column_table, frame_from_columns
from learning_analytics.quality import TableGate, not_null, one_row_per
from learning_analytics.r_service import RServiceHook
from learning_analytics.segments import SegmentMatch, match_segments, segment_profile, standardise
from learning_analytics.settings import ClusterSettings
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import RunWindow, weekly_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    """One clustering feature: its column, what it measures, and its profile words."""

    name: str
    description: str
    #: Profile words for a centre well above / below the population mean.
    high: str
    low: str


FEATURES: tuple[Feature, ...] = (
    Feature(
        "accuracy_mean",
        "share of the window's attempts answered correctly (all attempts pooled)",
        "high accuracy",
        "low accuracy",
    ),
    Feature(
        "accuracy_trend",
        "least-squares slope of weekly accuracy per week, over the active weeks",
        "fast improvement",
        "slow improvement",
    ),
    Feature(
        "i_t_mean",
        "mean learning index I_t of the active weeks (accuracy weighted by log-effort)",
        "high learning index",
        "low learning index",
    ),
    Feature(
        "active_days_per_week",
        "days with attempts per active week",
        "frequent study",
        "infrequent study",
    ),
    Feature(
        "seconds_per_question",
        "time spent per attempt, in seconds",
        "slow answers",
        "quick answers",
    ),
    Feature(
        "topic_breadth",
        "distinct topics attempted in the window",
        "broad topic mix",
        "narrow topic mix",
    ),
    Feature(
        "attempts_per_active_day",
        "attempts per day with attempts",
        "long study days",
        "short study days",
    ),
    Feature(
        "weekend_share",
        "share of attempts made on Saturdays and Sundays (local time, LA_TIMEZONE)",
        "weekend-heavy",
        "weekday-focused",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
#: Columns of ``student_features.sql`` that describe the student, not a feature.
STUDENT_COLUMNS: tuple[str, ...] = ("user_id", "active_weeks", "n_attempts")
#: Each feature's ("high", "low") words for segment profiles.
PROFILE_WORDS = {feature.name: (feature.high, feature.low) for feature in FEATURES}

#: Fewest active weeks a student needs, whatever the window (a trend needs a few weeks).
MIN_ACTIVE_WEEKS_FLOOR = 3
#: Fewer clustered students than this: the run is skipped (segments of a handful of
#: students describe nobody).
MIN_STUDENTS = 20

RUN_META_COLUMNS = [
    "run_date", "status", "message", "window_start", "window_end", "settings", "sizes", "k", "method",
    "silhouette", "n_users", "model_id",
]  # fmt: skip
USER_SEGMENT_COLUMNS = ["run_date", "user_id", "segment", "distance"]
SEGMENT_META_COLUMNS = [
    "run_date", "segment", "size", "center", "profile", "k", "method", "silhouette", "model_id", "settings",
    "window_start", "window_end", "n_users", "center_z", "scaling", "fit_segment", "previous_run_date",
    "previous_distance", "k_selection", "silhouette_sample_size",
]  # fmt: skip


def min_active_weeks(lookback_weeks: int) -> int:
    """Active weeks a student needs to be clustered: half the window, at least the floor."""
    return max(MIN_ACTIVE_WEEKS_FLOOR, math.ceil(lookback_weeks / 2))


_FEATURE_ROWS = "\n".join(f"| `{feature.name}` | {feature.description} |" for feature in FEATURES)

DOC_MD = f"""
### Behavioural segments of students

Which behavioural segment does each student belong to? Builds per-student features,
fits k-means (or PAM/CLARA) on **r-cluster-plumber** (`/cluster/fit`, features
standardised by the service) and writes, keyed by the run's logical date (`run_date`):

* **`user_segment`**: each clustered student's `segment` and `distance` to its centre
  (Euclidean, in standardised units);
* **`cluster_run_meta`**: one row per run: `status` (`ok`, or `skipped` with the reason in
  `message`), window, settings, `sizes` (who was clustered, who was left out and why),
  `k`, `method`, `silhouette`, `n_users`, `model_id`;
* **`segment_meta`**: per segment its `size`, `center` (original units) and `center_z`
  (population SDs from the mean), a short `profile` (e.g. "high accuracy, infrequent
  study"), the run's `k`, `method`, `silhouette` (on a sample), `k_selection`,
  `model_id`, `scaling`, `settings`, window and `n_users`, and how its id was matched
  (`fit_segment`, `previous_run_date`, `previous_distance`).

**Features** (over the `CLUSTER_LOOKBACK_WEEKS` complete weeks before the logical date;
a week is *active* with at least one attempt; SQL `include/sql/cluster/student_features.sql`):

| feature | meaning |
|---|---|
{_FEATURE_ROWS}

**Who is clustered**: students with attempts in at least half the window's weeks (at
least {MIN_ACTIVE_WEEKS_FLOOR}); students missing a feature are left out (logged); a
feature with one value for everyone is dropped. Everyone is fitted in one request. Fewer
than {MIN_STUDENTS} students: the run is skipped, writes no segments for its date and
records the reason in `cluster_run_meta`.

**Settings**: `CLUSTER_METHOD` (`kmeans`, `pam`, `clara`), `CLUSTER_N_CLUSTERS` (empty:
k with the best silhouette in `CLUSTER_K_MIN`..`CLUSTER_K_MAX`), `CLUSTER_SEED`.

**Stable segment ids**: the centres are matched to those of the latest earlier run
(minimum total distance in this run's standardised units, Hungarian assignment), so
segment 2 keeps meaning the same kind of student; a new segment gets an id the
previous run did not use. A backfill of an old date is matched to the run before it
and does not renumber later runs.

**Upstream**: `build_weekly_kpi` and `build_features_topic_daily` must have covered the
window; the run fails (and is retried) when no student has topic features.
**Idempotent**: a rerun of the same logical date replaces the three tables' rows of that date
in one transaction (ids are matched to the same earlier run, so they do not change).
**On failure**: nothing is written. A stopped service is retried by the hook and the
task; a 400 (e.g. `CLUSTER_N_CLUSTERS` larger than the number of students) names the
problem in the `fit` log.
"""


class FeaturesNotReadyError(RuntimeError):
    """``features_topic_daily`` has no rows for the students of the window."""


@dataclass(frozen=True)
class StudentSelection:
    """The students and features a run clusters, and who was left out and why."""

    frame: pd.DataFrame
    features: list[str]
    n_active: int
    n_too_few_weeks: int
    n_missing_features: int
    constant_features: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "n_students": len(self.frame),
            "n_active": self.n_active,
            "n_too_few_weeks": self.n_too_few_weeks,
            "n_missing_features": self.n_missing_features,
            "features": self.features,
            "constant_features": self.constant_features,
        }


def select_students(features: pd.DataFrame, min_weeks: int) -> StudentSelection:
    """Students active in at least ``min_weeks`` weeks with every feature, and the usable features.

    :param features: the rows of ``student_features.sql``: :data:`STUDENT_COLUMNS`, then
        every feature.
    :raises FeaturesNotReadyError: when every active-enough student lacks a feature,
        i.e. the feature builders have not covered the window.
    """
    active_enough = features[features["active_weeks"] >= min_weeks]
    names = feature_columns(features)
    complete = active_enough.dropna(subset=names)
    n_missing = len(active_enough) - len(complete)
    if n_missing and complete.empty:
        raise FeaturesNotReadyError(
            f"none of the {len(active_enough)} students active in at least {min_weeks} weeks has every feature: "
            "build_features_topic_daily has not covered the window"
        )
    if n_missing:
        log.warning("%s students lack a feature (days missing from features_topic_daily); left out", n_missing)
    constant = [name for name in names if complete[name].nunique() <= 1] if not complete.empty else []
    if constant:
        log.warning("features with one value for every student, dropped: %s", constant)
    usable = [name for name in names if name not in constant]
    return StudentSelection(
        frame=complete[["user_id", *usable]].reset_index(drop=True),
        features=usable,
        n_active=len(features),
        n_too_few_weeks=len(features) - len(active_enough),
        n_missing_features=n_missing,
        constant_features=constant,
    )


def feature_columns(rows: pd.DataFrame) -> list[str]:
    """The clustering features among ``rows``' columns: all but :data:`STUDENT_COLUMNS`, in order."""
    return [name for name in rows.columns if name not in STUDENT_COLUMNS]


def shard_features(students: pd.DataFrame) -> list[str]:
    """The features a selected shard carries (its columns but ``user_id``)."""
    return feature_columns(students)


def fit_payload(students: pd.DataFrame, features: Sequence[str], settings: ClusterSettings) -> dict[str, Any]:
    """The ``/cluster/fit`` request: every student's features, column-oriented."""
    data = students[["user_id", *features]].astype({name: "float64" for name in features})
    return {
        "data": column_table(data),
        "features": list(features),
        "method": settings.method,
        "n_clusters": settings.n_clusters_or_auto,
        "k_range": [settings.k_min, settings.k_max],
        "seed": settings.seed,
    }


def check_k_settings(settings: ClusterSettings) -> None:
    """Fail before reading anything when the k settings contradict each other."""
    if settings.k_min > settings.k_max:
        raise ValueError(f"CLUSTER_K_MIN ({settings.k_min}) is larger than CLUSTER_K_MAX ({settings.k_max})")


@dataclass(frozen=True)
class PreviousRun:
    """Centres (original units) of the latest earlier run, keyed by segment id."""

    run_date: date
    centres: pd.DataFrame

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> PreviousRun | None:
        """From ``previous_centres.sql`` rows (``run_date``, ``segment``, ``center``); ``None`` if empty."""
        if rows.empty:
            return None
        centres = pd.DataFrame(list(rows["center"]), index=rows["segment"].astype(int).tolist())
        return cls(run_date=rows["run_date"].iloc[0], centres=centres)

    def to_json(self) -> dict[str, Any]:
        """Small JSON form carried from extract to persist."""
        return {
            "run_date": self.run_date.isoformat(),
            "centres": {str(segment): row.to_dict() for segment, row in self.centres.iterrows()},
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> PreviousRun | None:
        if not value:
            return None
        centres = pd.DataFrame.from_dict(value["centres"], orient="index")
        centres.index = centres.index.astype(int)
        return cls(run_date=date.fromisoformat(value["run_date"]), centres=centres)


@dataclass(frozen=True)
class SegmentTables:
    """The rows a run writes."""

    user_segment: pd.DataFrame
    segment_meta: pd.DataFrame
    matches: list[SegmentMatch]


def segment_tables(
    answer: Mapping[str, Any],
    features: Sequence[str],
    previous: PreviousRun | None,
    window: RunWindow,
    settings_json: Mapping[str, Any],
) -> SegmentTables:
    """``user_segment`` and ``segment_meta`` rows of one ``/cluster/fit`` answer, with stable ids."""
    scaling = answer["scaling"]
    centres = pd.DataFrame(answer["centers"]).set_index("segment")[list(features)].astype("float64")
    centres.index = centres.index.astype(int)
    centres_z = standardise(centres, scaling)
    if previous is not None:
        previous_z = standardise(previous.centres, scaling).dropna(axis="columns")
        common = [name for name in centres_z.columns if name in previous_z.columns]
        if not common:
            log.warning("no feature in common with the run of %s: segment ids start afresh", previous.run_date)
            previous_z = pd.DataFrame()
        matches = match_segments(centres_z[common], previous_z[common] if common else previous_z)
    else:
        matches = match_segments(centres_z, pd.DataFrame())
    stable_id = {match.fit_segment: match.segment for match in matches}

    assignments = frame_from_columns(answer["assignments"])
    user_segment = pd.DataFrame(
        {
            "run_date": window.run_date,
            "user_id": assignments["user_id"].astype("int64"),
            "segment": assignments["segment"].astype(int).map(stable_id).astype("int64"),
            "distance": assignments["distance"].astype("float64"),
        }
    )[USER_SEGMENT_COLUMNS]
    sizes = assignments["segment"].astype(int).value_counts()

    meta_rows = []
    for match in matches:
        center_z = {name: float(value) for name, value in centres_z.loc[match.fit_segment].items()}
        meta_rows.append(
            {
                "run_date": window.run_date,
                "segment": match.segment,
                "size": int(sizes.get(match.fit_segment, 0)),
                "center": {name: float(value) for name, value in centres.loc[match.fit_segment].items()},
                "profile": segment_profile(center_z, PROFILE_WORDS),
                "k": int(answer["k"]),
                "method": answer["method"],
                "silhouette": answer.get("silhouette"),
                "model_id": answer["model_id"],
                "settings": dict(settings_json),
                "window_start": window.start,
                "window_end": window.end,
                "n_users": len(assignments),
                "center_z": center_z,
                "scaling": {"center": dict(scaling["center"]), "scale": dict(scaling["scale"])},
                "fit_segment": match.fit_segment,
                "previous_run_date": previous.run_date if previous and match.previous_distance is not None else None,
                "previous_distance": match.previous_distance,
                "k_selection": answer.get("k_selection") or None,
                "silhouette_sample_size": answer.get("silhouette_sample_size"),
            }
        )
    segment_meta = pd.DataFrame(meta_rows, columns=SEGMENT_META_COLUMNS).sort_values("segment", ignore_index=True)
    return SegmentTables(user_segment=user_segment, segment_meta=segment_meta, matches=matches)


def run_settings(
    run: RunContext[ClusterSettings], summary: Mapping[str, Any], features: Sequence[str]
) -> dict[str, Any]:
    """What a run used, for ``cluster_run_meta.settings`` and ``segment_meta.settings``."""
    return {**run.settings.as_dict(), "min_active_weeks": summary.get("min_active_weeks"), "features": list(features)}


def run_meta_row(
    answer: Mapping[str, Any] | None, extracted: Mapping[str, Any], run: RunContext[ClusterSettings]
) -> dict[str, Any]:
    """The run's ``cluster_run_meta`` row (``skipped`` without a model when ``answer`` is None)."""
    summary = dict(extracted.get("summary") or {})
    # The previous run's centres travel in the summary for persist; they are not a size.
    sizes = {name: value for name, value in summary.items() if name != "previous_run"}
    row: dict[str, Any] = {
        "run_date": run.window.run_date,
        "window_start": run.window.start,
        "window_end": run.window.end,
        "settings": to_json(run_settings(run, summary, summary.get("features") or [])),
        "sizes": to_json(sizes),
    }
    if answer is None:
        return {**row, "status": "skipped", "message": extracted.get("skip_reason"), "n_users": 0}
    return {
        **row,
        "status": "ok",
        "message": None,
        "k": int(answer["k"]),
        "method": answer["method"],
        "silhouette": answer.get("silhouette"),
        "n_users": len(answer["assignments"]["user_id"]),
        "model_id": answer["model_id"],
    }


class ClusterPipeline(ModelPipeline[ClusterSettings]):
    """extract per-student features -> fit segments (one request) -> user_segment, segment_meta."""

    settings_cls = ClusterSettings
    service_conn_id = "r_cluster"
    fit_endpoint = "cluster/fit"
    tags = ("learning-analytics", "model", "cluster")
    # k-means for 8 values of k on 100k students takes minutes, not hours.
    fit_timeout_s = 900.0

    doc_md = DOC_MD
    quality_checks = (
        TableGate(
            "user_segment",
            columns={"user_id": not_null(), "segment": not_null(), "distance": {"min": {"geq_to": 0.0}}},
            checks={
                "one_row_per_student": ("one segment per student", one_row_per("user_id")),
                "sizes_match_meta": (
                    "students per run = the sum of `segment_meta.size`",
                    "count(*) = (SELECT coalesce(sum(size), 0) FROM segment_meta AS m WHERE m.run_date = {run_date})",
                ),
            },
        ),
    )

    def window(self, run_date: date, settings: ClusterSettings) -> RunWindow:
        return weekly_window(run_date, settings.lookback_weeks)

    def extract(self, warehouse: Warehouse, run: RunContext[ClusterSettings]) -> Extracted:
        check_k_settings(run.settings)
        min_weeks = min_active_weeks(run.settings.lookback_weeks)
        raw = warehouse.query_frame("cluster/student_features.sql", run.window.as_sql_params())
        selection = select_students(raw, min_weeks)
        previous = PreviousRun.from_rows(
            warehouse.query_frame("cluster/previous_centres.sql", {"run_date": run.window.run_date})
        )
        summary = {
            **selection.summary(),
            "min_active_weeks": min_weeks,
            "previous_run": previous.to_json() if previous else None,
        }
        if len(selection.frame) < MIN_STUDENTS:
            return Extracted(
                skip_reason=f"{len(selection.frame)} students active in at least {min_weeks} weeks of "
                f"{run.window.start} .. {run.window.end} (exclusive); at least {MIN_STUDENTS} are needed",
                summary=summary,
            )
        if not selection.features:
            return Extracted(skip_reason="every feature has a single value over all students", summary=summary)
        return Extracted(shards=[selection.frame], summary=summary)

    def fit_request(self, shard: pd.DataFrame, shard_index: int, run: RunContext[ClusterSettings]) -> dict[str, Any]:
        return fit_payload(shard, shard_features(shard), run.settings)

    def fit_result(
        self,
        service: RServiceHook,
        fit: dict[str, Any],
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[ClusterSettings],
    ) -> dict[str, Any]:
        assigned = set(map(int, fit["assignments"]["user_id"]))
        if assigned != set(map(int, shard["user_id"])):
            raise RuntimeError(
                f"the service assigned {len(assigned)} students, {len(shard)} were sent (model {fit['model_id']})"
            )
        log.info(
            "%s students: k=%s (%s), silhouette %.3f, sizes %s, model %s",
            len(shard),
            fit["k"],
            "automatic" if run.settings.n_clusters_or_auto is None else "fixed",
            fit["silhouette"],
            fit["sizes"],
            fit["model_id"],
        )
        return {"shard": shard_index, "features": shard_features(shard), "fit": fit}

    def persist(
        self,
        tx: WarehouseTransaction,
        results: Sequence[dict[str, Any]],
        extracted: dict[str, Any],
        run: RunContext[ClusterSettings],
    ) -> dict[str, Any]:
        key = {"run_date": run.window.run_date}
        summary = extracted.get("summary") or {}
        if extracted.get("skip_reason"):
            # The date has no segments: an earlier run's rows of it are replaced by none.
            log.warning("no segments for %s: %s", run.window.run_date, extracted["skip_reason"])
            tables = SegmentTables(
                user_segment=pd.DataFrame(columns=USER_SEGMENT_COLUMNS),
                segment_meta=pd.DataFrame(columns=SEGMENT_META_COLUMNS),
                matches=[],
            )
            answer = None
        else:
            if len(results) != 1:
                raise RuntimeError(f"expected one fit of the whole population, got {len(results)}")
            (result,) = results
            answer = result["fit"]
            tables = segment_tables(
                answer,
                result["features"],
                PreviousRun.from_json(summary.get("previous_run")),
                run.window,
                run_settings(run, summary, result["features"]),
            )
        renumbered = {match.fit_segment: match.segment for match in tables.matches}
        if renumbered:
            log.info("segment ids (fit -> stable): %s", renumbered)
        for row in tables.segment_meta.itertuples():
            log.info("segment %s: %s students, %s", row.segment, row.size, row.profile)
        meta = run_meta_row(answer, extracted, run)
        written = {
            "cluster_run_meta": tx.replace_partition(
                "cluster_run_meta", pd.DataFrame([meta], columns=RUN_META_COLUMNS), key, ["run_date"]
            ),
            "user_segment": tx.replace_partition("user_segment", tables.user_segment, key, ["run_date", "user_id"]),
            "segment_meta": tx.replace_partition("segment_meta", tables.segment_meta, key, ["run_date", "segment"]),
        }
        log.info("cluster run %s: status %s, %s", run.window.run_date, meta["status"], written)
        return {
            "status": meta["status"],
            **written,
            "k": meta.get("k"),
            "segment_ids": {str(fit): stable for fit, stable in renumbered.items()},
        }
