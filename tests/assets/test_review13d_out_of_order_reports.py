"""Review 13d: two days' model_performance reports stored in the other order than they read the
tables. The sensor acts on the freshest (``retraining.latest_report``), on both engines.

Running two performance runs at once in-process cannot fix the order their Pipes messages are
stored in, so the late one is built from the real report: day 1's materialization (computed
first, against the labels table before day 2's labels) is stored again, unchanged, after day 2's,
as its message arriving late would be. The labelled-flowers file on disk is then day 2's, as it
would be (each run writes it from the whole table, the last writer the newest).
"""

import dagster as dg

from iris_assets.steps.stores import table_store
from tests.assets.test_monitoring_retraction import judge
from tests.assets.test_monitoring_retraining import label_and_judge, score, scored_rows
from tests.assets.test_monitoring_retraining_evidence import tick
from tests.assets.test_retraining_databricks import (  # noqa: F401
    databricks,
    publish,
    source_path,
    volume_file,
)
from tests.assets.test_retraining_databricks import tick as databricks_tick

DAY_1, DAY_2 = "2026-11-24", "2026-11-25"
PERFORMANCE = dg.AssetKey("model_performance")


def latest(instance):
    [record] = instance.fetch_materializations(PERFORMANCE, limit=1).records
    return record


def store_again(instance, record, **changed) -> None:
    """``record``'s report stored now (its metadata unchanged but for ``changed``)."""
    metadata = dict(record.asset_materialization.metadata)
    metadata.update(changed)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "model_performance", partition=record.partition_key, metadata=metadata
        )
    )


def reports_stored_out_of_order(graph, settings):
    """On ``scored_day_of_120`` (DAY_1 scored): day 1 reports 30 new labelled flowers, then day 2
    (computed later) 70; day 1's report is stored last. Returns (day 1's record, day 2's)."""
    _, instance = graph
    label_and_judge(graph, settings, scored_rows(settings, DAY_1), rows=30, drop=0.0, day=DAY_1)
    first = latest(instance)
    scored = score(graph, settings, DAY_2, seed=2)
    label_and_judge(graph, settings, scored, rows=40, drop=0.0, day=DAY_2)
    second = latest(instance)
    store_again(instance, first)
    values = {k: v.value for k, v in latest(instance).asset_materialization.metadata.items()}
    assert (values["new_labelled_flowers"], values["partition"]) == (30, DAY_1)
    return first, second


def test_the_report_computed_last_wins_over_the_one_stored_last(
    settings, graph, champion, scored_day_of_120
):
    _, instance = graph
    first, second = reports_stored_out_of_order(graph, settings)
    values = {k: v.value for k, v in second.asset_materialization.metadata.items()}
    store = table_store(settings)
    # What the step names: the versions the evidence read (nothing committed since), and when.
    assert values["evidence_labels_version"] == store.version(settings.labels_table)
    assert values["evidence_features_version"] == store.version(settings.feature_table)
    assert values["evidence_read_at"] < second.timestamp
    assert values["new_labelled_flowers"] == 70

    request, cursor = tick(graph)
    assert isinstance(request, dg.RunRequest), request.skip_message
    assert request.tags["iris/retrain_reason"] == "labels: 70 new labelled flowers (at least 50)"
    again, _ = tick(graph, cursor)
    assert isinstance(again, dg.SkipReason) and "no new evidence" in again.skip_message


def test_a_report_stored_before_the_latest_began_reading_never_wins(
    settings, graph, champion, judged_day
):
    """However high its versions: it read older tables, or a labels table since recreated
    (whose versions started again). A guard on the fix's window: taking the highest versions
    of all recent reports would keep acting on the stand-in."""
    _, instance = graph  # judged_day: DAY_1 scored, 60 labels judged
    report = latest(instance)
    store_again(
        instance,
        report,
        evidence_labels_version=dg.MetadataValue.int(10**6),
        new_labelled_flowers=dg.MetadataValue.int(0),
        new_labels_hash=dg.MetadataValue.text(""),
    )
    nothing, _ = tick(graph)
    assert isinstance(nothing, dg.SkipReason), "the stand-in is the freshest report so far"
    judge(graph)  # day 1 again: a report of the same tables, read after the stand-in was stored
    request, _ = tick(graph)
    assert isinstance(request, dg.RunRequest), request.skip_message
    assert request.tags["iris/retrain_reason"].startswith("labels: 60 new")


def test_the_freshest_report_is_taken_on_databricks_too(
    settings,
    graph,
    champion,
    scored_day_of_120,
    databricks,  # noqa: F811
):
    on_databricks, workspace, resources = databricks
    reports_stored_out_of_order(graph, settings)
    publish(settings, on_databricks, workspace["fake"])  # day 2's file, the last one written
    request, _ = databricks_tick(graph, resources)
    assert isinstance(request, dg.RunRequest), request.skip_message
    assert request.tags["iris/retrain_reason"] == "labels: 70 new labelled flowers (at least 50)"
    assert source_path(request) == volume_file(on_databricks)
