"""The label evidence model_performance reports is what the tables say, and the sensor reads it
back without starting a retrain twice or on evidence an ingest already took in."""

import dagster as dg

from iris_assets.core.label_evidence import label_evidence
from iris_assets.steps.ingest import source_identity
from iris_assets.steps.performance import labelled_flowers_path
from iris_assets.steps.stores import table_store
from tests.assets.test_monitoring_retraction import (  # noqa: F401
    DAY,
    ingest,
    judge,
    labelled,
    land,
)
from tests.assets.test_monitoring_retraining import scored_rows
from tests.assets.test_monitoring_retraining_evidence import run_like_the_sensor, tick


def latest_performance_metadata(instance) -> dict:
    [record] = instance.fetch_materializations(dg.AssetKey("model_performance"), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_the_reported_evidence_equals_a_read_of_the_same_tables(settings, graph, labelled):  # noqa: F811
    _, instance = graph
    labels, a, _ = labelled
    scored = (
        table_store(settings)
        .read(settings.inference_table, predicate=f"observed_date = '{DAY}'")
        .sort_values("flower_id")
    )
    # Batch A loses 5 flowers and corrects one; batch C labels 12 flowers never labelled before.
    rewritten = labels.iloc[5:40].copy()
    rewritten.loc[rewritten.index[0], "species"] = (int(rewritten["species"].iloc[0]) + 2) % 3
    rewritten.to_parquet(a, index=False)
    fresh = scored[~scored["flower_id"].isin(labels["flower_id"])].iloc[:12]
    land(
        settings,
        fresh[["flower_id"]].assign(species=fresh["prediction"]),
        "batch-20261125T020000000000Z-cccccccc.parquet",
    )
    judge(graph)

    reported = latest_performance_metadata(instance)
    store = table_store(settings)
    read = label_evidence(store, settings, source_identity(str(labelled_flowers_path(settings))))
    expected = read.metadata()
    for key in (
        "new_labelled_flowers",
        "new_labels_hash",
        "retracted_labelled_flowers",
        "corrected_labelled_flowers",
        "stale_labels_hash",
        "labelled_flowers_held",
    ):
        assert reported[key] == expected[key], key
    assert reported["label_evidence_sample"] == expected["label_evidence_sample"]
    # And the tables say what the collector did, read here without the evidence module.
    held = set(store.read(settings.feature_table, ["flower_id"])["flower_id"].astype(int))
    now = set(store.read(settings.labels_table, ["flower_id"])["flower_id"].astype(int))
    assert sorted(now - held) == sorted(fresh["flower_id"].astype(int))
    assert (
        reported["new_labelled_flowers"],
        reported["retracted_labelled_flowers"],
        reported["corrected_labelled_flowers"],
        reported["labelled_flowers_held"],
    ) == (12, 5, 1, 80)
    assert set(reported["label_evidence_sample"]["retracted"]) == set(
        labels["flower_id"].iloc[:5].astype(int)
    )


def test_the_sample_names_at_most_ten_ids_however_many_are_new(
    settings, graph, champion, scored_day_of_120
):
    _, instance = graph
    scored = scored_rows(settings)
    land(
        settings,
        scored[["flower_id"]].assign(species=scored["prediction"]),
        "batch-20261125T000000000000Z-aaaaaaaa.parquet",
    )
    judge(graph)
    reported = latest_performance_metadata(instance)
    assert reported["new_labelled_flowers"] == 120
    assert len(reported["label_evidence_sample"]["new"]) == 10
    assert len(reported["new_labels_hash"]) == 16


def test_evidence_an_ingest_took_in_since_is_not_a_trigger(
    settings, graph, champion, scored_day_of_120
):
    scored = scored_rows(settings)
    land(
        settings,
        scored[["flower_id"]].assign(species=scored["prediction"]).iloc[:60],
        "batch-20261125T000000000000Z-aaaaaaaa.parquet",
    )
    judge(graph)
    # A person trains by hand on the labelled flowers: the metadata still says 60 new, but the
    # ingest took them in after it was written.
    ingest(graph, str(labelled_flowers_path(settings)))
    outcome, cursor = tick(graph)
    assert isinstance(outcome, dg.SkipReason), outcome
    assert outcome.skip_message.startswith("no trigger"), outcome.skip_message
    assert cursor is None


def test_a_retrain_spends_its_evidence_before_the_next_model_performance_run(
    settings, graph, champion, scored_day_of_120
):
    scored = scored_rows(settings)
    land(
        settings,
        scored[["flower_id"]].assign(species=scored["prediction"]).iloc[:60],
        "batch-20261125T000000000000Z-aaaaaaaa.parquet",
    )
    judge(graph)
    request, cursor = tick(graph)
    assert isinstance(request, dg.RunRequest), request
    # Before the run's ingest: the same evidence is already in the cursor.
    waiting, cursor = tick(graph, cursor)
    assert isinstance(waiting, dg.SkipReason)
    assert waiting.skip_message.startswith("no new evidence: already retrained for labels: 60")
    run_like_the_sensor(graph, request)
    # After it, with the metadata still saying 60 new: neither a cursor nor a fresh one retrains.
    for after in (tick(graph, cursor)[0], tick(graph)[0]):
        assert isinstance(after, dg.SkipReason), after
