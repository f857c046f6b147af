"""The serverless ingest step reads its training source from a Unity Catalog volume, as a retrain
that retraining_sensor started on Databricks asks it to (``source_path`` on the landing volume).

The task process sees ``/Volumes`` as the fake's volumes folder (``task_process.py``), which
refuses a path in no volume of the workspace and answers EACCES in a volume it was told to deny.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest

from iris_assets.core.source import load_bundled_iris
from iris_assets.steps.stores import table_store
from tests.assets.helpers import materialization_metadata, materialize, step_failure_messages


@pytest.fixture
def landing(settings, workspace):
    """The fake workspace with the landing volume too, and the labelled-flowers file's path."""
    workspace.add_volume(settings.landing_volume)
    return f"{settings.landing_volume}/labelled_flowers.parquet"


def labelled_flowers(count: int) -> pd.DataFrame:
    """Flowers as model_performance exports them: landing ids, measurements, species."""
    iris = load_bundled_iris().iloc[::5].head(count).reset_index(drop=True)
    iris["flower_id"] = range(100_001, 100_001 + len(iris))
    iris["sepal_length_cm"] += 0.05  # other flowers than the bundled ones
    return iris


def upload(workspace, path: str, frame: pd.DataFrame) -> None:
    content = io.BytesIO()
    frame.to_parquet(content, index=False)
    content.seek(0)
    workspace.client().files.upload(path, content, overwrite=True)


def ingest(defs, instance, source: str):
    config = {"ops": {"iris_features": {"config": {"source_path": source}}}}
    return materialize(defs, instance, "iris_features", run_config=config)


def test_the_serverless_ingest_reads_a_volume_source_and_takes_it_whole(
    settings, workspace, databricks_defs, instance, landing
):
    bundled = materialize(databricks_defs, instance, "iris_features")
    assert bundled.success, step_failure_messages(bundled)
    flowers = labelled_flowers(30)
    upload(workspace, landing, flowers)

    first = ingest(databricks_defs, instance, landing)
    assert first.success, step_failure_messages(first)
    metadata = materialization_metadata(first, "iris_features")
    assert metadata["source"] == landing, "known by its volume path, as on serverless"
    assert (metadata["source_rows"], metadata["rows_inserted"]) == (30, 30)

    # A label retracted and one corrected: the next retrain's ingest offers the file without it.
    retracted = int(flowers["flower_id"].iloc[0])
    changed = flowers.iloc[1:].copy()
    changed.loc[changed.index[0], "species"] = (int(changed["species"].iloc[0]) + 1) % 3
    upload(workspace, landing, changed)
    second = ingest(databricks_defs, instance, landing)
    assert second.success, step_failure_messages(second)
    metadata = materialization_metadata(second, "iris_features")
    assert (metadata["rows_removed"], metadata["rows_updated"]) == (1, 1)
    assert metadata["dagster/row_count"] == 150 + 29
    assert [run.task["task_key"] for run in workspace.runs.values()] == ["iris_ingest"] * 3
    held = table_store(settings).read(settings.feature_table, ["flower_id", "species", "source"])
    from_volume = held[held["source"] == landing].set_index("flower_id")
    assert retracted not in from_volume.index and len(from_volume) == 29
    assert from_volume.loc[int(changed["flower_id"].iloc[0]), "species"] == int(
        changed["species"].iloc[0]
    )


def test_a_source_outside_every_volume_fails_the_step_saying_it_does_not_exist(
    settings, workspace, databricks_defs, instance, landing
):
    # A folder beside the volumes that is no volume of the workspace, holding a readable file:
    # the mount has no such path, so neither directly nor through ``..`` is it read.
    undeclared = workspace.local_volumes / settings.catalog / settings.schema / "undeclared"
    undeclared.mkdir(parents=True)
    labelled_flowers(30).to_parquet(undeclared / "flowers.parquet", index=False)
    schema = f"/Volumes/{settings.catalog}/{settings.schema}"
    for nowhere in (
        f"{schema}/undeclared/flowers.parquet",
        f"{settings.landing_volume}/../undeclared/flowers.parquet",
    ):
        result = ingest(databricks_defs, instance, nowhere)
        assert not result.success, nowhere
        assert f"source {nowhere} does not exist" in step_failure_messages(result)


def test_a_source_in_a_volume_these_credentials_cannot_read_fails_naming_the_grant(
    settings, workspace, databricks_defs, instance, landing
):
    upload(workspace, landing, labelled_flowers(30))
    workspace.denied = (settings.landing_volume,)
    result = ingest(databricks_defs, instance, landing)
    assert not result.success
    message = step_failure_messages(result)
    assert f"source {landing} cannot be read with these credentials" in message
    assert "READ VOLUME" in message
