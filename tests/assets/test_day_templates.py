"""The day templates (tests/assets/conftest.py) hold what the runs they stand for leave."""

import dagster as dg
import pytest

from tests.conftest import new_instance

# The column naming the run that wrote a row: each home's own, as are the times rows were
# written (``*_at`` but ``observed_at``, when a flower was seen).
RUN_COLUMNS = ("run_id",)


def tables(warehouse):
    """Every Delta table under ``warehouse``, by its ``catalog.schema.table`` name."""
    return {
        ".".join(log.parent.relative_to(warehouse).parts) for log in warehouse.rglob("_delta_log")
    }


def rows_alike(mine, held, what):
    """The same rows in the same order, but for the columns each home writes for itself (a
    label file is named by when it landed: only how many there are is alike)."""
    assert list(mine.columns) == list(held.columns), what
    own = [c for c in mine.columns if c in RUN_COLUMNS or c.endswith("_at") and c != "observed_at"]
    if "label_file" in mine.columns:
        assert mine["label_file"].nunique() == held["label_file"].nunique(), what
        own.append("label_file")
    assert mine.drop(columns=own).equals(held.drop(columns=own)), what


def held_like_the_runs_left(settings, graph, root, tmp_path, asset):
    """Every table (its rows, in the order a read returns them), the labelled flowers'
    export, and ``asset``'s latest materialization (its numbers) in this test's home and
    instance are the template ``root``'s, but for times and run ids."""
    import pandas as pd

    from iris_assets.core.tables import DeltaTableStore
    from iris_assets.settings import load_settings
    from iris_assets.steps.performance import labelled_flowers_path
    from tests.assets.conftest import HOME, RUNS, import_runs
    from tests.assets.test_monitoring_retraining import DAY

    theirs = load_settings({"IRIS_HOME": str(root / HOME)})
    names = tables(settings.warehouse)
    assert names == tables(theirs.warehouse) and settings.inference_table in names
    for name in sorted(names):
        mine = DeltaTableStore(settings.warehouse).read(name)
        held = DeltaTableStore(theirs.warehouse).read(name)
        assert name != settings.inference_table or len(mine) > 0
        rows_alike(mine, held, name)
    export = labelled_flowers_path(settings)
    assert export.exists() == labelled_flowers_path(theirs).exists()
    if export.exists():
        mine, held = (pd.read_parquet(labelled_flowers_path(s)) for s in (settings, theirs))
        rows_alike(mine, held, export.name)
    key = dg.AssetKey(asset)
    [mine] = graph[1].fetch_materializations(key, limit=1).records
    with new_instance(tmp_path / "theirs", preload=import_runs((root / RUNS).read_text())) as i:
        [held] = i.fetch_materializations(key, limit=1).records
    assert mine.partition_key == held.partition_key == DAY
    timeless = [k for k in mine.asset_materialization.metadata if "_at" not in k and "run" not in k]
    assert set(mine.asset_materialization.metadata) == set(held.asset_materialization.metadata)
    numbers = 0
    for name in timeless:
        ours = mine.asset_materialization.metadata[name].value
        if isinstance(ours, int | float) and not isinstance(ours, bool):
            assert ours == held.asset_materialization.metadata[name].value, name
            numbers += 1
    assert numbers >= 5, f"only {numbers} numbers compared of {sorted(timeless)}"


@pytest.mark.parametrize("rows", [120, 150])
def test_a_scored_day_template_holds_what_its_run_leaves(
    settings, graph, champion, day_templates, tmp_path, rows
):
    """``scored_day_of_{rows}`` stands for ``score(graph, settings, DAY, rows)`` on the
    champion, and its ``scored_rows`` are, row for row and in order, what that returns: tests
    slice them (``scored.iloc[:75]``), so their order is part of what a template holds."""
    from iris_assets.settings import load_settings
    from tests.assets.conftest import HOME
    from tests.assets.test_monitoring_retraining import DAY, score, scored_rows

    scored = score(graph, settings, DAY, rows)
    root = day_templates(rows, judged=False)
    held = scored_rows(load_settings({"IRIS_HOME": str(root / HOME)}))
    assert len(scored) == rows
    rows_alike(scored, held, "the scored rows")
    held_like_the_runs_left(settings, graph, root, tmp_path, "inference_table")


@pytest.mark.parametrize("rows", [120, 150])
def test_a_judged_day_template_holds_what_its_runs_leave(
    settings, graph, champion, day_templates, tmp_path, rows
):
    """The judged templates stand for ``label_and_judge(graph, settings, score(graph,
    settings, DAY, rows), rows=60, drop=0.0)`` on the champion (tests/assets/conftest.py)."""
    from tests.assets.test_monitoring_retraining import DAY, label_and_judge, score

    label_and_judge(graph, settings, score(graph, settings, DAY, rows), rows=60, drop=0.0)
    root = day_templates(rows, judged=True)
    held_like_the_runs_left(settings, graph, root, tmp_path, "model_performance")
