"""Review 13f: retraining_sensor after the 13e fixes, under a careless or hostile user.

Each test is a reproducer on main, marked xfail(strict) so the branch stays green: it passes
once the break is fixed, and then the mark must go.
"""

import dagster as dg
import pandas as pd

from iris_assets.core.registry import ModelRegistry
from iris_assets.steps.performance import labelled_flowers_path
from tests.assets.test_monitoring_retraction import DAY, ingest, judge, labelled_rows, land
from tests.assets.test_monitoring_retraining import (
    label_and_judge,
    retraining_tick,
    score,
    scored_rows,
)
from tests.assets.test_retrain_attempts import run_with, start_and_end

PERFORMANCE = dg.AssetKey("model_performance")
BATCH_A = "batch-20261125T000000000000Z-aaaaaaaa.parquet"
BATCH_C = "batch-20261125T020000000000Z-cccccccc.parquet"


def latest_report(instance):
    [record] = instance.fetch_materializations(PERFORMANCE, limit=1).records
    return record


def store_again(instance, record) -> None:
    """``record``'s report stored now, unchanged: its Pipes message arriving late."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "model_performance",
            partition=record.partition_key,
            metadata=dict(record.asset_materialization.metadata),
        )
    )


def test_a_late_report_after_a_removing_retrain_does_not_retrain_the_same_flowers(
    settings, graph, champion, scored_day_of_150
):
    """labels_files_sensor judges a day whenever a batch lands, so a model_performance run can
    read the tables, then store its report after a retrain's ingest committed. Without the
    removal suffix its labels key is the spent ``labels:<hash>``; with it, the retrain's own
    removal of retracted rows makes the stale report's key look new."""
    _, instance = graph
    scored = scored_rows(settings).sort_values("flower_id")
    ids, species = scored["flower_id"].tolist(), scored["prediction"].tolist()
    first = pd.DataFrame({"flower_id": ids[:40], "species": species[:40]})
    batch_a = land(settings, first, BATCH_A)
    judge(graph)
    assert ingest(graph, str(labelled_flowers_path(settings)))["rows_inserted"] == 40
    batch_a.unlink()  # the collector withdraws batch A (40 retracted) and lands C (60 new)
    land(settings, pd.DataFrame({"flower_id": ids[40:100], "species": species[40:100]}), BATCH_C)
    judge(graph)
    stale = latest_report(instance)  # read before the retrain's ingest
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    reason = request.tags["iris/retrain_reason"]
    assert "60 new labelled flowers" in reason and "40 retracted" in reason, reason
    run = run_with(graph, request, {})  # the daemon's run: removes the 40, inserts the 60
    assert run.success
    held = labelled_rows(settings)
    assert sorted(held.index) == sorted(ids[40:100]), "the retrain trained on exactly C"
    models = ModelRegistry(settings)
    if models.challenger().version == "2" and models.challenger().approval is None:
        models.reject("2", by="ana", reason="not now")  # a person decides on the retrain
    assert isinstance(retraining_tick(graph, cursor), dg.SkipReason)
    store_again(instance, stale)  # the report read before the ingest arrives late
    again = retraining_tick(graph, cursor)
    assert isinstance(again, dg.SkipReason), (
        f"the same 60 flowers retrained twice: {again.tags['iris/retrain_reason']}"
    )


def test_a_withdrawn_batch_after_a_failed_ingest_is_not_retrained(
    settings, graph, champion, judged_day, monkeypatch
):
    from iris_assets.steps.failpoints import FAILPOINT_ENV
    from tests.assets.helpers import run_job, step_failure_messages

    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    monkeypatch.setenv(FAILPOINT_ENV, "ingest:before_merge")  # lost before the MERGE
    run = run_with(graph, request, {})
    monkeypatch.delenv(FAILPOINT_ENV)
    assert not run.success
    assert len(labelled_rows(settings)) == 0, "nothing was merged"
    # The collector withdraws the batch (it was the wrong greenhouse's): no label is left.
    batches = list(settings.labels_landing_dir.rglob("batch-*"))
    assert batches
    for batch in batches:
        batch.unlink()
    again = run_job(defs, instance, "performance_job", partition_key=DAY)
    assert again.success, step_failure_messages(again)
    values = {k: v.value for k, v in latest_report(instance).asset_materialization.metadata.items()}
    assert values["new_labelled_flowers"] == 0 and values["labelled_flowers_held"] == 0
    outcome = retraining_tick(graph, cursor)
    assert isinstance(outcome, dg.SkipReason), (
        f"a retrain on no labelled flower: {outcome.tags['iris/retrain_reason']}"
    )


def test_a_rolled_back_version_does_not_hold_retraining_as_waiting_for_approval(
    settings, graph, champion
):
    from tests.assets.helpers import run_job, step_failure_messages
    from tests.assets.test_promotion import promote

    defs, instance = graph
    hand = run_job(defs, instance, "training_job")  # a person trains v2
    assert hand.success, step_failure_messages(hand)
    models = ModelRegistry(settings)
    assert models.challenger().version == "2" and models.challenger().evaluation == "passed"
    models.approve("2", by="ana")
    result, problems = promote(defs, instance)
    assert result.success, problems
    assert models.champion().version == "2"
    # v2 misbehaves in production: a person rolls back to v1, the emergency the loop is for.
    models.rollback(None, by="olga", reason="wrong answers in the greenhouse")
    assert models.champion().version == "1" and models.challenger().version == "2"
    label_and_judge(graph, settings, score(graph, settings, DAY, rows=150), rows=60, drop=0.0)
    outcome = retraining_tick(graph)
    assert not (
        isinstance(outcome, dg.SkipReason) and "waits for approval" in outcome.skip_message
    ), outcome.skip_message


def test_a_given_up_message_names_only_evidence_that_is_not_retried(
    settings, graph, champion, judged_day_of_150, monkeypatch
):
    from iris_assets.assets.notifications import notification_sensor
    from iris_assets.core.notify import recent

    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    defs, instance = graph
    cursor = None
    for _ in range(2):  # two cold starts that timed out
        request, cursor = retraining_tick(graph, cursor, with_cursor=True)
        assert isinstance(request, dg.RunRequest), request
        start_and_end(graph, request, "failed")
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        score(graph, settings, day, rows=150, drift=True, seed=7)
    request, cursor = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    assert "drift" in request.tags["iris/retrain_reason"], request.tags
    start_and_end(graph, request, "failed")  # the drift streak's first attempt fails
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        notification_sensor(context)
    following = retraining_tick(graph, cursor)
    # The labels had their third attempt: retraining gives up on them, and says so once. The
    # drift had its first: it is retried, and no message says retraining gave up on it.
    assert isinstance(following, dg.RunRequest), following
    assert "drift" in following.tags["iris/retrain_reason"], following.tags
    assert "labels" not in following.tags["iris/retrain_reason"], following.tags
    given_up = [
        r["message"]["text"]
        for r in recent(settings.env_home, limit=50)
        if r["message"].get("event") == "retrain_given_up"
    ]
    assert len(given_up) == 1, given_up
    assert "labels: 60 new labelled flowers" in given_up[0], given_up
    assert "drift" not in given_up[0], given_up


def test_labels_a_killed_retrain_merged_and_a_person_then_trained_on_retrain_once(
    settings, graph, champion, judged_day, monkeypatch
):
    from iris_assets.steps.failpoints import FAILPOINT_ENV
    from tests.assets.helpers import run_job, step_failure_messages

    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    monkeypatch.setenv(FAILPOINT_ENV, "ingest:merged")  # the machine is lost after the MERGE
    assert not run_with(graph, request, {}).success
    monkeypatch.delenv(FAILPOINT_ENV)
    # A person sees the failed run and trains by hand on the labelled flowers: v2.
    source = {"source_path": str(labelled_flowers_path(settings))}
    hand = run_job(
        defs, instance, "training_job", run_config={"ops": {"iris_features": {"config": source}}}
    )
    assert hand.success, step_failure_messages(hand)
    models = ModelRegistry(settings)
    assert models.challenger().version == "2"
    if models.challenger().approval is None and models.challenger().evaluation == "passed":
        models.reject("2", by="ana", reason="not now")  # the person decides on it
    again = run_job(defs, instance, "performance_job", partition_key=DAY)
    assert again.success, step_failure_messages(again)
    outcome = retraining_tick(graph, cursor)
    assert isinstance(outcome, dg.SkipReason), (
        f"the 60 flowers v2 trained on retrain again: {outcome.tags['iris/retrain_reason']}"
    )


def test_a_report_materialization_from_the_ui_does_not_hide_the_label_evidence(
    settings, graph, champion, judged_day_of_150
):
    _, instance = graph
    # A person marks the day materialized from the asset page: no metadata, no evidence.
    instance.report_runless_asset_event(dg.AssetMaterialization("model_performance", partition=DAY))
    outcome = retraining_tick(graph)
    assert isinstance(outcome, dg.RunRequest), outcome.skip_message


def test_a_report_with_garbage_versions_does_not_fail_every_tick(
    settings, graph, champion, judged_day_of_150
):
    _, instance = graph
    record = latest_report(instance)
    metadata = dict(record.asset_materialization.metadata)
    metadata["evidence_labels_version"] = dg.MetadataValue.text("v7")
    instance.report_runless_asset_event(
        dg.AssetMaterialization("model_performance", partition=DAY, metadata=metadata)
    )
    outcome = retraining_tick(graph)
    assert isinstance(outcome, dg.SkipReason | dg.RunRequest), outcome
