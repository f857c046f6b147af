"""Review 13c: evidence a retrain never answered must not read as spent."""

import time
from unittest import mock

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus

from iris_assets.assets.retraining import SUBMIT_GRACE_SECONDS
from tests.assets.test_monitoring_retraining import retraining_tick


def test_a_deleted_retrain_run_does_not_spend_its_evidence(
    settings, graph, champion, judged_day_of_150
):
    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    # The daemon creates the run; its worker dies and the run stays STARTED for ever.
    run = instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"),
        run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": request.run_key},
        status=DagsterRunStatus.STARTED,
    )
    blocked = retraining_tick(graph, cursor)
    assert isinstance(blocked, dg.SkipReason) and "dagster run delete" in blocked.skip_message
    # The person does what the tick says, on a tick well after the request.
    instance.delete_run(run.run_id)
    assert retraining_tick(graph, cursor).skip_message.startswith("no new evidence")
    later = time.time() + SUBMIT_GRACE_SECONDS + 60
    with mock.patch("iris_assets.assets.retraining._now", return_value=later):
        after = retraining_tick(graph, cursor)
    assert isinstance(after, dg.RunRequest), after.skip_message


def test_a_retry_canceled_before_its_ingest_keeps_the_labels_its_first_attempt_took_in(
    settings, graph, champion, judged_day
):
    from iris_assets.core.registry import ModelRegistry
    from tests.assets.test_retrain_attempts import run_with, start_and_end

    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    broken = {"challenger_model": {"config": {"C": -1.0}}}  # ingest succeeds, training fails
    first = run_with(graph, request, broken)
    assert not first.success
    models = ModelRegistry(settings)
    assert models.challenger() is None or models.challenger().version == "1", "none new"
    retry, cursor = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(retry, dg.RunRequest), retry
    start_and_end(graph, retry, "canceled")  # a serverless cold start that timed out
    third = retraining_tick(graph, cursor)
    # Either a third attempt or the tick naming the runs: not silence.
    assert isinstance(third, dg.RunRequest) or "ended" in third.skip_message, third.skip_message
