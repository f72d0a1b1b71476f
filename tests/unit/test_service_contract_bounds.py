"""Every setting that goes into a service request stays inside that service's HTTP contract.

The contract's limits live in one place, the service's ``r-services/<svc>/schemas.json``
(the R validators enforce it, the schemathesis suite keeps the two in step). A DAG
Param is checked against its own bounds when a run starts (``settings.py``); if those
bounds reached past the contract, a value the trigger form accepts would only fail at
the fit, as a 400, after the extract. So each such setting must be bounded at least as
tightly as the request field it becomes: its minimum/maximum inside the field's, its
choices among the field's enum.

:data:`REQUEST_FIELDS` says which setting becomes which field (kept next to the
payload builders' names; a new setting sent to a service belongs here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from learning_analytics.settings import (
    ClusterSettings,
    GrowthSettings,
    ModelSettings,
    ProphetSettings,
    SettingSpec,
    SurvivalSettings,
)

SERVICES = Path(__file__).resolve().parents[2] / "r-services"


@dataclass(frozen=True)
class RequestField:
    """Where a setting goes: a property (``k_range[]``: each item) of a request schema."""

    settings: type[ModelSettings]
    setting: str
    service: str
    schema: str
    path: tuple[str, ...]
    #: The most the payload builder adds to the setting (``BRMS_SEED + shard index``).
    max_offset: int = 0


#: Shards a growth run can have, at most: a seed is ``BRMS_SEED + shard index``.
MAX_GROWTH_SHARDS = 1_000_000

REQUEST_FIELDS: tuple[RequestField, ...] = (
    # pipelines/growth.py GrowthPipeline.fit_request
    RequestField(GrowthSettings, "BRMS_ITER", "r-brms-plumber", "GrowthFitRequest", ("iter",)),
    RequestField(GrowthSettings, "BRMS_MAX_ITER", "r-brms-plumber", "GrowthFitRequest", ("max_iter",)),
    RequestField(GrowthSettings, "BRMS_MAX_RHAT", "r-brms-plumber", "GrowthFitRequest", ("max_rhat",)),
    RequestField(GrowthSettings, "BRMS_MIN_ESS", "r-brms-plumber", "GrowthFitRequest", ("min_ess_bulk",)),
    RequestField(GrowthSettings, "BRMS_CHAINS", "r-brms-plumber", "GrowthFitRequest", ("chains",)),
    RequestField(GrowthSettings, "BRMS_FAMILY", "r-brms-plumber", "GrowthFitRequest", ("family",)),
    RequestField(GrowthSettings, "BRMS_ADAPT_DELTA", "r-brms-plumber", "GrowthFitRequest", ("adapt_delta",)),
    RequestField(
        GrowthSettings, "BRMS_SEED", "r-brms-plumber", "GrowthFitRequest", ("seed",), max_offset=MAX_GROWTH_SHARDS
    ),
    # pipelines/prophet.py fit_payload
    RequestField(
        ProphetSettings, "PROPHET_FORECAST_WEEKS", "r-forecast-plumber", "ProphetFitRequest", ("forecast_weeks",)
    ),
    RequestField(
        ProphetSettings, "PROPHET_ANOMALY_THRESHOLD", "r-forecast-plumber", "ProphetFitRequest", ("anomaly_threshold",)
    ),
    # pipelines/survival.py fit_payload, predict_payload
    RequestField(
        SurvivalSettings, "SURVIVAL_HORIZON_DAYS", "r-forecast-plumber", "SurvivalFitRequest", ("horizon_days",)
    ),
    RequestField(
        SurvivalSettings, "SURVIVAL_HORIZON_DAYS", "r-forecast-plumber", "SurvivalPredictRequest", ("horizon_days",)
    ),
    # pipelines/cluster.py fit_payload
    RequestField(ClusterSettings, "CLUSTER_METHOD", "r-cluster-plumber", "ClusterFitRequest", ("method",)),
    RequestField(ClusterSettings, "CLUSTER_N_CLUSTERS", "r-cluster-plumber", "ClusterFitRequest", ("n_clusters",)),
    RequestField(ClusterSettings, "CLUSTER_K_MIN", "r-cluster-plumber", "ClusterFitRequest", ("k_range", "[]")),
    RequestField(ClusterSettings, "CLUSTER_K_MAX", "r-cluster-plumber", "ClusterFitRequest", ("k_range", "[]")),
    RequestField(ClusterSettings, "CLUSTER_SEED", "r-cluster-plumber", "ClusterFitRequest", ("seed",)),
)


def request_schema(service: str, name: str) -> dict[str, Any]:
    return json.loads((SERVICES / service / "schemas.json").read_text())["schemas"][name]


def field_schema(request_field: RequestField) -> dict[str, Any]:
    schema = request_schema(request_field.service, request_field.schema)
    for step in request_field.path:
        schema = schema["items"] if step == "[]" else schema["properties"][step]
    return schema


def spec_of(request_field: RequestField) -> SettingSpec:
    (spec,) = [spec for spec in request_field.settings.specs() if spec.name == request_field.setting]
    return spec


def setting_range(spec: SettingSpec) -> tuple[float, float]:
    return (
        -math.inf if spec.minimum is None else spec.minimum,
        math.inf if spec.maximum is None else spec.maximum,
    )


def contract_range(schema: dict[str, Any]) -> tuple[float, float, bool]:
    """(minimum, maximum, minimum excluded) of a numeric field (OpenAPI 3.0 style)."""
    return (
        schema.get("minimum", -math.inf),
        schema.get("maximum", math.inf),
        bool(schema.get("exclusiveMinimum", False)),
    )


def field_id(request_field: RequestField) -> str:
    return f"{request_field.setting}->{request_field.schema}.{'.'.join(request_field.path)}"


@pytest.mark.parametrize("request_field", REQUEST_FIELDS, ids=field_id)
def test_setting_bounds_are_inside_the_service_contract(request_field: RequestField) -> None:
    spec, schema = spec_of(request_field), field_schema(request_field)
    if "enum" in schema:
        assert spec.choices is not None, f"{spec.name} is free text, the service accepts only {schema['enum']}"
        assert set(spec.choices) <= set(schema["enum"]), (
            f"{spec.name} offers {spec.choices}, not all in {schema['enum']}"
        )
        return
    low, high = setting_range(spec)
    high += request_field.max_offset
    field_low, field_high, low_excluded = contract_range(schema)
    assert low > field_low if low_excluded else low >= field_low, (
        f"{spec.name} allows {low}; {request_field.schema}.{'.'.join(request_field.path)} needs "
        f"{'>' if low_excluded else '>='} {field_low}"
    )
    assert high <= field_high, (
        f"{spec.name} allows {high} (with offset {request_field.max_offset}); "
        f"{request_field.schema}.{'.'.join(request_field.path)} allows at most {field_high}"
    )


def test_every_setting_named_here_exists() -> None:
    """A renamed setting must not silently drop out of the check (spec_of would fail anyway)."""
    for request_field in REQUEST_FIELDS:
        assert spec_of(request_field).name == request_field.setting


def test_the_check_catches_a_setting_that_reaches_past_the_contract() -> None:
    """Negative control: a maximum above the schema's (the old PROPHET_FORECAST_WEEKS drift
    in reverse) and a missing minimum fail the same comparison."""
    schema = {"type": "integer", "minimum": 0, "maximum": 104}
    too_far = SettingSpec("X", 4, "", minimum=1, maximum=520)
    unbounded = SettingSpec("Y", 4, "", maximum=10)
    field_low, field_high, _ = contract_range(schema)
    assert setting_range(too_far)[1] > field_high
    assert setting_range(unbounded)[0] < field_low
