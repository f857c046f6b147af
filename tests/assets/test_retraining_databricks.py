"""retraining_sensor on the Databricks target: label evidence from Dagster's event log, the
labelled flowers looked up on the landing volume through the Files API.

The graph runs locally (its model_performance materializations carry the label evidence the step
computed where the tables are); the sensor then ticks with Databricks settings against a fake
workspace at the SDK's HTTP boundary (``tests/databricks/fake_workspace.py``), which holds the
landing volume the serverless performance step writes ``labelled_flowers.parquet`` to.
"""

import dataclasses
import hashlib
import io

import dagster as dg
import pandas as pd
import pytest

from iris_assets.assets.notifications import NotifierResource
from iris_assets.assets.retraining import RetrainingPolicy, retraining_sensor
from iris_assets.resources import ModelRegistryResource, SettingsResource
from iris_assets.resources.databricks_runner import DatabricksStepRunner
from iris_assets.steps.performance import labelled_flowers_path
from tests.assets.test_monitoring_retraction import (  # noqa: F401
    DAY,
    judge,
    labelled,
)
from tests.assets.test_monitoring_retraining import label_and_judge, score, scored_rows
from tests.databricks.fake_workspace import HOST, TOKEN, FakeWorkspace


@pytest.fixture
def databricks(settings, tmp_path, monkeypatch):
    """Databricks settings, a fake workspace with the landing volume, and the sensor's resources
    (the registry is this test's local one, where the champion is)."""
    on_databricks = dataclasses.replace(settings, target="databricks")
    fake = FakeWorkspace(
        root=tmp_path / "databricks",
        host=HOST,
        token=TOKEN,
        user="ana@example.com",
        volumes=[on_databricks.landing_volume],
    )
    workspace = {"fake": fake}
    monkeypatch.setattr(
        DatabricksStepRunner, "workspace_client", lambda self: workspace["fake"].client()
    )
    resource = SettingsResource.from_settings(on_databricks)
    resources = {
        "settings": resource,
        "registry": ModelRegistryResource(settings=SettingsResource.from_settings(settings)),
        "retraining": RetrainingPolicy(),
        "step_runner": DatabricksStepRunner(settings=resource, host=HOST, token=TOKEN),
        "notifier": NotifierResource(),
    }
    return on_databricks, workspace, resources


def tick(graph, resources, cursor=None):
    _, instance = graph
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return retraining_sensor(context), context.cursor


def volume_file(settings) -> str:
    return f"{settings.landing_volume}/labelled_flowers.parquet"


def publish(local_settings, on_databricks, fake):
    """What the serverless performance step leaves on the landing volume: the file it wrote."""
    content = labelled_flowers_path(local_settings).read_bytes()
    fake.client().files.upload(volume_file(on_databricks), io.BytesIO(content), overwrite=True)


def source_path(request) -> str | None:
    config = request.run_config.get("ops", {}).get("iris_features", {}).get("config", {})
    return config.get("source_path")


def test_new_labels_reported_by_model_performance_start_a_retrain_reading_the_volume(
    settings, graph, champion, judged_day, databricks
):
    on_databricks, workspace, resources = databricks
    fake = workspace["fake"]
    publish(settings, on_databricks, fake)

    request, cursor = tick(graph, resources)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"] == "labels: 60 new labelled flowers (at least 50)"
    assert source_path(request) == volume_file(on_databricks), "the serverless ingest reads it"
    assert source_path(request).startswith("/Volumes/")

    # The metadata still says 60 new until model_performance runs again: the spent key holds.
    again, cursor_after = tick(graph, resources, cursor)
    assert isinstance(again, dg.SkipReason), again
    assert again.skip_message.startswith("no new evidence: already retrained for labels: 60 new")
    assert cursor_after == cursor


def test_fewer_new_labels_than_the_threshold_start_nothing_on_databricks(
    settings, graph, champion, scored_day_of_120, databricks
):
    on_databricks, workspace, resources = databricks
    label_and_judge(graph, settings, scored_rows(settings), rows=20, drop=0.0)
    publish(settings, on_databricks, workspace["fake"])
    outcome, cursor = tick(graph, resources)
    assert isinstance(outcome, dg.SkipReason) and "no trigger" in outcome.skip_message
    assert cursor is None


def test_a_missing_or_unreadable_volume_file_is_a_skip_that_keeps_the_evidence(
    settings, graph, champion, judged_day, databricks
):
    on_databricks, workspace, resources = databricks
    fake = workspace["fake"]

    missing, cursor = tick(graph, resources)  # the file is not on the volume
    assert isinstance(missing, dg.SkipReason), missing
    assert f"{volume_file(on_databricks)} is missing" in missing.skip_message
    assert "Materialize model_performance" in missing.skip_message
    assert "60 labelled flowers" in missing.skip_message
    assert cursor is None, "no evidence spent"

    publish(settings, on_databricks, fake)
    workspace["fake"] = dataclasses.replace(fake, denied=[on_databricks.landing_volume])
    denied, cursor = tick(graph, resources, cursor)
    assert isinstance(denied, dg.SkipReason), denied
    assert "READ VOLUME" in denied.skip_message and on_databricks.landing_volume in (
        denied.skip_message
    )
    assert cursor is None, "no evidence spent"

    workspace["fake"] = fake  # the grant is given
    request, cursor = tick(graph, resources, cursor)
    assert isinstance(request, dg.RunRequest), request
    assert "60 new labelled flowers" in request.tags["iris/retrain_reason"]
    assert source_path(request) == volume_file(on_databricks)


def test_a_landing_volume_that_does_not_exist_is_a_skip_too(
    settings, graph, champion, judged_day, databricks
):
    on_databricks, workspace, resources = databricks
    workspace["fake"] = dataclasses.replace(workspace["fake"], volumes=[])
    outcome, cursor = tick(graph, resources)
    assert isinstance(outcome, dg.SkipReason), outcome
    assert "is missing" in outcome.skip_message and "does not exist" in outcome.skip_message
    assert cursor is None


def test_a_retracted_label_on_databricks_starts_a_retrain_of_the_volume_file(
    settings,
    graph,
    databricks,
    labelled,  # noqa: F811
):
    on_databricks, workspace, resources = databricks
    fake = workspace["fake"]
    labels, a, _ = labelled  # 80 labelled flowers, ingested from labelled_flowers.parquet
    publish(settings, on_databricks, fake)
    # The fixture ingested the 80 by hand from the local path, which is not the source the
    # sensor names here (the volume path): it may retrain for them once; that spends them.
    _, cursor = tick(graph, resources)

    # The collector rewrites batch A without its first flower and with the second corrected.
    rewritten = labels.iloc[1:40].copy()
    corrected = int(rewritten["flower_id"].iloc[0])
    rewritten.loc[rewritten.index[0], "species"] = (int(rewritten["species"].iloc[0]) + 1) % 3
    rewritten.to_parquet(a, index=False)
    judge(graph)
    publish(settings, on_databricks, fake)

    request, cursor = tick(graph, resources, cursor)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"] == (
        "labels: 1 retracted and 1 corrected labelled flowers still train with their old label"
    )
    assert source_path(request) == volume_file(on_databricks)
    # What the run's serverless ingest will read: the retracted flower gone, the correction in.
    offered = pd.read_parquet(fake.local(volume_file(on_databricks)))
    assert int(labels["flower_id"].iloc[0]) not in set(offered["flower_id"])
    assert corrected in set(offered["flower_id"]) and len(offered) == 79
    again, _ = tick(graph, resources, cursor)
    assert isinstance(again, dg.SkipReason) and "no new evidence" in again.skip_message


def test_without_any_labels_a_drift_retrain_on_databricks_needs_no_volume_file(
    settings, graph, champion, databricks
):
    _, _, resources = databricks
    for day in ("2026-11-04", "2026-11-05", "2026-11-06"):
        score(graph, settings, day, rows=150, drift=True)
    request, _ = tick(graph, resources)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"].startswith("drift:")
    assert source_path(request) is None, "no labels yet: the bundled Iris only"


def test_only_an_ingest_of_the_volume_file_the_report_wrote_spends_its_evidence(
    settings, graph, champion, judged_day, databricks
):
    on_databricks, workspace, resources = databricks
    fake = workspace["fake"]
    _, instance = graph
    publish(settings, on_databricks, fake)
    written = hashlib.sha256(fake.local(volume_file(on_databricks)).read_bytes()).hexdigest()

    def serverless_ingest_returned(sha256: str) -> None:
        """What the serverless ingest of the volume file reports through Pipes."""
        metadata = {"source": volume_file(on_databricks), "source_sha256": sha256}
        instance.report_runless_asset_event(
            dg.AssetMaterialization("iris_features", metadata=metadata)
        )

    serverless_ingest_returned(hashlib.sha256(b"the file before the rewrite").hexdigest())
    request, _ = tick(graph, resources)
    assert isinstance(request, dg.RunRequest), "an ingest of another content took nothing in"
    serverless_ingest_returned(written)
    outcome, cursor = tick(graph, resources)
    assert isinstance(outcome, dg.SkipReason), outcome
    assert outcome.skip_message.startswith("no trigger") and cursor is None
