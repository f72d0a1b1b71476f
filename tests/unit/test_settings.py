"""Typed settings: spec defaults, env overrides, Param overrides, clear errors."""

from __future__ import annotations

import pytest

from learning_analytics.settings import (
    ALL_SETTINGS,
    ClusterSettings,
    GrowthSettings,
    KpiSettings,
    ProphetSettings,
    SurvivalSettings,
)

# The product specification's table, verbatim.
SPEC_DEFAULTS = {
    GrowthSettings: {"LOOKBACK_WEEKS": 8, "BRMS_ITER": 1000, "BRMS_CHAINS": 2, "BRMS_FAMILY": "gaussian",
                     "METRICS_USE_BAYESIAN": False},
    ProphetSettings: {"PROPHET_LOOKBACK_WEEKS": 12, "PROPHET_FORECAST_WEEKS": 4, "PROPHET_ANOMALY_THRESHOLD": 2.5},
    SurvivalSettings: {"SURVIVAL_LOOKBACK_DAYS": 90, "SURVIVAL_EVENT_THRESHOLD_DAYS": 14, "SURVIVAL_UPDATE_KPI": True},
    ClusterSettings: {"CLUSTER_LOOKBACK_WEEKS": 12, "CLUSTER_N_CLUSTERS": "", "CLUSTER_METHOD": "kmeans"},
}  # fmt: skip


@pytest.mark.parametrize("settings_cls", list(SPEC_DEFAULTS), ids=lambda cls: cls.dag_id)
def test_defaults_are_the_specs(settings_cls) -> None:
    values = settings_cls.from_env({}).as_dict()
    for name, expected in SPEC_DEFAULTS[settings_cls].items():
        assert values[name] == expected, name
        assert type(values[name]) is type(expected), name


def test_environment_overrides_defaults_with_types() -> None:
    settings = GrowthSettings.from_env(
        {"LOOKBACK_WEEKS": "12", "METRICS_USE_BAYESIAN": "true", "BRMS_FAMILY": "binomial"}
    )
    assert settings.lookback_weeks == 12
    assert settings.metrics_use_bayesian is True
    assert settings.family == "binomial"


def test_params_default_to_the_environment_and_override_per_run() -> None:
    environ = {"LOOKBACK_WEEKS": "12"}
    params = GrowthSettings.params(environ)
    assert params["LOOKBACK_WEEKS"].value == 12
    run = GrowthSettings.from_params({"BRMS_ITER": 2000}, environ)
    assert (run.lookback_weeks, run.iterations) == (12, 2000)


@pytest.mark.parametrize(
    ("settings_cls", "overrides", "message"),
    [
        (GrowthSettings, {"BRMS_FAMILY": "poisson"}, "BRMS_FAMILY: 'poisson' is not one of gaussian, binomial"),
        (GrowthSettings, {"BRMS_ITER": "many"}, "BRMS_ITER"),
        (GrowthSettings, {"LOOKBACK_WEEKS": 1}, "LOOKBACK_WEEKS: 1 is below the minimum 2"),
        (SurvivalSettings, {"SURVIVAL_UPDATE_KPI": "maybe"}, "SURVIVAL_UPDATE_KPI: 'maybe' is not a boolean"),
        (ClusterSettings, {"CLUSTER_N_CLUSTERS": "four"}, "CLUSTER_N_CLUSTERS"),
        (ProphetSettings, {"PROPHET_FORECAST_WEEKS": 2.5}, "PROPHET_FORECAST_WEEKS: 2.5 is not an integer"),
    ],
)
def test_invalid_values_name_the_setting(settings_cls, overrides, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_cls.from_params(overrides, {})


def test_cluster_count_is_optional() -> None:
    assert ClusterSettings.from_params({"CLUSTER_N_CLUSTERS": ""}, {}).n_clusters_or_auto is None
    assert ClusterSettings.from_params({"CLUSTER_N_CLUSTERS": "4"}, {}).n_clusters_or_auto == 4


def test_shared_setting_has_one_definition() -> None:
    """METRICS_USE_BAYESIAN is read by two DAGs; both see the same default and env value."""
    for environ, expected in (({}, False), ({"METRICS_USE_BAYESIAN": "1"}, True)):
        assert GrowthSettings.from_env(environ).metrics_use_bayesian is expected
        assert KpiSettings.from_env(environ).metrics_use_bayesian is expected


def test_every_setting_is_documented_and_uniquely_named_per_dag() -> None:
    for settings_cls in ALL_SETTINGS:
        names = [spec.name for spec in settings_cls.specs()]
        assert len(names) == len(set(names)), settings_cls
        assert all(spec.description for spec in settings_cls.specs()), settings_cls


def test_platform_timezone_defaults_to_seoul_and_rejects_unknown_names() -> None:
    from learning_analytics.settings import platform_timezone

    assert platform_timezone({}) == "Asia/Seoul"
    assert platform_timezone({"LA_TIMEZONE": "Europe/Berlin"}) == "Europe/Berlin"
    for bad in ("Asia/Seul", "KST", "", "../etc/passwd"):
        with pytest.raises(ValueError, match=r"LA_TIMEZONE: .* is not a known IANA time zone name"):
            platform_timezone({"LA_TIMEZONE": bad})
