"""Late labels and live performance through the real graph: Pipes steps, Delta, sqlite MLflow."""

import json

import dagster as dg
import pandas as pd
import pytest

from iris_assets.assets.monitoring import labels_files_sensor
from iris_assets.core.labels import labelled_ids, simulate_labels
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.validation import ID_RULE
from iris_assets.steps.performance import labelled_flowers_path
from iris_assets.steps.stores import table_store
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    run_job,
    step_failure_messages,
)

DAY = "2026-11-22"


@pytest.fixture
def scored_day(settings, graph, champion):
    """A champion (trained by the real steps) that scored 120 flowers on DAY."""
    defs, instance = graph
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(120, DAY, seed=11), DAY)
    scored = run_job(defs, instance, "inference_job", partition_key=DAY)
    assert scored.success, step_failure_messages(scored)
    return table_store(settings).read(settings.inference_table)


def land_labels(settings, scored, rows=None, drop=0.0, seed=1, fmt="parquet"):
    labels = simulate_labels(
        scored,
        rows=rows,
        accuracy_drop=drop,
        skip=labelled_ids(settings.labels_landing_dir, DAY),
        seed=seed,
    )
    LandingArea(settings.labels_landing_dir).write_batch(labels, DAY, fmt=fmt)
    return labels


def performance(graph, day=DAY, **config):
    defs, instance = graph
    run_config = {"ops": {"model_performance": {"config": config}}} if config else None
    result = run_job(defs, instance, "performance_job", partition_key=day, run_config=run_config)
    assert result.success, step_failure_messages(result)
    return result, materialization_metadata(result, "model_performance")


def check_metadata(result, name):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return {k: v.value for k, v in evaluation.metadata.items()}


def test_bad_label_rows_are_quarantined_and_every_row_is_accounted_for(settings, graph, scored_day):
    good = land_labels(settings, scored_day, rows=40)
    ids = scored_day["flower_id"].tolist()
    labelled = set(good["flower_id"])
    free = [i for i in ids if i not in labelled]
    bad = pd.DataFrame(
        {
            "flower_id": [
                str(free[0]),
                str(free[1]),
                "",
                "abc",
                str(free[2]),
                str(free[3]),
                str(free[3]),
                "999",
                str(free[0]),
            ],
            "species": ["setosa", "2", "1", "0", "tulip", "", "virginica", "1", "versicolor"],
        }
    )
    LandingArea(settings.labels_landing_dir).write_batch(bad, DAY, fmt="csv")
    broken = LandingArea(settings.labels_landing_dir).day_dir(DAY) / "notes.txt"
    broken.write_text("call the lab about the missing batch")

    result, metadata = performance(graph)

    assert (metadata["label_landing_rows"], metadata["labelled_rows"]) == (49, 43)
    assert metadata["labels_rejected"] == 6
    assert check_results(result)["labels_accounted"] is True
    rejects = table_store(settings).read(
        settings.rejects_table, predicate=rejects_slice("labels", DAY)
    )
    reasons = sorted(rejects["reason"])
    assert len(reasons) == 7  # six rows and the file nobody can read as labels
    assert "flower_id is missing" in reasons
    assert ID_RULE in reasons
    [disagree] = [r for r in reasons if r.startswith("duplicate flower_id")]
    assert disagree.startswith("duplicate flower_id: the labels disagree, kept setosa")
    assert "not versicolor" in disagree
    assert any(r.startswith("species is not one of") for r in reasons)
    assert "species is missing" in reasons
    assert any("999 was not scored on 2026-11-22" in r for r in reasons)
    assert any("notes.txt" in r for r in reasons)
    records = [json.loads(r) for r in rejects["record"] if "file" not in json.loads(r)]
    assert {"flower_id": "abc", "species": "0"} in [
        {k: v for k, v in r.items() if k in ("flower_id", "species")} for r in records
    ]
    stored = table_store(settings).read(settings.labels_table)
    assert len(stored) == 43 and stored["flower_id"].is_unique
    first_wins = stored.set_index("flower_id").loc[free[0], "species_name"]
    assert first_wins == "setosa", "the first label in file order counts"
    assert stored.set_index("flower_id").loc[free[3], "species_name"] == "virginica"
    assert set(stored["model_version"]) == {"1"}


def test_performance_is_recomputed_when_more_labels_land(settings, graph, scored_day):
    defs, instance = graph
    land_labels(settings, scored_day, rows=20)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        first = labels_files_sensor(context)
        cursor = context.cursor
    assert [r.partition_key for r in first] == [DAY]
    _, before = performance(graph)
    assert before["labelled_rows"] == 20 and before["coverage"] == pytest.approx(20 / 120, abs=1e-3)

    with dg.build_sensor_context(instance=instance, resources=defs.resources, cursor=cursor) as c:
        idle = labels_files_sensor(c)
    assert isinstance(idle, dg.SkipReason), "nothing changed: no new run"

    land_labels(settings, scored_day, rows=50, seed=2)
    with dg.build_sensor_context(instance=instance, resources=defs.resources, cursor=cursor) as c:
        again = labels_files_sensor(c)
    assert [r.partition_key for r in again] == [DAY]
    assert again[0].run_key != first[0].run_key
    _, after = performance(graph)
    assert after["labelled_rows"] == 70 and after["coverage"] == pytest.approx(70 / 120, abs=1e-3)
    rows = table_store(settings).read(settings.performance_table)
    assert len(rows) == 1, "the day is replaced, not appended"
    assert rows["labelled_rows"].tolist() == [70]
    assert "| 2026-11-22 | v1 | 70 / 120 |" in after["trend"]
    flowers = pd.read_parquet(labelled_flowers_path(settings))
    assert len(flowers) == 70 and {"flower_id", "species"} <= set(flowers.columns)


def test_the_decay_check_fires_on_an_accuracy_drop(settings, graph, scored_day):
    land_labels(settings, scored_day, rows=60, drop=0.5)
    result, metadata = performance(graph)
    assert check_results(result)["live_accuracy"] is False
    summary = check_metadata(result, "live_accuracy")["summary"]
    assert "is below the bar 0.90 minus margin 0.05" in summary
    assert metadata["accuracy"] < 0.7
    assert "DECAYED" in metadata["trend"]


def test_the_decay_check_stays_quiet_below_the_minimum_sample(settings, graph, scored_day):
    land_labels(settings, scored_day, rows=12, drop=1.0)  # every label says the model is wrong
    result, metadata = performance(graph)
    assert metadata["accuracy"] == 0.0
    assert check_results(result)["live_accuracy"] is True
    assert "fewer than the 30 needed" in check_metadata(result, "live_accuracy")["summary"]

    strict, _ = performance(graph, min_labelled=10)
    assert check_results(strict)["live_accuracy"] is False, "10 wrong labels of 12 are enough"


def test_an_accurate_model_passes_with_many_labels(settings, graph, scored_day):
    land_labels(settings, scored_day)  # every scored flower, no drop
    result, metadata = performance(graph)
    assert metadata["labelled_rows"] == 120 and metadata["coverage"] == 1.0
    assert metadata["accuracy"] > 0.9
    assert check_results(result)["live_accuracy"] is True
    by_version = metadata["by_version"]["1"]
    assert set(by_version) >= {"f1_macro", "recall_setosa", "recall_versicolor"}


def test_labels_that_arrive_before_their_day_is_scored_count_once_it_is(
    settings, graph, scored_day
):
    defs, instance = graph
    early = "2026-11-25"
    flowers = simulate_flowers(40, early, seed=9)
    labels = pd.DataFrame({"flower_id": flowers["flower_id"], "species": "versicolor"})
    LandingArea(settings.labels_landing_dir).write_batch(labels, early)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        labels_files_sensor(context)
        cursor = context.cursor

    result, waiting = performance(graph, day=early)
    assert (waiting["labelled_rows"], waiting["labels_rejected"]) == (0, 40)
    assert check_results(result)["labels_accounted"] is True

    LandingArea(settings.landing_dir).write_batch(flowers, early)
    assert run_job(defs, instance, "inference_job", partition_key=early).success
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, cursor=cursor
    ) as context:
        requests = labels_files_sensor(context)
    assert [r.partition_key for r in requests] == [early], "re-scored: its labels judged again"
    _, counted = performance(graph, day=early)
    assert (counted["labelled_rows"], counted["labels_rejected"]) == (40, 0)
    rejects = table_store(settings).read(
        settings.rejects_table, predicate=rejects_slice("labels", early)
    )
    assert rejects.empty, "the day's rejects slice is replaced, not piled up"
