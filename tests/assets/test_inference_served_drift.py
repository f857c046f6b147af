"""Served rows feed the drift check: requests the local endpoint answered (logged by default into
iris_serving_log) count next to the day's batch rows in ``feature_drift``.

Real pipeline, real local server (through ``LocalServingBackend.deploy``, as ``serving_endpoint``
runs it), real Delta tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import ModelRegistry
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.serving_log import served_features
from iris_assets.resources import LocalServingBackend, SettingsResource
from iris_assets.settings import CHAMPION_ALIAS
from iris_assets.steps.stores import table_store
from tests.assets.helpers import check_results, materialize, run_job, step_failure_messages


def serve_champion(settings, **fields) -> LocalServingBackend:
    backend = LocalServingBackend(settings=SettingsResource.from_settings(settings), **fields)
    backend.deploy(settings.model_name, "1")
    return backend


def drift_check(result):
    [drift] = [e for e in result.get_asset_check_evaluations() if e.check_name == "feature_drift"]
    return drift


def test_drifted_requests_to_the_endpoint_make_a_calm_batch_day_warn(settings, graph):
    defs, instance = graph
    assert materialize(defs, instance, "iris_features", "challenger_model").success
    ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")
    today = datetime.now(UTC).date().isoformat()
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(100, today, seed=5), today)

    backend = serve_champion(settings)  # the request log is on by default
    drifted = simulate_flowers(400, today, seed=6, drift=True)[list(FEATURE_COLUMNS)]
    records = drifted.to_dict("records")
    for start in range(0, len(records), 50):
        assert len(backend.predict(records[start : start + 50])["predictions"]) == 50
    backend._process().stop()  # a graceful stop flushes the request log

    store = table_store(settings)
    served = served_features(store, settings.serving_log_table, today)
    assert len(served.features) == 400
    result = run_job(defs, instance, "inference_job", partition_key=today)
    assert result.success, step_failure_messages(result)
    assert check_results(result)["feature_drift"] is False
    drift = drift_check(result)
    # Served rows count at most as much as the batch: 100 of the 400, half of the rows judged.
    assert drift.metadata["served_rows"].value == 100
    assert drift.metadata["batch_rows"].value == 100
    assert drift.metadata["rows"].value == 200
    assert drift.metadata["served_share"].value == 0.5


def test_garbage_requests_the_endpoint_answered_do_not_make_a_calm_day_drift(settings, graph):
    # The reviewer's poison: 5 requests of 1000 rows of finite numbers no flower has. The
    # endpoint answers them (it scores any finite numbers); the drift check must not count them.
    defs, instance = graph
    assert materialize(defs, instance, "iris_features", "challenger_model").success
    ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")
    today = datetime.now(UTC).date().isoformat()
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(200, today, seed=5), today)

    backend = serve_champion(settings)
    poison = dict(zip(FEATURE_COLUMNS, [-1000.0, 1e12, -0.0001, 5e9], strict=True))
    for _ in range(5):
        assert len(backend.predict([poison] * 1000)["predictions"]) == 1000
    backend._process().stop()

    result = run_job(defs, instance, "inference_job", partition_key=today)
    assert result.success, step_failure_messages(result)
    drift = drift_check(result)
    assert check_results(result)["feature_drift"] is True, drift.metadata["summary"].value
    assert drift.metadata["served_rows"].value == 0
    assert drift.metadata["served_rows_invalid"].value == 5000
    assert drift.metadata["served_rows_answered"].value == 5000
    assert drift.metadata["batch_share"].value == 1.0


def test_the_request_log_is_on_by_default_and_off_with_the_setting(settings, monkeypatch):
    resource = SettingsResource.from_settings(settings)
    table = settings.table_path(settings.serving_log_table)
    assert LocalServingBackend(settings=resource)._process().request_log == table
    monkeypatch.setenv("IRIS_SERVING_LOG", "off")
    assert LocalServingBackend(settings=resource)._process().request_log is None
    monkeypatch.setenv("IRIS_SERVING_LOG", "on")
    assert LocalServingBackend(settings=resource, request_log=False)._process().request_log is None
