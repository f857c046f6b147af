"""Review 13c: the labels:<hash> key names id, species and batch file, not when it landed; flowers
landed again under the same batch name after their retraction was ingested are new evidence all the
same (the key names that removal: ``retraining.new_labels_key``)."""

import dagster as dg
import pandas as pd

from iris_assets.steps.performance import labelled_flowers_path
from tests.assets.test_monitoring_retraction import ingest, judge, land
from tests.assets.test_monitoring_retraining import scored_rows
from tests.assets.test_monitoring_retraining_evidence import tick

BATCH = "batch-20261125T000000000000Z-aaaaaaaa.parquet"


def test_flowers_landed_again_under_the_same_batch_name_after_their_retraction_retrain(
    settings, graph, champion, scored_day_of_150
):
    scored = scored_rows(settings).sort_values("flower_id")
    labels = pd.DataFrame(
        {"flower_id": scored["flower_id"].iloc[:60], "species": scored["prediction"].iloc[:60]}
    )
    batch = land(settings, labels, BATCH)
    judge(graph)
    first, cursor = tick(graph)
    assert isinstance(first, dg.RunRequest), first
    assert first.tags["iris/retrain_reason"].startswith("labels: 60 new")
    source = str(labelled_flowers_path(settings))
    assert ingest(graph, source)["rows_inserted"] == 60  # the retrain's ingest

    batch.unlink()  # the collector withdraws the batch
    judge(graph)
    retract, cursor = tick(graph, cursor)
    assert isinstance(retract, dg.RunRequest), retract
    assert ingest(graph, source)["rows_removed"] == 60  # that retrain's ingest

    land(settings, labels, BATCH)  # ... and lands it again, same file name
    judge(graph)
    again, _ = tick(graph, cursor)
    assert isinstance(again, dg.RunRequest), again.skip_message
    assert again.tags["iris/retrain_reason"].startswith("labels: 60 new")
