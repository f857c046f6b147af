"""Ingestion and evaluation as assets: idempotent upserts, quarantine, and the blocking bar."""

import pandas as pd

from iris_assets.core.identity import DERIVED_ID_BASE
from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.registry import ModelRegistry
from iris_assets.core.source import load_source
from iris_assets.steps.stores import table_store
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    materialize,
    step_failure_messages,
)


def ingest(defs, instance, source_path: str = "", test_fraction: float | None = None, ok=True):
    config = {"source_path": source_path}
    if test_fraction is not None:
        config["test_fraction"] = test_fraction
    result = materialize(
        defs, instance, "iris_features", run_config={"ops": {"iris_features": {"config": config}}}
    )
    assert result.success is ok, step_failure_messages(result)
    return result


def test_reingesting_unchanged_data_updates_nothing_and_commits_nothing(settings, graph):
    store = table_store(settings)
    first = materialization_metadata(ingest(*graph), "iris_features")
    assert first["rows_inserted"] == 150
    stamped = store.read(settings.feature_table, order_by="flower_id")["ingested_at"]
    second = materialization_metadata(ingest(*graph), "iris_features")
    assert (second["rows_inserted"], second["rows_updated"]) == (0, 0)
    assert (
        second["delta_version"] == first["delta_version"] == store.version(settings.feature_table)
    ), "an unchanged re-ingestion commits no new Delta version"
    table = store.read(settings.feature_table, order_by="flower_id")
    assert len(table) == 150 and table["flower_id"].is_unique
    assert table["ingested_at"].equals(stamped), "ingested_at changes only when the row does"


def test_files_without_ids_never_overwrite_and_conflicting_ids_are_refused(
    settings, graph, tmp_path
):
    store = table_store(settings)
    bundled = load_source(None)
    ingest(*graph)
    # Two new flowers without ids: before, they became flowers 1 and 2 and replaced them.
    new = bundled.head(2).drop(columns=["flower_id"]).assign(sepal_length_cm=[7.7, 7.9])
    no_ids = tmp_path / "no_ids.csv"
    new.to_csv(no_ids, index=False)
    added = materialization_metadata(ingest(*graph, str(no_ids)), "iris_features")
    assert (added["rows_inserted"], added["rows_updated"]) == (2, 0)
    table = store.read(settings.feature_table, order_by="flower_id")
    assert len(table) == 152
    pd.testing.assert_frame_equal(
        table.head(150)[["flower_id", "sepal_length_cm"]],
        bundled[["flower_id", "sepal_length_cm"]],
        check_dtype=False,
    )
    derived = table[table["source"] == str(no_ids)]["flower_id"]
    assert (derived >= DERIVED_ID_BASE).all()
    # The same flowers reordered: the same ids, nothing written.
    new.iloc[::-1].to_csv(no_ids, index=False)
    version = store.version(settings.feature_table)
    again = materialization_metadata(ingest(*graph, str(no_ids)), "iris_features")
    assert (again["rows_inserted"], again["rows_updated"]) == (0, 0)
    assert store.version(settings.feature_table) == version

    # An explicit id held by another source with other content is rejected, not overwritten;
    # the same content under that id changes nothing, not even its owner (the bundled Iris is
    # still there and answers for it); ids at 2**53 and 2**53+1 stay exact.
    clash = bundled.head(2).assign(
        flower_id=[1, 2], sepal_length_cm=[6.6, bundled.loc[1, "sepal_length_cm"]]
    )
    big = bundled.head(2).assign(flower_id=[2**53, 2**53 + 1])
    explicit = tmp_path / "explicit.csv"
    pd.concat([clash, big]).to_csv(explicit, index=False)
    result = ingest(*graph, str(explicit))
    metadata = materialization_metadata(result, "iris_features")
    assert (metadata["rows_inserted"], metadata["rows_updated"]) == (2, 0)
    assert (metadata["rows_conflicting"], metadata["rows_held_by_other_sources"]) == (1, 1)
    table = store.read(settings.feature_table, order_by="flower_id")
    assert table.loc[table["flower_id"] == 1, "sepal_length_cm"].item() == 5.1
    flower_2 = table[table["flower_id"] == 2].iloc[0]
    assert flower_2["source"] == "sklearn:iris"
    assert flower_2["sepal_length_cm"] == bundled.loc[1, "sepal_length_cm"]
    assert {2**53, 2**53 + 1} <= set(table["flower_id"].tolist())
    rejects = store.read(settings.rejects_table, predicate=rejects_slice("ingest", str(explicit)))
    [reason] = rejects["reason"]
    assert rejects["flower_id"].tolist() == ["1"]
    assert "already holds a different flower from sklearn:iris" in reason

    # The source that delivered a flower may correct it.
    corrected = pd.concat([clash.tail(1), big.assign(petal_width_cm=[0.3, 0.4])])
    corrected.to_csv(explicit, index=False)
    fixed = materialization_metadata(ingest(*graph, str(explicit)), "iris_features")
    assert (fixed["rows_inserted"], fixed["rows_updated"]) == (0, 2)


def test_the_split_fraction_is_fixed_when_the_table_is_created(settings, graph):
    ingest(*graph, test_fraction=0.3)
    store = table_store(settings)
    assert store.properties(settings.feature_table)["iris.split.test_fraction"] == "0.3"
    before = store.read(settings.feature_table, order_by="flower_id")
    refused = ingest(*graph, test_fraction=0.5, ok=False)
    message = step_failure_messages(refused)
    assert "created with test_fraction 0.3" in message and "test_fraction 0.5" in message
    after = store.read(settings.feature_table, order_by="flower_id")
    assert after["split"].equals(before["split"])
    # Identical measurements (Iris flowers 102 and 143) are on the same side.
    twins = after.set_index("flower_id").loc[[102, 143], "split"]
    assert twins.nunique() == 1


def test_malformed_source_rows_are_quarantined_with_a_reason(settings, graph, tmp_path):
    source = load_source(None).astype(str)
    source.loc[3, "petal_width_cm"] = "n/a"
    source.loc[4, "sepal_length_cm"] = "-1"
    source.loc[5, "species"] = "daisy"
    path = tmp_path / "flowers.csv"
    source.to_csv(path, index=False)

    result = ingest(*graph, source_path=str(path))
    assert check_results(result) == {"feature_table_valid": True, "source_rows_accepted": False}
    metadata = materialization_metadata(result, "iris_features")
    assert (metadata["rows_ingested"], metadata["rows_rejected"]) == (147, 3)
    rejects = table_store(settings).read(
        settings.rejects_table, predicate=rejects_slice("ingest", str(path))
    )
    reasons = dict(zip(rejects["flower_id"], rejects["reason"], strict=True))
    assert reasons == {
        "4": "petal_width_cm is not a number",
        "5": "sepal_length_cm must be positive",
        "6": "species is not one of 0, 1, 2, setosa, versicolor, virginica",
    }
    rejects_version = table_store(settings).version(settings.rejects_table)
    again = ingest(*graph, source_path=str(path))
    assert materialization_metadata(again, "iris_features")["rows_rejected"] == 3
    assert table_store(settings).count(settings.rejects_table) == 3, "re-runs replace rejects"
    assert table_store(settings).version(settings.rejects_table) == rejects_version, (
        "an unchanged re-ingestion commits nothing to the rejects table either"
    )


def test_the_blocking_evaluation_check_stops_promotion_in_the_same_run(settings, graph):
    defs, instance = graph
    too_high = {"ops": {"evaluation_report": {"config": {"min_accuracy": 1.01}}}}
    result = materialize(
        defs,
        instance,
        "iris_features",
        "challenger_model",
        "evaluation_report",
        "champion_alias",
        run_config=too_high,
    )
    assert check_results(result)["evaluation_passed"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "champion_alias" not in materialized
    models = ModelRegistry(settings)
    challenger = models.challenger()
    assert challenger.evaluation == "failed"
    assert "below the minimum 1.01" in challenger.tags["evaluation_reason"]
    assert models.champion() is None
    assert isinstance(pd.Timestamp(challenger.tags["evaluated_at"]), pd.Timestamp)


def test_evaluation_reads_the_feature_table_at_the_version_the_challenger_was_trained_on(
    settings, graph, tmp_path
):
    defs, instance = graph
    ingest(defs, instance)
    assert materialize(defs, instance, "challenger_model").success
    challenger = ModelRegistry(settings).challenger()
    trained_on = int(challenger.tags["feature_table_version"])
    store = table_store(settings)
    held_out = store.count(settings.feature_table, "split = 'test'")

    # Flowers ingested after training, labelled against the grain: they must not be judged on.
    late = (
        load_source(None).drop(columns=["flower_id"]).assign(species=lambda f: (f.species + 1) % 3)
    )
    path = tmp_path / "late.csv"
    late.assign(sepal_width_cm=late.sepal_width_cm + 0.05).to_csv(path, index=False)
    ingest(defs, instance, str(path))
    assert store.version(settings.feature_table) > trained_on
    assert store.count(settings.feature_table, "split = 'test'") > held_out

    result = materialize(defs, instance, "evaluation_report")
    metadata = materialization_metadata(result, "evaluation_report")
    assert metadata["held_out_rows"] == held_out
    assert check_results(result)["evaluation_passed"] is True


def test_a_correction_keeps_the_flowers_split_and_a_source_is_one_whatever_its_spelling(
    settings, graph, tmp_path, monkeypatch
):
    from iris_assets.core.split import split_by_measurements

    store = table_store(settings)
    flowers = load_source(None).head(6).assign(flower_id=range(1001, 1007))
    path = tmp_path / "owner.csv"
    flowers.to_csv(path, index=False)
    ingest(*graph)  # the bundled Iris, so both splits hold every species
    ingest(*graph, str(path))
    before = store.read(settings.feature_table, predicate="flower_id > 1000", order_by="flower_id")
    # A correction of flower 1001 that its content alone would put on the other side.
    corrected = flowers.copy()
    for value in [round(4.0 + 0.1 * i, 1) for i in range(40)]:
        candidate = corrected.assign(sepal_length_cm=[value, *flowers["sepal_length_cm"][1:]])
        if split_by_measurements(candidate.head(1))[0] != before["split"][0]:
            corrected = candidate
            break
    else:
        raise AssertionError("no correction found that would move the split")
    monkeypatch.chdir(tmp_path)
    corrected.to_csv("owner.csv", index=False)
    result = ingest(*graph, "./owner.csv")  # the same source, spelled relative to the cwd
    metadata = materialization_metadata(result, "iris_features")
    assert metadata["source"] == str(path.resolve())
    assert (metadata["rows_updated"], metadata["rows_conflicting"]) == (1, 0), metadata
    after = store.read(settings.feature_table, predicate="flower_id > 1000", order_by="flower_id")
    assert after["sepal_length_cm"][0] == corrected["sepal_length_cm"][0]
    assert after["split"].tolist() == before["split"].tolist(), "the split never moves"
