"""Segment ids that stay the same across runs, and a few words per segment.

Pure functions of centres (no Airflow, no warehouse), used by ``cluster_segments``
(:mod:`learning_analytics.pipelines.cluster`):

* :func:`match_segments`: this run's centres matched to the previous run's (Hungarian
  assignment on standardised centres), so a segment keeps its id when its members'
  behaviour does;
* :func:`segment_profile`: how a centre differs from the population, in words.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

#: A centre this many population SDs from the mean is "high"/"low" on a feature.
PROFILE_Z_THRESHOLD = 0.5
PROFILE_MAX_TERMS = 3
#: Profile of a centre close to the mean on every feature.
AVERAGE_PROFILE = "close to the population average"


def standardise(centres: pd.DataFrame, scaling: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Centres (rows) in original units -> ``(x - center) / scale`` for the features of ``scaling``
    that ``centres`` has (columns in ``scaling``'s order)."""
    features = [name for name in scaling["center"] if name in centres.columns]
    center = pd.Series({name: scaling["center"][name] for name in features}, dtype="float64")
    scale = pd.Series({name: scaling["scale"][name] for name in features}, dtype="float64")
    return (centres[features].astype("float64") - center) / scale


@dataclass(frozen=True)
class SegmentMatch:
    """The stable id given to one segment of a fit."""

    fit_segment: int
    segment: int
    #: Distance to the matched previous centre (standardised units); ``None`` for a new id.
    previous_distance: float | None


def match_segments(new_centres: pd.DataFrame, previous_centres: pd.DataFrame) -> list[SegmentMatch]:
    """Give each new segment the id of the previous centre it is matched to.

    :param new_centres: standardised centres of this fit, indexed by the fit's segment
        number (which also orders the new ids handed out).
    :param previous_centres: the previous run's centres in the same standardised units
        and columns, indexed by their (stable) ids; empty for a first run.
    :return: one match per new segment, in the fit's order. The matching minimises the
        total Euclidean distance of matched pairs (Hungarian assignment); when k grew,
        the segments left over get the smallest ids the previous run did not use.
    """
    matched: dict[int, tuple[int, float]] = {}
    if not previous_centres.empty and not new_centres.empty:
        columns = list(new_centres.columns)
        distances = cdist(new_centres[columns].to_numpy(), previous_centres[columns].to_numpy())
        rows, cols = linear_sum_assignment(distances)
        for row, col in zip(rows, cols, strict=True):
            matched[int(new_centres.index[row])] = (int(previous_centres.index[col]), float(distances[row, col]))
    used = {int(segment_id) for segment_id in previous_centres.index}
    fresh_ids = (candidate for candidate in itertools.count(1) if candidate not in used)
    matches = []
    for fit_segment in new_centres.index:
        if int(fit_segment) in matched:
            segment, distance = matched[int(fit_segment)]
            matches.append(SegmentMatch(int(fit_segment), segment, distance))
        else:
            matches.append(SegmentMatch(int(fit_segment), next(fresh_ids), None))
    return matches


def segment_profile(center_z: Mapping[str, float], words: Mapping[str, tuple[str, str]]) -> str:
    """A few words on how a centre differs from the population, e.g. "high accuracy, infrequent study".

    :param center_z: the centre's features in population SDs from the mean.
    :param words: per feature, its ("high", "low") words.
    """
    distinctive = sorted(
        ((name, z) for name, z in center_z.items() if abs(z) >= PROFILE_Z_THRESHOLD),
        key=lambda item: (-abs(item[1]), item[0]),
    )[:PROFILE_MAX_TERMS]
    return ", ".join(words[name][0] if z > 0 else words[name][1] for name, z in distinctive) or AVERAGE_PROFILE
