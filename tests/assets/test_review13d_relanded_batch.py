"""Review 13d: flowers taken in, removed, then landed again under the same batch file name.

Every function of the tables is then what it was at their first landing, so the report's
``new_labels_hash`` is too; the ``labels:`` key also names the latest ingest of the labelled
source that removed rows before the report (``retraining.new_labels_key``). These attack that
key: it must start exactly one run per relanding, however often the report is seen or re-made,
whoever ran the removing ingest, and on the Databricks target (the volume source).
"""

import hashlib

import dagster as dg
import pandas as pd

from iris_assets.steps.performance import labelled_flowers_path
from tests.assets.test_monitoring_retraction import ingest, judge, land
from tests.assets.test_monitoring_retraining import scored_rows
from tests.assets.test_monitoring_retraining_evidence import run_like_the_sensor, tick
from tests.assets.test_retraining_databricks import (  # noqa: F401
    databricks,
    publish,
    source_path,
    volume_file,
)
from tests.assets.test_retraining_databricks import tick as databricks_tick

BATCH = "batch-20261125T000000000000Z-aaaaaaaa.parquet"


def sixty(settings) -> pd.DataFrame:
    """60 of ``scored_day_of_150``'s flowers, labelled as scored."""
    scored = scored_rows(settings).sort_values("flower_id")
    return pd.DataFrame(
        {"flower_id": scored["flower_id"].iloc[:60], "species": scored["prediction"].iloc[:60]}
    )


def test_the_relanded_batch_starts_one_run_however_often_it_is_reported(
    settings, graph, champion, scored_day_of_150
):
    labels = sixty(settings)
    batch = land(settings, labels, BATCH)
    judge(graph)
    first, cursor = tick(graph)
    assert isinstance(first, dg.RunRequest), first
    run_like_the_sensor(graph, first)
    batch.unlink()
    judge(graph)
    retract, cursor = tick(graph, cursor)
    assert isinstance(retract, dg.RunRequest), retract
    assert run_like_the_sensor(graph, retract)["rows_removed"] == 60

    land(settings, labels, BATCH)
    judge(graph)
    again, cursor = tick(graph, cursor)
    assert isinstance(again, dg.RunRequest), again.skip_message
    assert again.run_key not in (first.run_key, retract.run_key)
    # The same report ticked again, then a later report of the same tables after a feature-table
    # write that removed nothing (the bundled source re-ingested): no second run.
    twice, cursor = tick(graph, cursor)
    assert isinstance(twice, dg.SkipReason), twice
    assert twice.skip_message.startswith("no new evidence: already retrained for labels: 60 new")
    assert ingest(graph, "")["rows_removed"] == 0
    judge(graph)
    later, cursor = tick(graph, cursor)
    assert isinstance(later, dg.SkipReason), later
    assert later.skip_message.startswith("no new evidence"), later.skip_message
    assert run_like_the_sensor(graph, again)["rows_inserted"] == 60
    judge(graph)
    done, _ = tick(graph, cursor)
    assert isinstance(done, dg.SkipReason) and done.skip_message.startswith("no trigger"), done


def test_a_removal_by_a_training_run_started_by_hand_counts_too(
    settings, graph, champion, scored_day_of_150
):
    labels = sixty(settings)
    batch = land(settings, labels, BATCH)
    judge(graph)
    first, cursor = tick(graph)
    assert isinstance(first, dg.RunRequest), first
    run_like_the_sensor(graph, first)
    batch.unlink()
    judge(graph)
    # A person trains by hand before the sensor ticks: that ingest removes the 60.
    assert ingest(graph, str(labelled_flowers_path(settings)))["rows_removed"] == 60
    taken, cursor = tick(graph, cursor)
    assert isinstance(taken, dg.SkipReason) and taken.skip_message.startswith("no trigger"), taken

    land(settings, labels, BATCH)
    judge(graph)
    again, _ = tick(graph, cursor)
    assert isinstance(again, dg.RunRequest), again.skip_message
    assert again.tags["iris/retrain_reason"].startswith("labels: 60 new")


def test_the_relanded_batch_retrains_on_databricks_from_the_serverless_ingests_report(
    settings,
    graph,
    champion,
    scored_day_of_150,
    databricks,  # noqa: F811
):
    """The serverless ingest of the volume file reports through Pipes; here the local ingest
    changes the tables as it would, and its report for the volume source is stored as Pipes
    would store it (its content hash and counts)."""
    on_databricks, workspace, resources = databricks
    fake, (_, instance) = workspace["fake"], graph

    def serverless_ingest(request) -> None:
        assert source_path(request) == volume_file(on_databricks)
        local = ingest(graph, str(labelled_flowers_path(settings)))
        read = hashlib.sha256(fake.local(volume_file(on_databricks)).read_bytes()).hexdigest()
        metadata = {
            "source": volume_file(on_databricks),
            "source_sha256": read,
            "rows_inserted": local["rows_inserted"],
            "rows_removed": local["rows_removed"],
        }
        instance.report_runless_asset_event(
            dg.AssetMaterialization("iris_features", metadata=metadata)
        )

    labels = sixty(settings)
    batch = land(settings, labels, BATCH)
    judge(graph)
    publish(settings, on_databricks, fake)
    first, cursor = databricks_tick(graph, resources)
    assert isinstance(first, dg.RunRequest), first
    serverless_ingest(first)
    batch.unlink()
    judge(graph)
    publish(settings, on_databricks, fake)
    retract, cursor = databricks_tick(graph, resources, cursor)
    assert isinstance(retract, dg.RunRequest), retract
    assert "60 retracted" in retract.tags["iris/retrain_reason"]
    serverless_ingest(retract)

    land(settings, labels, BATCH)
    judge(graph)
    publish(settings, on_databricks, fake)
    again, cursor = databricks_tick(graph, resources, cursor)
    assert isinstance(again, dg.RunRequest), again.skip_message
    assert again.tags["iris/retrain_reason"].startswith("labels: 60 new")
    twice, _ = databricks_tick(graph, resources, cursor)
    assert isinstance(twice, dg.SkipReason) and "no new evidence" in twice.skip_message
