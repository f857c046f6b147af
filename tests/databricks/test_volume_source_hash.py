"""The serverless ingest says which content it read: ``source_sha256`` of the volume file comes
back through Pipes, so retraining_sensor can tell an ingest of the file model_performance wrote
from one that read it before the rewrite (``assets.retraining.labelled_source_ingested_since``)."""

from __future__ import annotations

import hashlib
import io

from tests.assets.helpers import materialization_metadata, step_failure_messages
from tests.databricks.test_volume_sources import (  # noqa: F401
    ingest,
    labelled_flowers,
    landing,
)


def put(workspace, path: str, frame) -> str:
    content = io.BytesIO()
    frame.to_parquet(content, index=False)
    data = content.getvalue()
    workspace.client().files.upload(path, io.BytesIO(data), overwrite=True)
    return hashlib.sha256(data).hexdigest()


def test_the_serverless_ingest_reports_the_hash_of_the_volume_file_it_read(
    settings,
    workspace,
    databricks_defs,
    instance,
    landing,  # noqa: F811
):
    first = put(workspace, landing, labelled_flowers(30))
    result = ingest(databricks_defs, instance, landing)
    assert result.success, step_failure_messages(result)
    assert materialization_metadata(result, "iris_features")["source_sha256"] == first

    second = put(workspace, landing, labelled_flowers(29))
    assert second != first
    result = ingest(databricks_defs, instance, landing)
    assert result.success, step_failure_messages(result)
    assert materialization_metadata(result, "iris_features")["source_sha256"] == second
