"""Pure parts of the survival pipeline: payloads, sizes, skip rule, output rows."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from learning_analytics.pipeline import RunContext
from learning_analytics.pipelines.survival import (
    COVARIATES,
    MIN_EVENTS,
    active_risk_rows,
    baseline_days,
    fit_meta_row,
    fit_payload,
    fit_rows,
    kpi_rows,
    kpi_week,
    observation_sizes,
    predict_payload,
    risk_rows,
    score_rows,
    skip_reason,
)
from learning_analytics.settings import SurvivalSettings
from learning_analytics.windows import daily_window

RUN_DATE = date(2026, 11, 25)  # a Wednesday
SETTINGS = SurvivalSettings.from_env({})
RUN = RunContext(
    window=daily_window(RUN_DATE, 90),
    settings=SETTINGS,
    dag_id="fit_survival_churn",
    run_id="test",
)


def observations() -> pd.DataFrame:
    """Extract-shaped rows: three fit rows of different statuses and two score rows."""
    covariates = {name: [0.1 * (index + 1) + row for row in range(5)] for index, name in enumerate(COVARIATES)}
    return pd.DataFrame(
        {
            "role": ["fit", "fit", "fit", "score", "score"],
            "user_id": [1, 2, 3, 1, 4],
            "status": ["at_risk", "at_risk", "churned_in_baseline", "active", "active"],
            "last_active_day": [date(2026, 11, 20), date(2026, 10, 1), date(2026, 9, 1)] + [date(2026, 11, 20)] * 2,
            "time_days": [40.0, 12.0, None, None, None],
            "event": [0, 1, 0, None, None],
            **covariates,
        }
    )


def test_settings_defaults_and_schedule_are_the_specs() -> None:
    assert SurvivalSettings.schedule == "0 5 * * *"
    assert SETTINGS.as_dict() == {
        "SURVIVAL_LOOKBACK_DAYS": 90,
        "SURVIVAL_EVENT_THRESHOLD_DAYS": 14,
        "SURVIVAL_UPDATE_KPI": True,
        "SURVIVAL_HORIZON_DAYS": 14,
    }


def test_baseline_is_never_shorter_than_the_event_threshold() -> None:
    assert baseline_days(SETTINGS) == 28
    assert baseline_days(SurvivalSettings.from_params({"SURVIVAL_EVENT_THRESHOLD_DAYS": 35}, {})) == 35


def test_roles_split_fitted_and_scored_students() -> None:
    frame = observations()
    assert fit_rows(frame)["user_id"].tolist() == [1, 2]
    assert score_rows(frame)["user_id"].tolist() == [1, 4]
    assert observation_sizes(frame) == {
        "n_students": 3,
        "n_at_risk": 2,
        "n_churned_in_baseline": 1,
        "n_short_follow_up": 0,
        "n_events": 1,
        "n_active": 2,
    }


def test_too_few_events_skip_the_fit() -> None:
    sizes = {"n_at_risk": 300, "n_events": MIN_EVENTS - 1}
    assert "too few churn events" in skip_reason(sizes, RUN.window)
    assert skip_reason({**sizes, "n_events": MIN_EVENTS}, RUN.window) is None


def test_fit_payload_is_the_contract() -> None:
    payload = fit_payload(fit_rows(observations()), horizon_days=14)
    assert payload["covariates"] == list(COVARIATES)
    assert payload["horizon_days"] == 14
    data = payload["data"]
    assert list(data) == ["user_id", "time", "event", *COVARIATES]
    assert data["user_id"] == [1, 2] and data["time"] == [40.0, 12.0] and data["event"] == [0, 1]
    assert all(isinstance(value, int) for value in data["event"])
    json.dumps(payload, allow_nan=False)


def test_predict_payload_sends_covariates_of_the_active_students() -> None:
    payload = predict_payload("survival-1", score_rows(observations()), horizon_days=7)
    assert payload["model_id"] == "survival-1" and payload["horizon_days"] == 7
    assert list(payload["data"]) == ["user_id", *COVARIATES]
    assert payload["data"]["user_id"] == [1, 4]


def fit_result() -> dict:
    return {
        "fit_rows": {"user_id": [1, 2], "time_days": [40.0, 12.0], "event": [0, 1]},
        "score_rows": {
            "user_id": [4, 1],
            "last_active_day": ["2026-11-20", "2026-11-19"],
            **{name: [0.5, 0.25] for name in COVARIATES},
        },
        "fit": {
            "model_id": "survival-1",
            "coefficients": [
                {
                    "term": "accuracy",
                    "coef": -4.0,
                    "hazard_ratio": 0.018,
                    "se": 1.0,
                    "p_value": 0.01,
                }
            ],
            "concordance": 0.7,
            "n": 2,
            "n_events": 1,
            "ph_test": {
                "term": ["accuracy", "GLOBAL"],
                "chisq": [0.1, 0.1],
                "df": [1, 1],
                "p_value": [0.7, 0.7],
            },
            "risk": {
                "user_id": [2, 1],
                "risk_score": [0.3, -0.3],
                "p_event": [0.2, 0.1],
            },
            "warnings": ["w1"],
        },
        "prediction": {
            "user_id": [1, 4],
            "risk_score": [0.1, 0.2],
            "p_event": [0.05, 0.06],
            "warnings": [],
        },
    }


def test_risk_rows_join_the_fit_risk_to_times_and_events() -> None:
    rows = risk_rows(fit_result(), RUN_DATE)
    assert rows.to_dict("records") == [
        {
            "run_date": RUN_DATE,
            "user_id": 1,
            "time_days": 40.0,
            "event": 0,
            "risk_score": -0.3,
            "p_event": 0.1,
        },
        {
            "run_date": RUN_DATE,
            "user_id": 2,
            "time_days": 12.0,
            "event": 1,
            "risk_score": 0.3,
            "p_event": 0.2,
        },
    ]


def test_risk_rows_refuse_an_incomplete_answer() -> None:
    result = fit_result()
    result["fit"]["risk"] = {"user_id": [2], "risk_score": [0.3], "p_event": [0.2]}
    with pytest.raises(ValueError, match="lacks 1 of the 2"):
        risk_rows(result, RUN_DATE)


def test_active_risk_rows_match_predictions_by_student_and_keep_covariates() -> None:
    rows = active_risk_rows(fit_result(), RUN_DATE).set_index("user_id")
    assert rows.loc[1, "p_event"] == 0.05 and rows.loc[4, "p_event"] == 0.06
    assert rows.loc[4, "last_active_day"] == date(2026, 11, 20)
    assert rows.loc[1, "covariates"] == {name: 0.25 for name in COVARIATES}


def test_s_goes_to_the_week_of_the_day_before_the_logical_date() -> None:
    assert kpi_week(date(2026, 11, 25)) == date(2026, 11, 23)  # Wednesday: this week
    assert kpi_week(date(2026, 11, 23)) == date(2026, 11, 16)  # Monday: the week just finished
    rows = kpi_rows(active_risk_rows(fit_result(), RUN_DATE), RUN_DATE)
    assert list(rows.columns) == ["user_id", "week_start", "s", "s_run_date"]
    assert set(rows["week_start"]) == {date(2026, 11, 23)} and set(rows["s_run_date"]) == {RUN_DATE}


def test_meta_row_of_a_fit_and_of_a_skipped_run() -> None:
    sizes = {"n_at_risk": 2, "n_events": 1}
    meta = fit_meta_row(fit_result(), sizes, None, RUN)
    assert meta["status"] == "ok" and meta["model_id"] == "survival-1" and meta["concordance"] == 0.7
    assert json.loads(meta["coefficients"])[0]["hazard_ratio"] == 0.018
    assert json.loads(meta["ph_test"])["term"] == ["accuracy", "GLOBAL"]
    assert json.loads(meta["warnings"]) == ["w1"]
    settings = json.loads(meta["settings"])
    assert settings["SURVIVAL_EVENT_THRESHOLD_DAYS"] == 14 and settings["baseline_days"] == 28
    assert meta["covariates"] == list(COVARIATES)

    skipped = fit_meta_row(None, sizes, "too few churn events", RUN)
    assert skipped["status"] == "skipped" and skipped["message"] == "too few churn events"
    assert "model_id" not in skipped and skipped["n"] == 2 and skipped["n_events"] == 1
