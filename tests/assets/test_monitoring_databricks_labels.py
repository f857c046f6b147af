"""``labels_files_sensor`` on the Databricks target: the labels volume listed through the SDK.

The workspace is faked at the SDK's HTTP boundary (``tests/databricks/fake_workspace.py``): a
real ``WorkspaceClient`` lists the Unity Catalog volume through the Files API, as the sensor does
in a Databricks deployment.
"""

import dataclasses
import io
import os

import dagster as dg
import pytest

from iris_assets.assets.monitoring import labels_files_sensor
from iris_assets.resources import SettingsResource
from iris_assets.resources.databricks_runner import DatabricksStepRunner
from tests.databricks.fake_workspace import HOST, TOKEN, FakeWorkspace

DAY = "2026-11-24"


@pytest.fixture
def databricks(settings, tmp_path, monkeypatch):
    """Databricks settings, a fake workspace holding the landing volume, and the step runner."""
    on_databricks = dataclasses.replace(settings, target="databricks")
    fake = FakeWorkspace(
        root=tmp_path / "databricks",
        host=HOST,
        token=TOKEN,
        user="ana@example.com",
        volumes=[on_databricks.landing_volume],
    )
    monkeypatch.setattr(DatabricksStepRunner, "workspace_client", lambda self: fake.client())
    resource = SettingsResource.from_settings(on_databricks)
    runner = DatabricksStepRunner(settings=resource, host=HOST, token=TOKEN)
    return on_databricks, fake, {"settings": resource, "step_runner": runner}


def tick(resources, instance, cursor=None):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return labels_files_sensor(context), context.cursor


def land(fake, settings, name, content=b"flower_id,species\n1,setosa\n", day=DAY):
    folder = f"{settings.labels_landing_dir}/observed_date={day}"
    fake.client().files.upload(f"{folder}/{name}", io.BytesIO(content))
    return fake.local(f"{folder}/{name}")


def test_a_label_batch_landing_in_the_volume_starts_the_days_performance_run(databricks):
    settings, fake, resources = databricks
    with dg.instance_for_test() as instance:
        outcome, cursor = tick(resources, instance)
        assert (
            isinstance(outcome, dg.SkipReason) and "no label folder changed" in outcome.skip_message
        )
        land(fake, settings, ".batch-1.csv.tmp")  # in flight: not part of the day yet
        outcome, cursor = tick(resources, instance, cursor)
        assert isinstance(outcome, dg.SkipReason)

        path = land(fake, settings, "batch-20261125T000000000000Z-aaaaaaaa.csv")
        [request], cursor = tick(resources, instance, cursor)
        assert request.partition_key == DAY
        outcome, cursor = tick(resources, instance, cursor)
        assert isinstance(outcome, dg.SkipReason), "the same files: no second run"

        # A batch rewritten in place (new size and time) or deleted is a change, as locally.
        path.write_bytes(b"flower_id,species\n1,setosa\n2,virginica\n")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        [again], cursor = tick(resources, instance, cursor)
        assert again.partition_key == DAY and again.run_key != request.run_key
        fake.client().files.delete(f"{settings.labels_landing_dir}/observed_date={DAY}/{path.name}")
        [after_delete], cursor = tick(resources, instance, cursor)
        assert after_delete.partition_key == DAY


def test_a_missing_landing_volume_is_said_not_taken_for_no_labels(databricks, monkeypatch):
    settings, _, resources = databricks
    elsewhere = dataclasses.replace(settings, schema="other")
    resources = {**resources, "settings": SettingsResource.from_settings(elsewhere)}
    with dg.instance_for_test() as instance:
        outcome, _ = tick(resources, instance)
    assert isinstance(outcome, dg.SkipReason)
    assert "/Volumes/" in outcome.skip_message and "does not exist" in outcome.skip_message


def test_a_volume_these_credentials_cannot_read_is_a_skip_reason(databricks, monkeypatch):
    """The volume exists but the token lacks READ VOLUME: Unity Catalog answers 403."""
    settings, fake, resources = databricks
    denied = dataclasses.replace(fake, denied=[settings.landing_volume])
    monkeypatch.setattr(DatabricksStepRunner, "workspace_client", lambda self: denied.client())
    with dg.instance_for_test() as instance:
        outcome, cursor = tick(resources, instance)
    assert isinstance(outcome, dg.SkipReason), outcome
    assert "READ VOLUME" in outcome.skip_message
    assert settings.landing_volume in outcome.skip_message
    assert cursor is None  # nothing taken for an empty landing


def test_the_fake_refuses_a_denied_volume_as_the_platform_does(databricks):
    from databricks.sdk.errors import PermissionDenied

    settings, fake, _ = databricks
    land(fake, settings, "batch-1.csv")
    denied = dataclasses.replace(fake, denied=[settings.landing_volume]).client()
    with pytest.raises(PermissionDenied, match="READ VOLUME"):
        list(denied.files.list_directory_contents(str(settings.labels_landing_dir)))
    with pytest.raises(PermissionDenied):
        denied.files.get_directory_metadata(settings.landing_volume)
