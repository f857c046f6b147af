"""The judged-day templates (tests/assets/conftest.py) hold what the runs they stand for leave."""

import dagster as dg

from tests.conftest import new_instance


def test_a_judged_day_template_holds_what_its_runs_leave(
    settings, graph, champion, judged_day_templates, tmp_path
):
    """``judged_day`` stands for ``label_and_judge(graph, settings, score(graph, settings, DAY),
    rows=60, drop=0.0)`` on the champion (tests/assets/conftest.py): run here, those runs leave
    the tables and the model_performance report the template holds, but for times and run ids."""
    from iris_assets.core.tables import DeltaTableStore
    from iris_assets.settings import load_settings
    from tests.assets.conftest import HOME, RUNS, import_runs
    from tests.assets.test_monitoring_retraining import DAY, label_and_judge, score

    label_and_judge(graph, settings, score(graph, settings, DAY), rows=60, drop=0.0)
    root = judged_day_templates(120)
    theirs = load_settings({"IRIS_HOME": str(root / HOME)})
    columns = {
        settings.inference_table: ["flower_id", "prediction", "probability", "model_version"],
        settings.labels_table: ["flower_id", "species", "correct", "label_file"],
    }
    for name, wanted in columns.items():
        mine = DeltaTableStore(settings.warehouse).read(name, wanted, order_by="flower_id")
        held = DeltaTableStore(theirs.warehouse).read(name, wanted, order_by="flower_id")
        if "label_file" in wanted:  # named by when it landed: only the count of files is alike
            assert mine["label_file"].nunique() == held["label_file"].nunique() == 1
            mine, held = mine.drop(columns="label_file"), held.drop(columns="label_file")
        assert len(mine) > 0 and mine.equals(held), name
    key = dg.AssetKey("model_performance")
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
