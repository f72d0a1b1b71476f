"""The Learning analytics pages: HTML with server-rendered SVG charts.

Each ``*_page`` function takes the request's query values and a :class:`Reader`
and returns a :class:`Page` (what the layout template shows). A run date without
results, an unknown student or a malformed value gives a page with an explanatory
message (HTTP 200), never an error page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from learning_analytics.ui.data import Z_95, Reader, jsonb, kaplan_meier, parse_date, parse_int, risk_groups
from learning_analytics.ui.svg import ALERT, PALETTE, Chart, histogram

NAV = (
    ("growth", "Growth"),
    ("prophet", "Prophet"),
    ("survival", "Survival"),
    ("cluster", "Segments"),
    ("scoreboard", "Scoreboard"),
)
DAG_OF_PAGE = {
    "growth": "fit_bayesian_growth",
    "prophet": "forecast_prophet",
    "survival": "fit_survival_churn",
    "cluster": "cluster_segments",
    "scoreboard": "evaluate_models",
}
MEMBER_LIMIT = 200
ANOMALY_LIMIT = 50


@dataclass
class Page:
    page: str
    title: str
    run_dates: list[date] | None = None
    run_date: date | None = None
    user_id: int | None = None
    messages: list[str] = field(default_factory=list)
    sections: list[Markup] = field(default_factory=list)
    student_search: bool = False
    keep: list[tuple[str, Any]] = field(default_factory=list)
    date_label: str = "run date"


# -- small HTML helpers -------------------------------------------------------------


def section(title: str, *parts: Markup | str, css_id: str = "") -> Markup:
    body = Markup("").join(Markup(f'<div class="card">{part}</div>') for part in parts)
    ident = Markup(f' id="{escape(css_id)}"') if css_id else Markup("")
    return Markup(f'<section{ident}><h2>{escape(title)}</h2><div class="grid">{body}</div></section>')


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], css_id: str = "") -> Markup:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell_html(v)}</td>" for v in row) + "</tr>" for row in rows)
    ident = f' id="{escape(css_id)}"' if css_id else ""
    return Markup(f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def cell_html(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Markup("&ndash;")
    if isinstance(value, float):
        return Markup(f"{value:.3f}")
    return escape(str(value))


def link(base: str, path: str, text: Any, **query: Any) -> Markup:
    query_string = "&".join(f"{k}={escape(str(v))}" for k, v in query.items() if v is not None)
    return Markup(f'<a href="{base}/{path}{"?" + query_string if query_string else ""}">{escape(str(text))}</a>')


def facts(**items: Any) -> Markup:
    return Markup(
        '<p class="facts">' + " · ".join(f"{escape(k.replace('_', ' '))}: {cell_html(v)}" for k, v in items.items())
        + "</p>"
    )  # fmt: skip


# -- run date choice ----------------------------------------------------------------


def choose_run(page: Page, dates: list[date], requested: str | None, what: str) -> date | None:
    """The run to show: the requested date if it has results, else the latest one.

    Returns None (with a message on the page) when there is nothing to show.
    """
    page.run_dates = dates
    if requested:
        wanted = parse_date(requested)
        if wanted is None:
            page.messages.append(f"'{requested}' is not a date (YYYY-MM-DD).")
            page.run_date = None
            return None
        page.run_date = wanted
        if wanted not in dates:
            latest = f" The latest run with results is {dates[0]}." if dates else ""
            page.messages.append(f"No {what} results for run date {wanted}.{latest}")
            return None
        return wanted
    if not dates:
        page.messages.append(f"No {what} results yet: run the {DAG_OF_PAGE[page.page]} DAG (its results appear here).")
        return None
    page.run_date = dates[0]
    return dates[0]


def choose_student(page: Page, reader: Reader, requested: str | None) -> int | None:
    """The requested student if they exist; otherwise None with a message."""
    if not requested:
        return None
    user_id = parse_int(requested)
    if user_id is None:
        page.messages.append(f"'{requested}' is not a student id (a whole number).")
        return None
    page.user_id = user_id
    if reader.frame("student", user_id=user_id).empty:
        page.messages.append(f"Student {user_id} is not in the warehouse.")
        return None
    return user_id


def week_date(window_start: date, week: float) -> date:
    return window_start + timedelta(days=round(7 * week))


# -- growth ---------------------------------------------------------------------------


def growth_page(reader: Reader, base: str, run_date: str | None, user_id: str | None) -> Page:
    page = Page("growth", "Growth: accuracy trajectories and P(goal)", student_search=True)
    runs = reader.frame("growth_runs")
    chosen = choose_run(page, sorted(runs["run_date"], reverse=True) if not runs.empty else [], run_date, "growth")
    student = choose_student(page, reader, user_id)
    if chosen is None:
        return page
    run = runs[runs["run_date"] == chosen].iloc[0]
    trend = Chart("Population slope per run (accuracy change per week, 95% interval)", "run date", "slope",
                  x_dates=True)  # fmt: skip
    ok = runs[runs["slope"].notna()]
    if not ok.empty:
        trend.errorbars(list(ok["run_date"]), list(ok["slope_lower"]), list(ok["slope_upper"]), "95% interval",
                        color=PALETTE[4])  # fmt: skip
        trend.line(list(ok["run_date"]), list(ok["slope"]), "population slope", markers=True, color=PALETTE[0])
        trend.hline(0.0, "no change")
    charts = [Markup(trend.render())]
    effects = {e["term"]: e for e in jsonb(run["fixed_effects"]) or []}
    if "Intercept" in effects and "week" in effects:
        charts.append(Markup(population_trajectory(run, effects).render()))
    page.sections.append(
        section(
            "Population trend",
            Markup(
                facts(
                    status=run["status"],
                    students=run["n_users"],
                    observations=run["n_obs"],
                    shards=run["n_shards"],
                    max_rhat=run["rhat_max"],
                    divergences=run["divergences"],
                    window=f"{run['window_start']} .. {run['window_end']}",
                )
                + Markup("").join(charts)
            ),
        )  # fmt: skip
    )
    users = reader.frame("growth_users", run_date=chosen)
    if users.empty:
        page.messages.append(f"The growth run of {chosen} has no per-student results ({run['status']}: "
                             f"{run['message'] or 'no message'}).")  # fmt: skip
    else:
        centres, counts, width = histogram(list(users["p_goal"].dropna()), 20, 0.0, 1.0)
        dist = Chart(f"Distribution of P(goal), {len(users)} students", "P(goal)", "students")
        dist.bars(centres, counts, "students", width=width)
        lowest = users.sort_values(["p_goal", "user_id"]).head(15)
        page.sections.append(
            section(
                "P(goal) across students",
                Markup(dist.render()),
                Markup("<h3>Lowest P(goal)</h3>")
                + table(
                    ["student", "P(goal)", "goal", "predicted at target", "converged shard"],
                    [
                        (
                            link(base, "growth", r.user_id, run_date=chosen, user_id=r.user_id),
                            r.p_goal,
                            r.goal,
                            r.mean,
                            "yes" if r.shard_converged else "no",
                        )
                        for r in lowest.itertuples()
                    ],  # fmt: skip
                    css_id="lowest-p",
                ),
            )
        )
    if student is not None:
        page.sections.append(growth_student(reader, run, users, student))
    elif not page.user_id:
        page.messages.append("Pick a student (search above, or a link in the table) to see their trajectory.")
    return page


def population_trajectory(run: pd.Series, effects: dict[str, dict[str, Any]]) -> Chart:
    """Expected accuracy of the average student across the window (and its slope interval)."""
    weeks = [w / 2 for w in range(0, 2 * max(int((run["window_end"] - run["window_start"]).days / 7), 1))]
    logistic = run["family"] == "binomial"

    def curve(slope: float) -> list[float]:
        values = [effects["Intercept"]["estimate"] + slope * w for w in weeks]
        return [1 / (1 + math.exp(-v)) for v in values] if logistic else values

    dates = [week_date(run["window_start"], w) for w in weeks]
    chart = Chart(f"Average student's expected accuracy, run {run['run_date']}", "week", "accuracy", x_dates=True)
    chart.band(dates, curve(effects["week"]["lower"]), curve(effects["week"]["upper"]), "slope 95% interval")
    chart.line(dates, curve(effects["week"]["estimate"]), "population trend", color=PALETTE[0])
    return chart


def growth_student(reader: Reader, run: pd.Series, users: pd.DataFrame, user_id: int) -> Markup:
    row = users[users["user_id"] == user_id]
    if row.empty:
        return section(
            f"Student {user_id}",
            Markup(f'<p class="empty" role="status">Student {user_id} has no growth result in the run of '
                   f'{run["run_date"]} (too few attempts in its window).</p>'),
        )  # fmt: skip
    result = row.iloc[0]
    weeks = reader.frame("student_weeks", user_id=user_id, until=run["window_end"])
    weeks = weeks[weeks["week_start"] >= run["window_start"]]
    target = week_date(run["window_start"], result["target_week"])
    chart = Chart(f"Student {user_id}: weekly accuracy, fitted trend and goal (P(goal) = {result['p_goal']:.2f})",
                  "week", "accuracy", x_dates=True, y_range=(0, 1))  # fmt: skip
    chart.points(list(weeks["week_start"]), list(weeks["accuracy"]), "weekly accuracy", color=PALETTE[0],
                 titles=[f"{w}: {a:.2f} ({n} attempts)" if a == a else f"{w}: no attempts"
                         for w, a, n in zip(weeks["week_start"], weeks["accuracy"], weeks["n_attempts"],
                                            strict=True)])  # fmt: skip
    chart.line([run["window_start"], target],
               [result["intercept"], result["intercept"] + result["slope"] * result["target_week"]],
               "fitted trend", color=PALETTE[1])  # fmt: skip
    chart.line([target, target], [result["lower"], result["upper"]], "95% interval at target week", color=PALETTE[2])
    chart.points([target], [result["mean"]], "expected at target week", color=PALETTE[2])
    chart.hline(float(result["goal"]), f"goal {result['goal']:.2f}", color=ALERT)
    return section(
        f"Student {user_id}",
        Markup(facts(P_goal=result["p_goal"], goal=result["goal"], target_week=target,
                     expected_at_target=result["mean"], slope_per_week=result["slope"])
               + Markup(chart.render())),
        css_id="student",
    )  # fmt: skip


# -- prophet --------------------------------------------------------------------------


def prophet_page(reader: Reader, base: str, run_date: str | None, user_id: str | None) -> Page:
    page = Page("prophet", "Prophet: learning index forecast and anomalies", student_search=True)
    dates = reader.run_dates()["prophet"]
    chosen = choose_run(page, dates, run_date, "prophet")
    student = choose_student(page, reader, user_id)
    if chosen is None:
        return page
    status = reader.frame("prophet_run", run_date=chosen)
    page.sections.append(
        Markup(facts(**{f"series {s}": n for s, n in zip(status["status"], status["n"], strict=True)}))
    )
    anomalies = reader.frame("prophet_anomalies", run_date=chosen, limit=ANOMALY_LIMIT)
    if student is None and not user_id and not anomalies.empty:
        student = int(anomalies["user_id"].iloc[0])  # nobody asked for: the strongest flagged week's student
    if student is not None:
        page.sections.append(prophet_student(reader, chosen, student))
    if anomalies.empty:
        page.sections.append(section("Flagged weeks", Markup('<p class="empty" role="status">No week was flagged '
                                                             f"as anomalous in the run of {chosen}.</p>")))  # fmt: skip
    else:
        page.sections.append(
            section(
                f"Flagged weeks of the run of {chosen} (strongest {ANOMALY_LIMIT})",
                table(
                    ["student", "week", "I_t observed", "I_t expected", "score"],
                    [
                        (
                            link(base, "prophet", r.user_id, run_date=chosen, user_id=r.user_id),
                            r.week_start,
                            r.y,
                            r.yhat,
                            r.score,
                        )
                        for r in anomalies.itertuples()
                    ],  # fmt: skip
                    css_id="anomalies",
                ),
            )
        )
    return page


def prophet_student(reader: Reader, run_date: date, user_id: int) -> Markup:
    results = reader.frame("prophet_student", run_date=run_date, user_id=user_id)
    forecast = results[results["kind"] == "forecast"]
    anomalies = results[results["kind"] == "anomaly"]
    until = max([run_date, *forecast["week_start"]]) + timedelta(days=7)
    weeks = reader.frame("student_weeks", user_id=user_id, until=until)
    if weeks.empty and results.empty:
        return section(f"Student {user_id}", Markup(f'<p class="empty" role="status">Student {user_id} has no '
                                                    "weekly KPI rows and no prophet result.</p>"))  # fmt: skip
    chart = Chart(f"Student {user_id}: learning index I_t, forecast and flagged weeks", "week", "I_t", x_dates=True)
    if not forecast.empty:
        chart.band(list(forecast["week_start"]), list(forecast["lower"]), list(forecast["upper"]), "forecast interval")
        chart.line(list(forecast["week_start"]), list(forecast["value"]), "forecast", dashed=True, color=PALETTE[1])
    before = weeks[weeks["week_start"] < run_date]
    chart.line(list(before["week_start"]), list(before["i_t"]), "I_t observed", markers=True, color=PALETTE[0])
    after = weeks[weeks["week_start"] >= run_date]
    if not after.empty:  # weeks that have happened since the run: how the forecast did
        chart.line(list(after["week_start"]), list(after["i_t"]), "I_t after the run", markers=True, color="#777")
    if not anomalies.empty:
        chart.points(list(anomalies["week_start"]), list(anomalies["value"]), "flagged week", color=ALERT, radius=6,
                     css_class="anomaly",
                     titles=[f"{w}: I_t {y:.1f}, expected {e:.1f}, score {s:.1f}" for w, y, e, s in
                             zip(anomalies["week_start"], anomalies["value"], anomalies["lower"], anomalies["score"],
                                 strict=True)])  # fmt: skip
    chart.vline(run_date, "run date")
    activity = Chart(f"Student {user_id}: attempts per week", "week", "attempts", x_dates=True, height=180)
    activity.bars(list(weeks["week_start"]), list(weeks["n_attempts"]), "attempts", width=5)
    activity.vline(run_date, "run date")
    table_html = table(
        ["flagged week", "I_t observed", "I_t expected", "score"],
        [(r.week_start, r.value, r.lower, r.score) for r in anomalies.itertuples()],
        css_id="student-anomalies",
    ) if not anomalies.empty else Markup("<p>No flagged week for this student in this run.</p>")  # fmt: skip
    if forecast.empty:
        table_html += Markup("<p>No forecast for this student in this run (too little activity to fit).</p>")
    return section(f"Student {user_id}", Markup(chart.render()), Markup(activity.render()), table_html,
                   css_id="student")  # fmt: skip


# -- survival -------------------------------------------------------------------------


def survival_page(reader: Reader, base: str, run_date: str | None) -> Page:
    page = Page("survival", "Survival: churn risk")
    dates = reader.run_dates()["survival"]
    chosen = choose_run(page, dates, run_date, "survival")
    if chosen is None:
        return page
    fit = reader.frame("survival_fit", run_date=chosen).iloc[0]
    page.sections.append(Markup(facts(status=fit["status"], students=fit["n"], events=fit["n_events"],
                                      concordance=fit["concordance"], horizon_days=fit["horizon_days"],
                                      window=f"{fit['window_start']} .. {fit['window_end']}")))  # fmt: skip
    coefficients = jsonb(fit["coefficients"]) or []
    if fit["status"] != "ok" or not coefficients:
        page.messages.append(f"The survival run of {chosen} fitted no model: {fit['message'] or fit['status']}.")
        return page
    rows = [
        (c["term"], c["hazard_ratio"], math.exp(c["coef"] - Z_95 * c["se"]), math.exp(c["coef"] + Z_95 * c["se"]))
        for c in coefficients
    ]
    forest = Chart("Hazard ratios with 95% intervals (log scale; > 1 = churns sooner)", "hazard ratio", "",
                   log_x=True, height=70 + 32 * len(rows), margin_left=190, y_rows=[r[0] for r in rows])  # fmt: skip
    forest.intervals(rows, "hazard ratio")
    forest.vline(1.0, "no effect")
    forest_svg = Markup(forest.render())
    risks = reader.frame("survival_risk", run_date=chosen)
    km = Chart("Kaplan-Meier: share still active by risk group (fitted students)", "days", "still active",
               y_range=(0, 1.02))  # fmt: skip
    for index, (name, group) in enumerate(risk_groups(risks)):
        curve = kaplan_meier(list(group["time_days"]), list(group["event"]), name)
        color = (PALETTE[2], PALETTE[1], ALERT)[index % 3]
        km.band(curve.times, curve.lower, curve.upper, f"{name} 95%", color=color, step=True)
        km.line(curve.times, curve.survival, f"{name} (n={curve.n}, {curve.events} events)", color=color, step=True)
    active = reader.frame("survival_active_risk", run_date=chosen)
    # Risks are mostly small: bins up to the largest risk (rounded up to a tenth) keep them readable.
    top = min(1.0, math.ceil(max(active["p_event"].max() if not active.empty else 1.0, 0.01) * 10) / 10)
    centres, counts, width = histogram(list(active["p_event"]), 20, 0.0, top)
    dist = Chart(f"Churn risk of the {len(active)} active students", f"P(churn within {fit['horizon_days']} days)",
                 "students")  # fmt: skip
    dist.bars(centres, counts, "students", width=width)
    page.sections.append(section("Model", forest_svg, Markup(km.render())))
    page.sections.append(
        section(
            "Active students",
            Markup(dist.render()),
            Markup("<h3>Highest risk</h3>")
            + table(
                ["student", "P(churn)", "risk score", "last active"],
                [
                    (link(base, "student", r.user_id, user_id=r.user_id), r.p_event, r.risk_score, r.last_active_day)
                    for r in active.head(15).itertuples()
                ],  # fmt: skip
                css_id="highest-risk",
            ),
        )
    )
    return page


# -- cluster --------------------------------------------------------------------------


def cluster_page(reader: Reader, base: str, run_date: str | None, segment: str | None) -> Page:
    page = Page("cluster", "Segments: behavioural clusters")
    segments = reader.frame("segments")
    dates = sorted(set(segments["run_date"]), reverse=True) if not segments.empty else []
    chosen = choose_run(page, dates, run_date, "segment")
    if chosen is None:
        return page
    run = segments[segments["run_date"] == chosen]
    page.sections.append(Markup(facts(segments=len(run), students=int(run["size"].sum()),
                                      silhouette=run["silhouette"].iloc[0])))  # fmt: skip
    sizes = Chart("Segment sizes over runs", "run date", "students", x_categories=[str(d) for d in sorted(dates)])
    for index, (seg, rows) in enumerate(segments.groupby("segment")):
        sizes.line([str(d) for d in rows["run_date"]], list(rows["size"]), f"segment {seg}", markers=True,
                   color=PALETTE[index % len(PALETTE)])  # fmt: skip
    features = sorted({name for z in run["center_z"] for name in (jsonb(z) or {})})
    profiles = Chart(f"Segment profiles of the run of {chosen} (feature z-scores)", "", "z-score",
                     x_categories=features, height=300, width=max(720, 130 * len(features)))  # fmt: skip
    profiles.hline(0.0, "population mean")
    for index, r in enumerate(run.itertuples()):
        z = jsonb(r.center_z) or {}
        profiles.line(features, [z.get(f) for f in features], f"segment {r.segment}", markers=True,
                      color=PALETTE[index % len(PALETTE)])  # fmt: skip
    page.sections.append(section("Segments", Markup(sizes.render()), Markup(profiles.render())))
    page.sections.append(
        section(
            "Profiles",
            table(
                ["segment", "students", "profile", "members"],
                [
                    (
                        r.segment,
                        r.size,
                        r.profile,
                        link(base, "cluster", "show members", run_date=chosen, segment=r.segment),
                    )
                    for r in run.itertuples()
                ],
                css_id="segments",
            ),
        )  # fmt: skip
    )
    wanted = parse_int(segment) if segment else int(run["segment"].iloc[0])
    if wanted not in set(run["segment"]):
        page.messages.append(f"The run of {chosen} has no segment {segment}.")
        return page
    page.keep.append(("segment", wanted))
    members = reader.frame("segment_members", run_date=chosen, segment=wanted, limit=MEMBER_LIMIT)
    size = int(run.loc[run["segment"] == wanted, "size"].iloc[0])
    page.sections.append(
        section(
            f"Members of segment {wanted} ({size} students; closest {min(size, MEMBER_LIMIT)} to the centre shown)",
            Markup('<div id="members" class="chips">')
            + Markup(" ").join(
                Markup(f'<span title="distance to the centre: {r.distance:.2f} SD">')
                + link(base, "student", r.user_id, user_id=r.user_id)
                + Markup("</span>")
                for r in members.itertuples()
            )
            + Markup("</div>"),
        )
    )
    return page


# -- scoreboard -----------------------------------------------------------------------


def scoreboard_page(reader: Reader, base: str, run_date: str | None) -> Page:
    page = Page("scoreboard", "Scoreboard: models vs baselines", date_label="evaluated on")
    dates = reader.run_dates()["scoreboard"]
    chosen = choose_run(page, dates, run_date, "evaluation")
    if chosen is None:
        return page
    rows = reader.frame("scoreboard", evaluated_for=chosen)
    for model, by_model in rows.groupby("model", sort=False):
        charts = []
        run_dates = [str(d) for d in sorted(set(by_model["run_date"]))]
        for metric, by_metric in by_model.groupby("metric", sort=False):
            chart = Chart(f"{model}: {metric}", "model run date", metric, x_categories=run_dates, width=360,
                          height=220)  # fmt: skip
            for index, (horizon, series) in enumerate(by_metric.groupby("horizon", sort=False)):
                color = PALETTE[index % len(PALETTE)]
                xs = [str(d) for d in series["run_date"]]
                chart.line(xs, list(series["value"]), f"model {horizon}", markers=True, color=color)
                if series["baseline_value"].notna().any():
                    chart.line(xs, list(series["baseline_value"]), f"{series['baseline'].iloc[0]} {horizon}",
                               markers=True, dashed=True, color=color)  # fmt: skip
            charts.append(Markup(chart.render()))
        page.sections.append(section(f"{model}", *charts, css_id=f"score-{model}"))
    page.sections.append(
        section(
            "All scores",
            table(
                ["model", "run date", "horizon", "metric", "value", "baseline", "baseline value", "n", "note"],
                [
                    (r.model, r.run_date, r.horizon, r.metric, r.value, r.baseline, r.baseline_value, r.n, r.note)
                    for r in rows.itertuples()
                ],
                css_id="scores",
            ),
        )  # fmt: skip
    )
    return page


# -- student search and index ---------------------------------------------------------


def student_page(reader: Reader, base: str, user_id: str | None) -> Page:
    page = Page("student", "Student")
    if not user_id:
        page.messages.append("Enter a student id in the search box.")
        return page
    student = choose_student(page, reader, user_id)
    if student is None:
        return page
    page.title = f"Student {student}"
    summary = reader.frame("student_summary", user_id=student)
    if summary.empty:
        page.messages.append(f"No model has a result for student {student} in its latest run.")
    targets = {"growth": "growth", "prophet": "prophet", "survival": "survival", "cluster": "cluster"}
    page.sections.append(
        section(
            "Latest results",
            table(
                ["model", "run date", "result", "details"],
                [
                    (
                        r.model,
                        r.run_date,
                        r.result,
                        link(
                            base,
                            targets[r.model],
                            "open",
                            run_date=r.run_date,
                            user_id=student if r.model in ("growth", "prophet") else None,
                        ),
                    )
                    for r in summary.itertuples()
                ],
                css_id="summary",
            ),
        )  # fmt: skip
    )
    return page


def index_page(reader: Reader, base: str) -> Page:
    page = Page("index", "Learning analytics")
    dates = reader.run_dates()
    page.sections.append(
        section(
            "Pages",
            table(
                ["page", "latest run", "runs with results"],
                [(link(base, name, label), (dates[name] or [None])[0], len(dates[name])) for name, label in NAV],
                css_id="pages",
            ),
        )  # fmt: skip
    )
    return page


PAGE_RENDERERS: dict[str, Callable[..., Page]] = {
    "growth": growth_page,
    "prophet": prophet_page,
    "survival": survival_page,
    "cluster": cluster_page,
    "scoreboard": scoreboard_page,
}
