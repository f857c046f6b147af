"""A training run still in flight blocks the next retrain, as a challenger waiting for approval
does (review 13): its challenger is not registered until its step ends, so without this a second
run on overlapping evidence would start beside it and the alias would move to whichever
registers last. The skip spends no evidence: once the run has finished, the next tick retrains.
"""

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus

from tests.assets.test_monitoring_retraining import (
    label_and_judge,
    retraining_tick,
    scored_rows,
)

DAY = "2026-11-24"


def _launched(defs, instance, request, status, by_sensor=True):
    tags = {**request.tags, "dagster/run_key": request.run_key} if by_sensor else {}
    return instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"),
        run_config=request.run_config if by_sensor else {},
        tags=tags,
        status=status,
    )


@pytest.mark.parametrize("by_sensor", [True, False], ids=["sensor-run", "hand-run"])
def test_a_second_retrain_waits_while_a_training_run_is_in_flight(
    settings, graph, champion, scored_day_of_150, by_sensor
):
    defs, instance = graph
    scored = scored_rows(settings)
    label_and_judge(graph, settings, scored.iloc[:75], rows=60, drop=0.0)
    first, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(first, dg.RunRequest), first
    # The daemon launched it (or a person started one); no challenger is registered yet.
    run = _launched(defs, instance, first, DagsterRunStatus.STARTED, by_sensor)
    label_and_judge(graph, settings, scored.iloc[75:], rows=60, drop=0.0)
    second, after = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(second, dg.SkipReason), f"a second training run beside the first: {second}"
    assert run.run_id in second.skip_message and "still started" in second.skip_message
    assert after == cursor, "the skip must not spend the new evidence"
    # Once it has finished (failed, here), the new labels' evidence starts the next retrain.
    instance.report_run_failed(run)
    third = retraining_tick(graph, cursor)
    assert isinstance(third, dg.RunRequest), third
    assert "120 new labelled flowers" in third.tags["iris/retrain_reason"]


def test_a_run_that_never_starts_says_how_long_it_waited_and_how_to_unblock(
    settings, graph, champion, scored_day_of_150
):
    """Review 13b: a run stuck before it starts (a queue no daemon drains) blocks every tick;
    the skip must tell a person what to do, not only that the sensor waits."""
    defs, instance = graph
    scored = scored_rows(settings)
    label_and_judge(graph, settings, scored.iloc[:75], rows=60, drop=0.0)
    # Created and never launched (QUEUED needs a code location origin, so NOT_STARTED here).
    status = DagsterRunStatus.NOT_STARTED
    run = instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"), run_config={}, tags={}, status=status
    )
    skip = retraining_tick(graph)
    assert isinstance(skip, dg.SkipReason), skip
    message = skip.skip_message
    assert f"still {status.value.lower()}, created 0 min ago" in message, message
    assert "terminate it" in message and f"dagster run delete {run.run_id}" in message, message
