"""Review 13b reproducers: retraining_sensor's evidence keys spent by a retrain that never took
the evidence in, or reused by new evidence that looks like spent evidence."""

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus

from iris_assets.steps.performance import labelled_flowers_path
from tests.assets.test_monitoring_retraction import (  # noqa: F401
    DAY,
    ingest,
    judge,
    labelled,
    labelled_rows,
    land,
)
from tests.assets.test_monitoring_retraining import (
    label_and_judge,
    retraining_tick,
    scored_rows,
)
from tests.assets.test_monitoring_retraining_evidence import run_like_the_sensor, tick


def test_a_retrain_that_failed_before_its_ingest_is_requested_again(
    settings, graph, champion, scored_day_of_150
):
    defs, instance = graph
    scored = scored_rows(settings)
    label_and_judge(graph, settings, scored.iloc[:75], rows=60, drop=0.0)
    first, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(first, dg.RunRequest), first
    run = instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"),
        run_config=first.run_config,
        tags={**first.tags, "dagster/run_key": first.run_key},
        status=DagsterRunStatus.STARTED,
    )
    instance.report_run_failed(run)  # e.g. the serverless cold start timed out: nothing ingested
    again = retraining_tick(graph, cursor)
    assert isinstance(again, dg.RunRequest), f"the 60 labelled flowers never train: {again}"
    assert again.run_key != first.run_key, "the daemon would skip a spent run key"


def test_flowers_labelled_again_after_their_retraction_are_new_evidence(
    settings, graph, champion, scored_day_of_120
):
    scored = scored_rows(settings).sort_values("flower_id")
    labels = scored[["flower_id"]].assign(species=scored["prediction"]).iloc[:60]
    batch = land(settings, labels, "batch-20261125T000000000000Z-aaaaaaaa.parquet")
    judge(graph)
    first, cursor = tick(graph)
    assert isinstance(first, dg.RunRequest), first
    assert run_like_the_sensor(graph, first)["rows_inserted"] == 60
    batch.unlink()  # the collector retracts the batch
    judge(graph)
    second, cursor = tick(graph, cursor)
    assert isinstance(second, dg.RunRequest), second
    assert "60 retracted" in second.tags["iris/retrain_reason"]
    assert run_like_the_sensor(graph, second)["rows_removed"] == 60
    # ... and lands it again, checked: the same 60 flowers, not in iris_features any more.
    land(settings, labels, "batch-20261126T000000000000Z-bbbbbbbb.parquet")
    judge(graph)
    third, _ = tick(graph, cursor)
    assert isinstance(third, dg.RunRequest), f"60 labelled flowers left out: {third}"


def test_an_ingest_of_the_file_before_the_report_rewrote_it_does_not_spend_the_evidence(
    settings,
    graph,
    labelled,  # noqa: F811
):
    _, a, _ = labelled
    path = labelled_flowers_path(settings)
    before = path.read_bytes()
    a.unlink()  # 40 labels retracted
    judge(graph)  # reports them and rewrites the file without them
    after = path.read_bytes()
    # A training run in flight read the file before that rewrite; its materialization is
    # stored after the report. Replayed here in that order.
    path.write_bytes(before)
    assert ingest(graph, str(path))["rows_removed"] == 0
    path.write_bytes(after)
    assert len(labelled_rows(settings)) == 80, "the 40 retracted flowers still train"
    outcome, _ = tick(graph)
    assert isinstance(outcome, dg.RunRequest), f"retracted labels keep training: {outcome}"
