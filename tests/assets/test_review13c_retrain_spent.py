"""Review 13c: evidence a retrain never answered must not read as spent."""

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus

from tests.assets.test_monitoring_retraining import DAY, label_and_judge, retraining_tick, score


@pytest.mark.xfail(
    strict=True,
    reason="review13c: a retrain run deleted from the instance (as the in-flight skip message "
    "advises: `dagster run delete`) spends its evidence: unanswered_run finds no run and "
    "treats it as answered, so the 60 labels never train a challenger",
)
def test_a_deleted_retrain_run_does_not_spend_its_evidence(settings, graph, champion):
    defs, instance = graph
    label_and_judge(graph, settings, score(graph, settings, DAY, rows=150), rows=60, drop=0.0)
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
    # The person does what the tick says.
    instance.delete_run(run.run_id)
    after = retraining_tick(graph, cursor)
    assert isinstance(after, dg.RunRequest), after.skip_message
