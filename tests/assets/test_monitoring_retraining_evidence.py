"""retraining_sensor's evidence under a collector who corrects, corrects back and deletes: each
new state of a label is new evidence, and a retrain never runs without the labelled source."""

import dagster as dg

from iris_assets.assets.retraining import retraining_sensor
from iris_assets.steps.performance import labelled_flowers_path
from tests.assets.test_monitoring_retraction import (  # noqa: F401
    ingest,
    judge,
    labelled,
    labelled_rows,
)


def tick(graph, cursor=None):
    defs, instance = graph
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
    ) as context:
        return retraining_sensor(context), context.cursor


def run_like_the_sensor(graph, request):
    """The ingest of the run the request starts (its iris_features config, default or not)."""
    config = request.run_config.get("ops", {}).get("iris_features", {}).get("config", {})
    return ingest(graph, config.get("source_path", ""))


def test_a_label_corrected_then_corrected_back_is_retrained_both_times(settings, graph, labelled):  # noqa: F811
    labels, a, _ = labelled
    flower = int(labels["flower_id"].iloc[0])
    original = int(labels["species"].iloc[0])
    _, cursor = tick(graph)
    flipped = labels.iloc[:40].copy()
    flipped.loc[flipped.index[0], "species"] = (original + 1) % 3
    flipped.to_parquet(a, index=False)  # the collector rewrites batch A with a correction
    judge(graph)
    first, cursor = tick(graph, cursor)
    assert isinstance(first, dg.RunRequest), first
    run_like_the_sensor(graph, first)
    assert labelled_rows(settings).loc[flower, "species"] == (original + 1) % 3
    # The correction was itself the mistake: batch A is rewritten as it was.
    labels.iloc[:40].to_parquet(a, index=False)
    judge(graph)
    second, cursor = tick(graph, cursor)
    assert isinstance(second, dg.RunRequest), getattr(second, "skip_message", second)
    assert second.run_key != first.run_key
    run_like_the_sensor(graph, second)
    assert labelled_rows(settings).loc[flower, "species"] == original
    # And now it is spent: the same state again is no new evidence.
    third, _ = tick(graph, cursor)
    assert isinstance(third, dg.SkipReason)


def test_a_retrain_waits_for_a_deleted_labelled_flowers_file_and_keeps_its_evidence(
    settings,
    graph,
    labelled,  # noqa: F811
):
    _, a, _ = labelled
    a.unlink()  # batch A retracted: its 40 flowers must leave the training data
    judge(graph)
    labelled_flowers_path(settings).unlink()  # the derived file, by mistake (it is in landing/)
    waiting, cursor = tick(graph)
    assert isinstance(waiting, dg.SkipReason), waiting
    assert "labelled_flowers.parquet is missing" in waiting.skip_message
    assert "model_performance" in waiting.skip_message
    assert not cursor  # no evidence spent
    judge(graph)  # what the skip says to do: the file is written again from the labels table
    request, _ = tick(graph, cursor)
    assert isinstance(request, dg.RunRequest), request
    assert "40 retracted" in request.tags["iris/retrain_reason"]
    run_like_the_sensor(graph, request)
    assert len(labelled_rows(settings)) == 40  # batch B only: the retracted flowers are gone
