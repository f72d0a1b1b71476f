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
    MONOTONE,
    active_risk_rows,
    baseline_days,
    churned_rows,
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
    """Extract-shaped rows: three fit rows (student 1 at two landmarks), two scored, one churned."""
    covariates = {name: [0.1 * (index + 1) + row for row in range(6)] for index, name in enumerate(COVARIATES)}
    return pd.DataFrame(
        {
            "role": ["fit", "fit", "fit", "score", "score", "score"],
            "user_id": [1, 2, 1, 1, 4, 5],
            "status": ["at_risk", "at_risk", "at_risk", "active", "active", "churned"],
            "landmark_day": [date(2026, 11, 10), date(2026, 11, 10), date(2026, 11, 17)] + [date(2026, 11, 24)] * 3,
            "last_active_day": [date(2026, 11, 9), date(2026, 11, 1), date(2026, 11, 17)]
            + [date(2026, 11, 20), date(2026, 11, 20), date(2026, 10, 1)],
            "time_days": [14.0, 12.0, 7.0, None, None, None],
            "event": [0, 1, 0, None, None, None],
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


def test_roles_split_fitted_scored_and_churned_students() -> None:
    frame = observations()
    assert fit_rows(frame)["user_id"].tolist() == [1, 2, 1]
    assert score_rows(frame)["user_id"].tolist() == [1, 4]
    assert churned_rows(frame)["user_id"].tolist() == [5]
    assert observation_sizes(frame) == {
        "n_fit_rows": 3,
        "n_landmarks": 2,
        "n_students": 2,
        "n_events": 1,
        "n_active": 2,
        "n_churned": 1,
    }


def test_too_few_events_skip_the_fit() -> None:
    sizes = {"n_fit_rows": 300, "n_landmarks": 8, "n_events": MIN_EVENTS - 1}
    assert "too few churn events" in skip_reason(sizes, RUN.window)
    assert skip_reason({**sizes, "n_events": MIN_EVENTS}, RUN.window) is None


def test_fit_payload_is_the_contract_with_one_row_per_landmark() -> None:
    payload = fit_payload(fit_rows(observations()), horizon_days=14)
    assert payload["covariates"] == list(COVARIATES)
    assert "days_idle" in payload["covariates"] and payload["monotone"] == list(MONOTONE)
    assert payload["horizon_days"] == 14
    data = payload["data"]
    assert list(data) == ["user_id", "time", "event", *COVARIATES]
    assert data["user_id"] == [1, 2, 1] and data["time"] == [14.0, 12.0, 7.0] and data["event"] == [0, 1, 0]
    assert all(isinstance(value, int) for value in data["event"])
    json.dumps(payload, allow_nan=False)


def test_predict_payload_sends_covariates_of_the_active_students_only() -> None:
    payload = predict_payload("survival-1", score_rows(observations()), horizon_days=7)
    assert payload["model_id"] == "survival-1" and payload["horizon_days"] == 7
    assert list(payload["data"]) == ["user_id", *COVARIATES]
    assert payload["data"]["user_id"] == [1, 4]


def fit_result() -> dict:
    day_row = {
        "status": ["active", "active"],
        "last_active_day": ["2026-11-20", "2026-11-19"],
        **{name: [0.5, 0.25] for name in COVARIATES},
    }
    return {
        "fit_rows": {
            "user_id": [1, 2, 1],
            "landmark_day": ["2026-11-10", "2026-11-10", "2026-11-17"],
            "days_idle": [1, 9, 0],
            "time_days": [14.0, 12.0, 7.0],
            "event": [0, 1, 0],
        },
        "score_rows": {"user_id": [4, 1], **day_row},
        "churned_rows": {
            "user_id": [5],
            "status": ["churned"],
            "last_active_day": ["2026-10-01"],
            **{name: [None] for name in COVARIATES},
            "days_idle": [54],
        },
        "fit": {
            "model_id": "survival-1",
            "coefficients": [{"term": "accuracy", "coef": -4.0, "hazard_ratio": 0.018, "se": 1.0, "p_value": 0.01}],
            "concordance": 0.7,
            "concordance_in_sample": 0.75,
            "n": 3,
            "n_events": 1,
            "ph_test": {"term": ["accuracy", "GLOBAL"], "chisq": [0.1, 0.1], "df": [1, 1], "p_value": [0.7, 0.7]},
            "ph_actions": [{"covariate": "days_idle", "p_value": 0.001, "action": "time_interaction"}],
            "constraints": {"monotone": list(MONOTONE), "fixed_at_zero": ["days_idle.late"]},
            "risk": {"user_id": [1, 2, 1], "risk_score": [-0.3, 0.3, 0.1], "p_event": [0.1, 0.2, 0.15]},
            "warnings": ["w1"],
        },
        "prediction": {"user_id": [1, 4], "risk_score": [0.1, 0.2], "p_event": [0.05, 0.06], "warnings": []},
    }


def test_risk_rows_keep_the_order_of_the_rows_sent() -> None:
    rows = risk_rows(fit_result(), RUN_DATE)
    assert rows[["user_id", "landmark_day", "days_idle", "event", "p_event"]].values.tolist() == [
        [1, date(2026, 11, 10), 1, 0, 0.1],
        [2, date(2026, 11, 10), 9, 1, 0.2],
        [1, date(2026, 11, 17), 0, 0, 0.15],
    ]
    assert set(rows["run_date"]) == {RUN_DATE}


def test_risk_rows_refuse_an_answer_that_does_not_match_the_rows_sent() -> None:
    result = fit_result()
    result["fit"]["risk"] = {"user_id": [2, 1, 1], "risk_score": [0.3, -0.3, 0.1], "p_event": [0.2, 0.1, 0.15]}
    with pytest.raises(ValueError, match="do not match"):
        risk_rows(result, RUN_DATE)


def test_active_risk_rows_score_active_students_and_set_churned_ones_to_one() -> None:
    rows = active_risk_rows(fit_result(), RUN_DATE).set_index("user_id")
    assert rows.loc[1, "p_event"] == 0.05 and rows.loc[4, "p_event"] == 0.06
    assert rows.loc[4, "last_active_day"] == date(2026, 11, 20)
    assert rows.loc[1, "covariates"] == {name: 0.25 for name in COVARIATES}
    assert rows.loc[5, "status"] == "churned" and rows.loc[5, "p_event"] == 1.0
    assert rows.loc[5, "risk_score"] is None and rows.loc[5, "days_idle"] == 54
    assert rows.loc[5, "covariates"] == {**{name: None for name in COVARIATES}, "days_idle": 54}
    json.dumps(rows.loc[5, "covariates"], allow_nan=False)


def test_s_goes_to_the_week_of_the_day_before_the_logical_date() -> None:
    assert kpi_week(date(2026, 11, 25)) == date(2026, 11, 23)  # Wednesday: this week
    assert kpi_week(date(2026, 11, 23)) == date(2026, 11, 16)  # Monday: the week just finished
    rows = kpi_rows(active_risk_rows(fit_result(), RUN_DATE), RUN_DATE)
    assert list(rows.columns) == ["user_id", "week_start", "s", "s_run_date"]
    assert set(rows["week_start"]) == {date(2026, 11, 23)} and set(rows["s_run_date"]) == {RUN_DATE}
    assert dict(zip(rows["user_id"], rows["s"], strict=True)) == {4: 0.06, 1: 0.05, 5: 1.0}


def test_meta_row_of_a_fit_and_of_a_skipped_run() -> None:
    sizes = {"n_fit_rows": 3, "n_events": 1}
    meta = fit_meta_row(fit_result(), sizes, None, RUN)
    assert meta["status"] == "ok" and meta["model_id"] == "survival-1"
    assert meta["concordance"] == 0.7 and meta["concordance_in_sample"] == 0.75
    assert json.loads(meta["coefficients"])[0]["hazard_ratio"] == 0.018
    assert json.loads(meta["ph_test"])["term"] == ["accuracy", "GLOBAL"]
    assert json.loads(meta["ph_actions"])[0]["covariate"] == "days_idle"
    assert json.loads(meta["constraints"])["fixed_at_zero"] == ["days_idle.late"]
    assert json.loads(meta["warnings"]) == ["w1"]
    settings = json.loads(meta["settings"])
    assert settings["SURVIVAL_EVENT_THRESHOLD_DAYS"] == 14 and settings["baseline_days"] == 28
    assert settings["LA_TIMEZONE"] == RUN.window.timezone
    assert meta["covariates"] == list(COVARIATES)

    skipped = fit_meta_row(None, sizes, "too few churn events", RUN)
    assert skipped["status"] == "skipped" and skipped["message"] == "too few churn events"
    assert "model_id" not in skipped and skipped["n"] == 3 and skipped["n_events"] == 1
