"""A retracted label leaves the training data: a source is ingested whole, through the real graph.

Labels reach ``iris_features`` through ``labelled_flowers.parquet`` (``model_performance``
rewrites it from the labels table); the attacks a collector makes on the landing folder - delete
a batch, replace it with fewer or corrected rows, rename it, re-run - must each end with the
feature table holding exactly the labelled flowers that are still offered, every flower on the
side it had, and an unchanged re-run committing nothing.
"""

import dagster as dg
import pandas as pd
import pytest

from iris_assets.steps.performance import labelled_flowers_path
from iris_assets.steps.stores import table_store
from tests.assets.helpers import materialization_metadata, materialize, step_failure_messages
from tests.assets.test_monitoring_retraining import scored_rows

DAY = "2026-11-24"


def land(settings, labels: pd.DataFrame, name: str):
    folder = settings.labels_landing_dir / f"observed_date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    labels.to_parquet(path, index=False)
    return path


def judge(graph):
    defs, instance = graph
    result = defs.resolve_job_def("performance_job").execute_in_process(
        instance=instance, raise_on_error=False, partition_key=DAY
    )
    assert result.success, step_failure_messages(result)


def ingest(graph, source: str) -> dict:
    defs, instance = graph
    config = {"ops": {"iris_features": {"config": {"source_path": source}}}}
    result = materialize(defs, instance, "iris_features", run_config=config)
    assert result.success, step_failure_messages(result)
    metadata = materialization_metadata(result, "iris_features")
    metadata.setdefault("rows_removed", 0)  # so an ingest without it fails on the table's rows
    return metadata


def labelled_rows(settings):
    source = str(labelled_flowers_path(settings).resolve())
    table = table_store(settings).read(
        settings.feature_table, ["flower_id", "species", "split", "source"], order_by="flower_id"
    )
    return table[table["source"] == source].set_index("flower_id")


@pytest.fixture
def labelled(settings, graph, champion, scored_day_of_120):
    """120 scored flowers; batches A and B (40 labels each) landed, judged and ingested."""
    scored = scored_rows(settings).sort_values("flower_id")
    ids = scored["flower_id"].tolist()
    labels = pd.DataFrame({"flower_id": ids[:80], "species": scored["prediction"].iloc[:80]})
    a = land(settings, labels.iloc[:40], "batch-20261125T000000000000Z-aaaaaaaa.parquet")
    b = land(settings, labels.iloc[40:], "batch-20261125T010000000000Z-bbbbbbbb.parquet")
    judge(graph)
    first = ingest(graph, str(labelled_flowers_path(settings)))
    assert (first["rows_inserted"], first["rows_removed"]) == (80, 0)
    return labels, a, b


def test_a_deleted_label_batch_leaves_the_feature_table_and_a_rerun_commits_nothing(
    settings, graph, labelled
):
    labels, a, _ = labelled
    store = table_store(settings)
    sides = labelled_rows(settings)["split"]
    bundled = store.read(settings.feature_table, predicate="source = 'sklearn:iris'")
    a.unlink()
    judge(graph)
    removed = ingest(graph, str(labelled_flowers_path(settings)))
    held = labelled_rows(settings)
    assert held.index.tolist() == labels["flower_id"].iloc[40:].tolist()
    assert (removed["rows_inserted"], removed["rows_updated"], removed["rows_removed"]) == (
        0,
        0,
        40,
    )
    assert held["split"].equals(sides.loc[held.index]), "no remaining flower moves"
    # Another source's rows are not touched.
    pd.testing.assert_frame_equal(
        store.read(settings.feature_table, predicate="source = 'sklearn:iris'"), bundled
    )

    version = store.version(settings.feature_table)
    for _ in range(2):
        judge(graph)
        again = ingest(graph, str(labelled_flowers_path(settings)))
        assert (again["rows_inserted"], again["rows_updated"], again["rows_removed"]) == (0, 0, 0)
        assert store.version(settings.feature_table) == version, "an unchanged re-run commits none"

    # The batch lands again: its flowers come back on the side they had.
    land(settings, labels.iloc[:40], a.name)
    judge(graph)
    back = ingest(graph, str(labelled_flowers_path(settings)))
    assert (back["rows_inserted"], back["rows_removed"]) == (40, 0)
    assert labelled_rows(settings)["split"].equals(sides)


def test_a_batch_replaced_by_fewer_corrected_rows_and_renamed_leaves_only_what_it_says(
    settings, graph, labelled
):
    labels, _, b = labelled
    store = table_store(settings)
    sides = labelled_rows(settings)["split"]
    corrected = labels.iloc[40:60].copy()
    wrong = corrected["flower_id"].iloc[0]
    corrected.loc[corrected.index[0], "species"] = (corrected["species"].iloc[0] + 1) % 3
    b.unlink()
    replacement = land(settings, corrected, "batch-20261126T000000000000Z-cccccccc.parquet")
    judge(graph)
    replaced = ingest(graph, str(labelled_flowers_path(settings)))
    held = labelled_rows(settings)
    assert held.index.tolist() == [*labels["flower_id"].iloc[:40], *corrected["flower_id"]]
    assert (replaced["rows_inserted"], replaced["rows_updated"], replaced["rows_removed"]) == (
        0,
        1,
        20,
    )
    assert held.loc[wrong, "species"] == corrected["species"].iloc[0], "the corrected label"
    assert held["split"].equals(sides.loc[held.index]), "a corrected flower keeps its side"

    # A rename is the same labels: nothing changes, nothing is committed.
    version = store.version(settings.feature_table)
    replacement.rename(replacement.with_name("batch-20261127T000000000000Z-dddddddd.parquet"))
    judge(graph)
    renamed = ingest(graph, str(labelled_flowers_path(settings)))
    assert (renamed["rows_inserted"], renamed["rows_updated"], renamed["rows_removed"]) == (0, 0, 0)
    assert store.version(settings.feature_table) == version


def test_when_every_label_is_retracted_no_labelled_flower_trains(settings, graph, labelled):
    _, a, b = labelled
    store = table_store(settings)
    a.unlink()
    b.unlink()
    judge(graph)
    gone = ingest(graph, str(labelled_flowers_path(settings)))
    assert labelled_rows(settings).empty and gone["rows_removed"] == 80
    assert store.count(settings.feature_table) == 150, "the bundled flowers stay"


def test_a_renamed_source_file_answers_for_its_flowers(settings, graph, tmp_path):
    from iris_assets.core.source import load_source

    flowers = load_source(None).head(6).assign(flower_id=range(1001, 1007))
    ingest(graph, "")  # the bundled Iris, so both splits hold every species
    old = tmp_path / "collector.csv"
    flowers.to_csv(old, index=False)
    ingest(graph, str(old))
    new = old.rename(tmp_path / "collector-2026.csv")
    moved = ingest(graph, str(new))
    held = table_store(settings).read(settings.feature_table, predicate="flower_id > 1000")
    assert set(held["source"]) == {str(new)}, "the renamed file answers for its flowers now"
    assert (moved["rows_inserted"], moved["rows_updated"], moved["rows_removed"]) == (0, 6, 0)
    assert ingest(graph, str(new))["rows_updated"] == 0, "then re-ingesting it changes nothing"
    flowers.iloc[:4].to_csv(new, index=False)
    shrunk = ingest(graph, str(new))
    held = table_store(settings).read(settings.feature_table, predicate="flower_id > 1000")
    assert sorted(held["flower_id"]) == [1001, 1002, 1003, 1004]
    assert shrunk["rows_removed"] == 2


def test_deleting_the_last_batch_of_a_day_judges_the_day_again(settings, graph, labelled):
    from iris_assets.assets.monitoring import labels_files_sensor

    defs, instance = graph
    _, a, b = labelled

    def tick(cursor):
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
        ) as context:
            return labels_files_sensor(context), context.cursor

    _, cursor = tick(None)
    a.unlink()
    b.unlink()
    requests, cursor = tick(cursor)
    assert [r.partition_key for r in requests] == [DAY], "an emptied day is a change"
    assert isinstance(tick(cursor)[0], dg.SkipReason), "and only once"


def test_a_retraction_is_evidence_for_retraining_and_its_run_removes_the_rows(
    settings, graph, labelled
):
    from iris_assets.assets.retraining import retraining_sensor

    defs, instance = graph
    _, a, _ = labelled

    def tick(cursor=None):
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
        ) as context:
            return retraining_sensor(context), context.cursor

    assert isinstance(tick()[0], dg.SkipReason), "nothing stale yet"
    a.unlink()
    judge(graph)
    request, cursor = tick()
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"] == (
        "labels: 40 retracted and 0 corrected labelled flowers still train with their old label"
    )
    config = request.run_config["ops"]["iris_features"]["config"]
    assert ingest(graph, config["source_path"])["rows_removed"] == 40
    outcome, _ = tick(cursor)
    assert isinstance(outcome, dg.SkipReason) and "no trigger" in outcome.skip_message
