"""What a step killed halfway (SIGKILL, through a failpoint) leaves behind, and the next run."""

from iris_assets.core.registry import ModelRegistry
from iris_assets.steps.failpoints import FAILPOINT_ENV
from iris_assets.steps.stores import table_store
from tests.assets.helpers import materialize, step_failure_messages


def test_training_killed_before_its_alias_leaves_the_registry_usable(settings, graph, monkeypatch):
    defs, instance = graph
    assert materialize(defs, instance, "iris_features").success
    models = ModelRegistry(settings)

    monkeypatch.setenv(FAILPOINT_ENV, "train:registered")
    killed = materialize(defs, instance, "challenger_model")
    assert not killed.success
    assert "step train failed: was killed by signal 9" in step_failure_messages(killed)
    assert models.challenger() is None, "no alias points at the half-made version"

    monkeypatch.delenv(FAILPOINT_ENV)
    assert materialize(defs, instance, "challenger_model").success
    assert models.challenger().version == "2"
    assert models.get("1").aliases == ()

    monkeypatch.setenv(FAILPOINT_ENV, "train:tagged")
    assert not materialize(defs, instance, "challenger_model").success
    assert models.challenger().version == "2", "the challenger stays the last complete one"


def test_ingestion_killed_before_or_after_its_merge_is_unchanged_or_complete(
    settings, graph, monkeypatch
):
    defs, instance = graph
    store = table_store(settings)

    monkeypatch.setenv(FAILPOINT_ENV, "ingest:before_merge")
    assert not materialize(defs, instance, "iris_features").success
    assert not store.exists(settings.feature_table) or store.count(settings.feature_table) == 0

    monkeypatch.setenv(FAILPOINT_ENV, "ingest:merged")
    assert not materialize(defs, instance, "iris_features").success
    assert store.count(settings.feature_table) == 150
    version = store.version(settings.feature_table)

    monkeypatch.setenv(FAILPOINT_ENV, "ingest:before_merge")
    assert not materialize(defs, instance, "iris_features").success
    assert store.version(settings.feature_table) == version

    monkeypatch.delenv(FAILPOINT_ENV)
    result = materialize(defs, instance, "iris_features")
    assert result.success, step_failure_messages(result)
    table = store.read(settings.feature_table)
    assert len(table) == 150 and table["flower_id"].is_unique
