"""Nothing is lost silently: a whole-source ingest deletes a source's flowers only deliberately.

The attacks of review 10, through the real graph: a source file truncated to its header or with
every row broken, a second source cut to nothing or to a few rows, a file that copies bundled
flowers and is then emptied, a ``latest.csv`` link retargeted. Each must keep every flower
(the run refused before the feature table is touched, with a message saying how to retract
deliberately) or leave the flowers with the source that delivered them; a deliberate
retraction (``retract_missing: true``) removes them and says so.
"""

import os

import pandas as pd

from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.source import BUNDLED_SOURCE, load_source
from iris_assets.steps.stores import table_store
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    materialize,
    step_failure_messages,
)


def run_ingest(graph, source: str, **config):
    defs, instance = graph
    config = {"source_path": source, **config}
    return materialize(
        defs, instance, "iris_features", run_config={"ops": {"iris_features": {"config": config}}}
    )


def ingested(graph, source: str = "", **config) -> dict:
    result = run_ingest(graph, source, **config)
    assert result.success, step_failure_messages(result)
    return materialization_metadata(result, "iris_features")


def refused(graph, source: str) -> str:
    result = run_ingest(graph, source)
    assert not result.success, "the run must fail, not delete the source's flowers"
    assert not result.get_asset_materialization_events(), "no materialization is reported"
    return step_failure_messages(result)


def run_logs(graph, result) -> str:
    _, instance = graph
    return "\n".join(e.user_message for e in instance.all_logs(result.run_id))


def tmp(tmp_path):
    return tmp_path.resolve()  # sources are named by their resolved path


def field_flowers(n: int = 10) -> pd.DataFrame:
    flowers = load_source(None).head(n).copy()
    flowers["flower_id"] = [10**6 + i for i in range(n)]
    flowers["sepal_length_cm"] = flowers["sepal_length_cm"] + 0.05
    return flowers


def test_a_source_file_with_every_row_broken_is_refused_and_keeps_its_flowers(
    settings, graph, tmp_path
):
    store = table_store(settings)
    path = tmp(tmp_path) / "flowers.csv"
    load_source(None).to_csv(path, index=False)
    assert ingested(graph, str(path))["rows_inserted"] == 150
    version = store.version(settings.feature_table)
    broken = load_source(None).astype(str)
    broken["sepal_length_cm"] = broken["sepal_length_cm"].str.replace(".", ",")  # decimal comma
    broken.to_csv(path, index=False)

    message = refused(graph, str(path))
    assert f"refused to ingest {path}" in message
    assert "offers no valid row (150 rejected)" in message
    assert "retract_missing: true" in message
    assert store.count(settings.feature_table) == 150
    assert store.version(settings.feature_table) == version, "the feature table is not touched"
    rejects = store.read(settings.rejects_table, predicate=rejects_slice("ingest", str(path)))
    assert len(rejects) == 150, "each broken row is quarantined with its reason"


def test_a_source_file_truncated_to_its_header_is_refused(settings, graph, tmp_path):
    store = table_store(settings)
    path = tmp(tmp_path) / "flowers.csv"
    load_source(None).to_csv(path, index=False)
    ingested(graph, str(path))
    load_source(None).head(0).to_csv(path, index=False)  # a collector mid-rewrite
    message = refused(graph, str(path))
    assert "it has no rows" in message and "delete 150 of the 150 flowers" in message
    assert store.count(settings.feature_table) == 150


def test_a_truncated_second_source_is_refused_then_retracted_only_when_asked(
    settings, graph, tmp_path
):
    store = table_store(settings)
    ingested(graph)  # the bundled Iris
    path = tmp(tmp_path) / "field.csv"
    field_flowers().to_csv(path, index=False)
    ingested(graph, str(path))
    field_flowers().head(0).to_csv(path, index=False)

    message = refused(graph, str(path))
    assert "delete 10 of the 10 flowers" in message and "flower_id 1000000" in message
    assert store.count(settings.feature_table) == 160

    result = run_ingest(graph, str(path), retract_missing=True)
    assert result.success, step_failure_messages(result)
    assert materialization_metadata(result, "iris_features")["rows_removed"] == 10
    assert f"removed 10 of the 10 flowers {path} delivered" in run_logs(graph, result)
    table = store.read(settings.feature_table)
    assert len(table) == 150 and set(table["source"]) == {BUNDLED_SOURCE}


def test_a_source_losing_most_of_its_rows_is_refused_and_a_few_is_a_correction(
    settings, graph, tmp_path
):
    store = table_store(settings)
    ingested(graph)
    path = tmp(tmp_path) / "field.csv"
    flowers = field_flowers(20)
    flowers.to_csv(path, index=False)
    ingested(graph, str(path))

    flowers.head(5).to_csv(path, index=False)  # 15 of 20 gone: more than half and more than 5
    assert "delete 15 of the 20 flowers" in refused(graph, str(path))
    assert store.count(settings.feature_table) == 170

    flowers.head(17).to_csv(path, index=False)  # 3 rows edited away: an ordinary correction
    result = run_ingest(graph, str(path))
    assert result.success, step_failure_messages(result)
    assert materialization_metadata(result, "iris_features")["rows_removed"] == 3
    assert f"removed 3 of the 20 flowers {path} delivered" in run_logs(graph, result)
    assert store.count(settings.feature_table) == 167


def test_a_source_copying_bundled_flowers_never_takes_them_over(settings, graph, tmp_path):
    store = table_store(settings)
    ingested(graph)
    bundled = store.read(settings.feature_table, order_by="flower_id")
    copy = tmp(tmp_path) / "copy.csv"
    load_source(None).head(20).to_csv(copy, index=False)  # the same 20 flowers, same ids
    copied = ingested(graph, str(copy))
    assert (copied["rows_updated"], copied["rows_held_by_other_sources"]) == (0, 20)

    load_source(None).head(0).to_csv(copy, index=False)
    emptied = ingested(graph, str(copy))  # it holds nothing, so emptying it deletes nothing
    assert emptied["rows_removed"] == 0
    pd.testing.assert_frame_equal(store.read(settings.feature_table, order_by="flower_id"), bundled)


def test_a_retargeted_link_is_another_source_and_cannot_overwrite_the_first(
    settings, graph, tmp_path
):
    """A link names the file it resolves to at ingest (docs/design.md, Identity)."""
    store = table_store(settings)
    v1, v2, latest = (tmp(tmp_path) / name for name in ("v1.csv", "v2.csv", "latest.csv"))
    flowers = field_flowers()
    flowers.to_csv(v1, index=False)
    fixed = flowers.copy()
    fixed.loc[0, "sepal_length_cm"] = 9.9  # a correction
    fixed.to_csv(v2, index=False)
    os.symlink(v1, latest)
    ingested(graph)
    ingested(graph, str(latest))
    before = store.read(settings.feature_table, order_by="flower_id")
    assert set(before.loc[before["flower_id"] >= 10**6, "source"]) == {str(v1)}

    latest.unlink()
    os.symlink(v2, latest)
    result = run_ingest(graph, str(latest))
    assert result.success, step_failure_messages(result)
    assert check_results(result)["source_rows_accepted"] is False, "the refused correction warns"
    metadata = materialization_metadata(result, "iris_features")
    assert metadata["source"] == str(v2)
    assert (metadata["rows_conflicting"], metadata["rows_held_by_other_sources"]) == (1, 9)
    reasons = store.read(settings.rejects_table, predicate=rejects_slice("ingest", str(v2)))[
        "reason"
    ]
    assert reasons.str.contains(f"already holds a different flower from {v1}").all()
    pd.testing.assert_frame_equal(store.read(settings.feature_table, order_by="flower_id"), before)

    # The correction goes through the file the flowers came from.
    fixed.to_csv(v1, index=False)
    assert ingested(graph, str(v1))["rows_updated"] == 1
    table = store.read(settings.feature_table)
    assert table.loc[table["flower_id"] == 10**6, "sepal_length_cm"].item() == 9.9
