"""Unit tests of the Learning analytics view's pure parts (no server, no database)."""

from __future__ import annotations

import math
from datetime import date

import pytest

from learning_analytics.ui.data import kaplan_meier, parse_date, parse_int
from learning_analytics.ui.svg import Chart, histogram, nice_ticks


def test_kaplan_meier_matches_the_product_limit_by_hand() -> None:
    """Times 1, 2, 2(censored), 3, 4(censored): S = 4/5, then x 3/4, then x 1/2.

    Negative control: the naive share without events (ignoring censoring) is 2/5 = 0.4
    after t = 3, not the product-limit 0.3.
    """
    curve = kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0], "all")
    assert curve.times == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert curve.survival == pytest.approx([1.0, 0.8, 0.6, 0.3, 0.3])
    assert (curve.n, curve.events) == (5, 3)
    naive = 1 - 3 / 5
    assert curve.survival[3] != pytest.approx(naive)
    for low, s, high in zip(curve.lower, curve.survival, curve.upper, strict=True):
        assert 0 <= low <= s <= high <= 1


def test_kaplan_meier_without_events_stays_at_one() -> None:
    curve = kaplan_meier([5, 9], [0, 0], "censored")
    assert curve.survival == [1.0, 1.0] and curve.times == [0.0, 9.0]


def test_histogram_counts_every_value_once() -> None:
    centres, counts, width = histogram([0.0, 0.05, 0.5, 1.0, math.nan], 10, 0.0, 1.0)
    assert sum(counts) == 4 and counts[0] == 2 and counts[-1] == 1
    assert width == pytest.approx(0.1) and centres[0] == pytest.approx(0.05)


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3, 3) == [3]


def test_chart_escapes_labels_and_marks_points() -> None:
    chart = Chart("<b>title</b>", x_dates=True)
    chart.points([date(2026, 11, 23)], [1.0], "a & b", css_class="anomaly")
    svg = chart.render()
    assert "<b>" not in svg and "&lt;b&gt;title" in svg and "a &amp; b" in svg
    assert 'class="anomaly" data-x="2026-11-23"' in svg


def test_query_values_are_parsed_without_errors() -> None:
    assert parse_date("2026-11-23") == date(2026, 11, 23)
    assert parse_date("yesterday") is None and parse_date(None) is None
    assert parse_int("42") == 42 and parse_int("4x") is None and parse_int("") is None
