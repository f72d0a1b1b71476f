"""Server-rendered SVG charts: no JavaScript, no CDN, nothing to download.

A :class:`Chart` maps data to pixels on linear axes (dates are plotted as days) and
collects layers (lines, steps, bands, points, bars, intervals, reference lines);
``render()`` returns the ``<svg>`` markup with axes, ticks and a legend. Every mark
carries a ``data-*`` attribute or a ``<title>`` so tests (and tooltips) can read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from typing import Any

#: Colour-blind-safe palette (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
ALERT = "#D55E00"
EPOCH = date(1970, 1, 1)


def as_number(value: Any) -> float:
    """A date as days since 1970 (so dates share linear axes with numbers)."""
    if isinstance(value, date):
        return float((value - EPOCH).days)
    return float(value)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]``."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}"


@dataclass
class Chart:
    """One plot. ``x_dates=True`` labels the x axis with dates."""

    title: str
    x_label: str = ""
    y_label: str = ""
    width: int = 720
    height: int = 260
    x_dates: bool = False
    x_categories: Sequence[str] | None = None
    y_range: tuple[float, float] | None = None
    log_x: bool = False
    #: Row labels of a forest plot (``intervals``): row i is drawn at y = i, top down.
    y_rows: Sequence[str] | None = None
    layers: list[str] = field(default_factory=list)
    legend: list[tuple[str, str, str]] = field(default_factory=list)
    _xs: list[float] = field(default_factory=list)
    _ys: list[float] = field(default_factory=list)
    _marks: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    margin_left: int = 58
    margin_right: int = 16
    margin_top: int = 44  # set by render() from the legend's rows
    margin_bottom: int = 42

    # -- layers (recorded first, drawn once the ranges are known) ---------------------

    def _extend(self, xs: Sequence[Any], ys: Sequence[Any]) -> tuple[list[float], list[float]]:
        px = [self._x_value(x) for x in xs]
        py = [float(y) if y is not None else math.nan for y in ys]
        self._xs += [x for x in px if math.isfinite(x)]
        self._ys += [y for y in py if math.isfinite(y)]
        return px, py

    def _x_value(self, x: Any) -> float:
        if self.x_categories is not None:
            return float(list(self.x_categories).index(x))
        value = as_number(x)
        return math.log10(value) if self.log_x and value > 0 else value

    def line(self, xs: Sequence[Any], ys: Sequence[Any], label: str, *, color: str | None = None,
             dashed: bool = False, markers: bool = False, step: bool = False) -> Chart:  # fmt: skip
        color = color or PALETTE[len(self.legend) % len(PALETTE)]
        px, py = self._extend(xs, ys)
        self._marks.append(("line", (px, py, color, dashed, markers, step, label)))
        self.legend.append(("line", label, color))
        return self

    def band(self, xs: Sequence[Any], lower: Sequence[Any], upper: Sequence[Any], label: str, *,
             color: str | None = None, step: bool = False) -> Chart:  # fmt: skip
        color = color or PALETTE[len(self.legend) % len(PALETTE)]
        px, lo = self._extend(xs, lower)
        _, hi = self._extend(xs, upper)
        self._marks.append(("band", (px, lo, hi, color, step)))
        self.legend.append(("band", label, color))
        return self

    def points(self, xs: Sequence[Any], ys: Sequence[Any], label: str, *, color: str | None = None,
               titles: Sequence[str] | None = None, radius: float = 4, css_class: str = "point") -> Chart:  # fmt: skip
        color = color or PALETTE[len(self.legend) % len(PALETTE)]
        px, py = self._extend(xs, ys)
        self._marks.append(("points", (px, py, color, titles, radius, css_class, [str(x) for x in xs])))
        self.legend.append(("point", label, color))
        return self

    def bars(self, xs: Sequence[Any], ys: Sequence[Any], label: str, *, width: float = 1.0,
             color: str | None = None) -> Chart:  # fmt: skip
        """Vertical bars centred on ``xs`` (``width`` in x units)."""
        color = color or PALETTE[len(self.legend) % len(PALETTE)]
        px, py = self._extend(xs, ys)
        self._extend([x - width / 2 for x in px] if self.x_categories is None else [], [])
        self._extend([x + width / 2 for x in px] if self.x_categories is None else [], [])
        self._ys.append(0.0)
        self._marks.append(("bars", (px, py, width, color, label)))
        self.legend.append(("band", label, color))
        return self

    def errorbars(self, xs: Sequence[Any], lower: Sequence[Any], upper: Sequence[Any], label: str, *,
                  color: str | None = None) -> Chart:  # fmt: skip
        """A vertical interval at each x (e.g. a 95% interval per run)."""
        color = color or PALETTE[len(self.legend) % len(PALETTE)]
        px, lo = self._extend(xs, lower)
        _, hi = self._extend(xs, upper)
        self._marks.append(("errorbars", (px, lo, hi, color)))
        self.legend.append(("line", label, color))
        return self

    def hline(self, y: float, label: str, *, color: str = "#555") -> Chart:
        self._ys.append(float(y))
        self._marks.append(("hline", (float(y), color, label)))
        self.legend.append(("dash", label, color))
        return self

    def vline(self, x: Any, label: str, *, color: str = "#555") -> Chart:
        self._xs.append(self._x_value(x))
        self._marks.append(("vline", (self._x_value(x), color, label)))
        self.legend.append(("dash", label, color))
        return self

    def intervals(self, rows: Sequence[tuple[str, float, float, float]], label: str, *,
                  color: str = PALETTE[0]) -> Chart:  # fmt: skip
        """Horizontal point + interval per category row (a forest plot)."""
        for _, estimate, low, high in rows:
            self._extend([estimate, low, high], [])
        self._marks.append(("intervals", (list(rows), color)))
        self.legend.append(("point", label, color))
        return self

    # -- rendering -------------------------------------------------------------------

    def render(self) -> str:
        legend, legend_rows = self._legend()
        self.margin_top = 30 + 14 * legend_rows
        self.height += 14 * max(legend_rows - 1, 0)
        if self.x_categories is not None:
            x_low, x_high = -0.5, len(self.x_categories) - 0.5
        else:
            x_low, x_high = _padded(self._xs, 0.0)
            if self.x_dates and x_high - x_low < 14:  # one run: a fortnight around it
                x_low, x_high = x_low - 7, x_high + 7
        if self.y_rows is not None:
            y_low, y_high = len(self.y_rows) - 0.5, -0.5
        else:
            y_low, y_high = self.y_range or _padded(self._ys, 0.05)
        inner_w = self.width - self.margin_left - self.margin_right
        inner_h = self.height - self.margin_top - self.margin_bottom

        def sx(x: float) -> float:
            return self.margin_left + (x - x_low) / (x_high - x_low) * inner_w

        def sy(y: float) -> float:
            return self.margin_top + (1 - (y - y_low) / (y_high - y_low)) * inner_h

        out = [
            f'<svg class="chart" role="img" viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}" xmlns="http://www.w3.org/2000/svg" data-title="{escape(self.title)}">',
            f"<title>{escape(self.title)}</title>",
            f'<text class="chart-title" x="{self.margin_left}" y="18">{escape(self.title)}</text>',
        ]
        out += self._axes(sx, sy, x_low, x_high, y_low, y_high)
        out.append(f'<g clip-path="none">{"".join(self._draw(sx, sy, y_low))}</g>')
        out += legend
        out.append("</svg>")
        return "".join(out)

    def _axes(self, sx, sy, x_low, x_high, y_low, y_high) -> list[str]:  # type: ignore[no-untyped-def]
        bottom = self.height - self.margin_bottom
        out = [
            f'<line class="axis" x1="{self.margin_left}" y1="{bottom}" x2="{self.width - self.margin_right}" '
            f'y2="{bottom}"/>',
            f'<line class="axis" x1="{self.margin_left}" y1="{self.margin_top}" x2="{self.margin_left}" '
            f'y2="{bottom}"/>',
        ]
        y_ticks = (
            [(float(i), str(label)) for i, label in enumerate(self.y_rows)]
            if self.y_rows is not None
            else [(tick, _fmt(tick)) for tick in nice_ticks(y_low, y_high)]
        )
        for tick, label in y_ticks:
            y = sy(tick)
            out.append(
                f'<line class="gridline" x1="{self.margin_left}" y1="{y:.1f}" x2="{self.width - self.margin_right}" '
                f'y2="{y:.1f}"/><text class="tick" x="{self.margin_left - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{escape(label)}</text>'
            )
        if self.x_categories is not None:
            x_ticks = [(float(i), str(c)) for i, c in enumerate(self.x_categories)]
        elif self.x_dates:
            days = sorted({round(t) for t in nice_ticks(x_low, x_high, 5)})
            x_ticks = [(float(d), (EPOCH + timedelta(days=d)).isoformat()) for d in days]
        elif self.log_x:
            x_ticks = [(t, _fmt(10**t)) for t in nice_ticks(x_low, x_high, 5)]
        else:
            x_ticks = [(t, _fmt(t)) for t in nice_ticks(x_low, x_high, 6)]
        for value, label in x_ticks:
            x = sx(value)
            out.append(
                f'<line class="tickmark" x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}"/>'
                f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(label)}</text>'
            )
        if self.x_label:
            out.append(
                f'<text class="axis-label" x="{self.margin_left + (self.width - self.margin_left) / 2:.0f}" '
                f'y="{self.height - 6}" text-anchor="middle">{escape(self.x_label)}</text>'
            )
        if self.y_label:
            middle = self.margin_top + (bottom - self.margin_top) / 2
            out.append(
                f'<text class="axis-label" transform="translate(12 {middle:.0f}) rotate(-90)" '
                f'text-anchor="middle">{escape(self.y_label)}</text>'
            )
        return out

    def _draw(self, sx, sy, y_low) -> list[str]:  # type: ignore[no-untyped-def]
        out: list[str] = []
        for kind, args in self._marks:
            if kind == "band":
                xs, lo, hi, color, step = args
                pts = [(x, a, b) for x, a, b in zip(xs, lo, hi, strict=True) if _finite(x, a, b)]
                if pts:
                    upper = _path_points([(x, b) for x, _, b in pts], step)
                    lower = _path_points([(x, a) for x, a, _ in reversed(pts)], step, reverse=True)
                    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in upper + lower)
                    out.append(f'<polygon class="band" points="{coords}" fill="{color}" fill-opacity="0.18"/>')
            elif kind == "line":
                xs, ys, color, dashed, markers, step, label = args
                pts = _path_points([(x, y) for x, y in zip(xs, ys, strict=True) if _finite(x, y)], step)
                if pts:
                    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
                    dash = ' stroke-dasharray="5 4"' if dashed else ""
                    out.append(
                        f'<polyline class="series" data-series="{escape(label)}" points="{coords}" fill="none" '
                        f'stroke="{color}" stroke-width="2"{dash}/>'
                    )
                    if markers:  # a dashed line's markers are hollow (e.g. a baseline beside its model)
                        fill = "#fff" if dashed else color
                        out += [
                            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{fill}" stroke="{color}"/>'
                            for x, y in zip(xs, ys, strict=True)
                            if _finite(x, y)
                        ]
            elif kind == "points":
                xs, ys, color, titles, radius, css_class, raw = args
                for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                    if _finite(x, y):
                        tip = f"<title>{escape(titles[i])}</title>" if titles else ""
                        out.append(
                            f'<circle class="{css_class}" data-x="{escape(raw[i])}" cx="{sx(x):.1f}" '
                            f'cy="{sy(y):.1f}" r="{radius}" fill="{color}" stroke="#fff">{tip}</circle>'
                        )
            elif kind == "bars":
                xs, ys, width, color, label = args
                for x, y in zip(xs, ys, strict=True):
                    if _finite(x, y):
                        left, right = sx(x - width / 2), sx(x + width / 2)
                        top, base = sy(max(y, 0)), sy(max(min(y, 0), y_low))
                        out.append(
                            f'<rect class="bar" data-series="{escape(label)}" data-value="{y:g}" x="{left + 1:.1f}" '
                            f'y="{top:.1f}" width="{max(right - left - 2, 1):.1f}" height="{max(base - top, 0):.1f}" '
                            f'fill="{color}"><title>{_fmt(y)}</title></rect>'
                        )
            elif kind == "errorbars":
                xs, lo, hi, color = args
                out += [
                    f'<line class="errorbar" x1="{sx(x):.1f}" y1="{sy(a):.1f}" x2="{sx(x):.1f}" y2="{sy(b):.1f}" '
                    f'stroke="{color}" stroke-width="2"/>'
                    for x, a, b in zip(xs, lo, hi, strict=True)
                    if _finite(x, a, b)
                ]
            elif kind == "hline":
                y, color, label = args
                out.append(
                    f'<line class="ref" x1="{self.margin_left}" y1="{sy(y):.1f}" x2="{self.width - self.margin_right}" '
                    f'y2="{sy(y):.1f}" stroke="{color}" stroke-dasharray="3 3"><title>{escape(label)}</title></line>'
                )
            elif kind == "vline":
                x, color, label = args
                out.append(
                    f'<line class="ref" x1="{sx(x):.1f}" y1="{self.margin_top}" x2="{sx(x):.1f}" '
                    f'y2="{self.height - self.margin_bottom}" stroke="{color}" stroke-dasharray="3 3">'
                    f"<title>{escape(label)}</title></line>"
                )
            elif kind == "intervals":
                rows, color = args
                for i, (name, estimate, low, high) in enumerate(rows):
                    y = sy(float(i))
                    out.append(
                        f'<g class="interval" data-term="{escape(name)}"><line x1="{sx(self._x_value(low)):.1f}" '
                        f'y1="{y:.1f}" x2="{sx(self._x_value(high)):.1f}" y2="{y:.1f}" stroke="{color}" '
                        f'stroke-width="2"/><rect x="{sx(self._x_value(estimate)) - 4:.1f}" y="{y - 4:.1f}" '
                        f'width="8" height="8" fill="{color}"/><title>{escape(name)}: {estimate:.3g} '
                        f"[{low:.3g}, {high:.3g}]</title></g>"
                    )
        return out

    def _legend(self) -> tuple[list[str], int]:
        """The legend's marks (under the title, wrapped to the chart's width) and its row count."""
        out: list[str] = []
        seen: set[str] = set()
        items = [item for item in self.legend if not (item[1] in seen or seen.add(item[1]))]
        x, row = self.margin_left + 4, 0
        for kind, label, color in items:
            width = 28 + 6.2 * len(label)
            if x + width > self.width and x > self.margin_left + 4:
                x, row = self.margin_left + 4, row + 1
            y = 32 + 14 * row
            if kind == "line":
                swatch = f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{color}" stroke-width="2"/>'
            elif kind == "dash":
                swatch = f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{color}" stroke-dasharray="3 3"/>'
            elif kind == "point":
                swatch = f'<circle cx="{x + 8}" cy="{y}" r="4" fill="{color}"/>'
            else:
                swatch = f'<rect x="{x}" y="{y - 5}" width="16" height="10" fill="{color}" fill-opacity="0.5"/>'
            out.append(f'{swatch}<text class="legend" x="{x + 20}" y="{y + 4}">{escape(label)}</text>')
            x += width
        return out, (row + 1 if items else 0)


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _padded(values: list[float], share: float) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high == low:
        return low - 1, high + 1
    pad = (high - low) * share
    return low - pad, high + pad


def _path_points(points: list[tuple[float, float]], step: bool, reverse: bool = False) -> list[tuple[float, float]]:
    """The points of a line; a step line holds each value until the next x."""
    if not step or len(points) < 2:
        return points
    out = [points[0]]
    for (_, y_prev), (x, y) in zip(points, points[1:], strict=False):
        out += [(x, y_prev), (x, y)] if not reverse else [(x, y_prev), (x, y)]
    return out


def histogram(values: Sequence[float], bins: int, low: float, high: float) -> tuple[list[float], list[int], float]:
    """(bin centres, counts, bin width) of ``values`` on ``[low, high]``."""
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        if value is None or not math.isfinite(value):
            continue
        index = min(max(int((value - low) / width), 0), bins - 1)
        counts[index] += 1
    return [low + width * (i + 0.5) for i in range(bins)], counts, width
