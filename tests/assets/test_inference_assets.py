"""Batch inference as an asset: quarantine, counts that add up, partition replacement, drift."""

import pandas as pd

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.quarantine import rejects_slice
from iris_assets.steps.stores import table_store
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    materialize,
    run_job,
    sensor_ticker,
    step_failure_messages,
)

DAY = "2026-11-21"


def score_day(graph, day=DAY):
    defs, instance = graph
    result = run_job(defs, instance, "inference_job", partition_key=day)
    assert result.success, step_failure_messages(result)
    return result


def bad_batch() -> pd.DataFrame:
    good = simulate_flowers(3, DAY, seed=3).astype(str)
    rows = [
        {**good.iloc[0].to_dict()},
        {**good.iloc[1].to_dict(), "petal_length_cm": ""},
        {**good.iloc[2].to_dict(), "sepal_width_cm": "wide"},
        {**good.iloc[0].to_dict()},  # the same flower twice
        {**good.iloc[2].to_dict(), "flower_id": "77", "petal_width_cm": "-2"},
        {**good.iloc[2].to_dict(), "flower_id": "78", "sepal_length_cm": "900"},
    ]
    return pd.DataFrame(rows)


def test_bad_rows_are_quarantined_and_every_row_is_accounted_for(settings, graph, champion):
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(50, DAY, seed=1), DAY)
    landing.write_batch(bad_batch(), DAY, fmt="csv")
    (landing.day_dir(DAY) / "_SUCCESS").write_text("")  # a job's marker: listed, not read

    result = score_day(graph)
    metadata = materialization_metadata(result, "inference_table")
    assert metadata["files_ignored"] == ["_SUCCESS (a job's success marker)"]
    assert (metadata["landing_rows"], metadata["rows_scored"], metadata["rows_rejected"]) == (
        56,
        51,
        5,
    )
    assert check_results(result)["inference_output_valid"] is True
    rejects = table_store(settings).read(
        settings.rejects_table, predicate=rejects_slice("inference", DAY)
    )
    assert sorted(rejects["reason"]) == [
        "duplicate flower_id",
        "petal_length_cm is missing",
        "petal_width_cm must be positive",
        "sepal_length_cm exceeds 50 cm",
        "sepal_width_cm is not a number",
    ]
    scored = table_store(settings).read(settings.inference_table)
    assert len(scored) == 51 and set(scored["model_version"]) == {champion}
    assert scored["probability"].between(0, 1).all()


def test_rerunning_a_day_replaces_it(settings, graph, champion):
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(40, DAY, seed=1), DAY)
    landing.write_batch(simulate_flowers(30, "2026-11-22", seed=2), "2026-11-22")
    score_day(graph)
    score_day(graph, "2026-11-22")
    score_day(graph)
    store = table_store(settings)
    assert store.count(settings.inference_table, predicate=f"observed_date = '{DAY}'") == 40
    assert store.count(settings.inference_table) == 70

    landing.write_batch(simulate_flowers(5, DAY, seed=9), DAY)
    score_day(graph)
    assert store.count(settings.inference_table, predicate=f"observed_date = '{DAY}'") == 45
    assert store.distinct(settings.inference_table, "observed_date") == [DAY, "2026-11-22"]


def test_a_drifted_day_warns_without_failing_the_run(settings, graph, champion):
    LandingArea(settings.landing_dir).write_batch(
        simulate_flowers(300, DAY, seed=4, drift=True), DAY
    )
    result = score_day(graph)
    assert check_results(result) == {"inference_output_valid": True, "feature_drift": False}
    [drift] = [e for e in result.get_asset_check_evaluations() if e.check_name == "feature_drift"]
    assert drift.severity.value == "WARN"
    assert "drift in" in drift.metadata["summary"].value


def test_a_day_without_landing_rows_fails_and_keeps_its_partition(settings, graph, champion):
    defs, instance = graph
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(20, DAY, seed=2), DAY)
    score_day(graph)
    for path in landing.day_dir(DAY).iterdir():
        path.rename(path.with_name("flowers.txt"))  # the day's file under a name nobody reads
    result = run_job(defs, instance, "inference_job", partition_key=DAY)
    assert not result.success
    message = step_failure_messages(result)
    assert f"no landing rows for {DAY}" in message and "flowers.txt" in message
    assert table_store(settings).count(settings.inference_table, f"observed_date = '{DAY}'") == 20


def test_scoring_without_a_champion_says_how_to_get_one(settings, graph):
    defs, instance = graph
    assert materialize(defs, instance, "iris_features", "challenger_model").success
    result = run_job(defs, instance, "inference_job", partition_key=DAY)
    assert not result.success
    assert "iris approve" in step_failure_messages(result)


def test_the_daily_schedule_scores_the_day_that_just_ended():
    from datetime import UTC, datetime

    import dagster as dg

    from iris_assets.assets.inference import daily_inference_schedule

    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    )
    request = daily_inference_schedule(context)
    assert request.partition_key == "2026-11-25"
    assert request.run_key == "inference-2026-11-25"


def test_the_landing_sensor_scores_a_day_again_when_late_files_arrive(settings, graph):
    import dagster as dg

    from iris_assets.assets.inference import landing_files_sensor

    defs, instance = graph

    def tick(cursor):
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
        ) as context:
            result = landing_files_sensor(context)
            return result, context.cursor

    landing = LandingArea(settings.landing_dir)
    result, cursor = tick(None)
    assert isinstance(result, dg.SkipReason)
    landing.write_batch(simulate_flowers(5, DAY, seed=1), DAY)
    [first], cursor = tick(cursor)
    assert first.partition_key == DAY
    again, cursor = tick(cursor)
    assert isinstance(again, dg.SkipReason), "an unchanged day is not scored twice"
    landing.write_batch(simulate_flowers(5, DAY, seed=2), DAY)  # late data, after scoring
    [late], cursor = tick(cursor)
    assert late.partition_key == DAY and late.run_key != first.run_key


def test_the_landing_sensor_repairs_a_day_whose_partition_and_rejects_disagree(
    settings, graph, champion
):
    import dagster as dg

    from iris_assets.assets.inference import landing_files_sensor
    from iris_assets.core.day_lock import day_lock

    defs, instance = graph

    def tick(cursor):
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
        ) as context:
            return landing_files_sensor(context), context.cursor

    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(20, DAY, seed=1), DAY)
    landing.write_batch(bad_batch(), DAY, fmt="csv")
    [_], cursor = tick(None)
    score_day(graph)
    quiet, cursor = tick(cursor)
    assert isinstance(quiet, dg.SkipReason), "a day that adds up is left alone"

    # A later run of the day committed its partition and died before its rejects commit.
    store = table_store(settings)
    rows = store.read(settings.inference_table).assign(run_id="killed-run")
    store.replace_partition(settings.inference_table, rows, "observed_date", DAY)
    with day_lock(settings.env_home, DAY):
        busy, cursor = tick(cursor)
    assert isinstance(busy, dg.SkipReason), "a day some run is scoring is not repaired under it"
    [repair], cursor = tick(cursor)
    assert repair.partition_key == DAY and "iris/repair" in repair.tags
    score_day(graph)
    healed, cursor = tick(cursor)
    assert isinstance(healed, dg.SkipReason), healed


def landing_tick(graph):
    """A function running one tick of landing_files_sensor: (result, new cursor)."""
    from iris_assets.assets.inference import landing_files_sensor

    return sensor_ticker(graph, landing_files_sensor)


def rewrite_keeping_size_and_mtime(path, frame) -> None:
    """``cp -p`` of changed, same-size data over ``path``: same inode, size and mtime."""
    import os
    import shutil
    import time

    before = path.stat()
    time.sleep(0.05)  # the rewrite comes after the scan, as it does in life
    side = path.with_name(f".{path.name}.tmp")
    frame.to_csv(side, index=False)
    assert side.stat().st_size == before.st_size
    os.utime(side, ns=(before.st_atime_ns, before.st_mtime_ns))
    shutil.copy2(side, path)
    side.unlink()
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_the_landing_sensor_starts_from_what_is_already_scored(settings, graph, champion):
    """As after `make demo`: the day is scored, the sensor has no cursor yet."""
    import dagster as dg

    tick = landing_tick(graph)
    landing = LandingArea(settings.landing_dir)
    flowers = simulate_flowers(12, DAY, seed=1)
    path = landing.write_batch(flowers, DAY, fmt="csv")
    score_day(graph)
    first, cursor = tick(None)
    assert isinstance(first, dg.SkipReason), "the scored day is not scored a second time"
    again, cursor = tick(cursor)
    assert isinstance(again, dg.SkipReason)

    # The file is rewritten in place with other values, its size and mtime kept.
    swapped = flowers.assign(sepal_length_cm=flowers["sepal_length_cm"][::-1].to_numpy())
    rewrite_keeping_size_and_mtime(path, swapped)
    [changed], cursor = tick(cursor)
    assert changed.partition_key == DAY
    [fresh], _ = tick(None)  # no cursor: the commit's fingerprint is not these files'
    assert fresh.partition_key == DAY and fresh.run_key == changed.run_key
    score_day(graph)
    settled, cursor = tick(None)
    assert isinstance(settled, dg.SkipReason), "scored from these files now"


def test_the_landing_sensor_reads_an_older_cursor_without_scoring_again(settings, graph):
    import json

    import dagster as dg

    tick = landing_tick(graph)
    landing = LandingArea(settings.landing_dir)
    path = landing.write_batch(simulate_flowers(6, DAY, seed=2), DAY, fmt="csv")
    older = json.dumps({"files": {DAY: landing.mtime_fingerprint(DAY)}, "audited": {}})
    same, cursor = tick(older)
    assert isinstance(same, dg.SkipReason), "unchanged since the older release's tick"
    rewrite_keeping_size_and_mtime(path, pd.read_csv(path).iloc[::-1])
    [changed], _ = tick(cursor)
    assert changed.partition_key == DAY

    # A file the older release skipped unreported: the day is looked at again, and reported.
    older = json.dumps({"files": {DAY: landing.mtime_fingerprint(DAY)}, "audited": {}})
    (landing.day_dir(DAY) / "_late.csv").write_text("flower_id\n1\n")
    [again], _ = tick(older)
    assert again.partition_key == DAY


def test_a_scored_day_whose_only_file_turns_unreadable_is_reported_not_rerun_forever(
    settings, graph, champion
):
    import dagster as dg

    defs, instance = graph
    tick = landing_tick(graph)
    landing = LandingArea(settings.landing_dir)
    path = landing.write_batch(simulate_flowers(10, DAY, seed=3), DAY)
    score_day(graph)
    _, cursor = tick(None)
    path.write_bytes(b"PAR1" + b"\0" * 64)  # the day's file, corrupted in place
    [request], cursor = tick(cursor)
    assert request.partition_key == DAY
    result = run_job(defs, instance, "inference_job", partition_key=DAY)
    assert not result.success
    message = step_failure_messages(result)
    assert path.name in message and "in the rejects table" in message
    store = table_store(settings)
    assert store.count(settings.inference_table, f"observed_date = '{DAY}'") == 10
    rejects = store.read(settings.rejects_table, predicate=rejects_slice("inference", DAY))
    assert rejects["record"].tolist() == [f'{{"file": "{path.name}"}}']
    for _ in range(2):
        quiet, cursor = tick(cursor)
        assert isinstance(quiet, dg.SkipReason), "a run cannot repair it: no request loop"
