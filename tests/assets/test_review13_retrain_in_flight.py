"""Review 13: a retraining run still in flight must block the next one, as a waiting one does.

``retraining_sensor`` blocks only on a retrained challenger already registered
(``waiting_retrained``); it never looks at runs. While its first ``training_job`` is queued or
running (on Databricks a serverless cold start alone can outlast the 5-minute tick), more labels
land, the labels trigger's evidence (a hash of the new ids) changes, and a second training run
starts beside the first: two challengers from overlapping evidence, the alias moved to whichever
registers last.
"""

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus

from tests.assets.test_monitoring_retraining import label_and_judge, retraining_tick, score

DAY = "2026-11-24"


@pytest.mark.xfail(
    strict=True,
    reason="review 13: retraining_sensor does not check for an in-flight training_job "
    "(assets/retraining.py, retraining_sensor: only waiting_retrained blocks)",
)
def test_a_second_retrain_waits_while_the_first_is_running(settings, graph, champion):
    defs, instance = graph
    scored = score(graph, settings, DAY, rows=150)
    label_and_judge(graph, settings, scored.iloc[:75], rows=60, drop=0.0)
    first, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(first, dg.RunRequest), first
    # The daemon launched it; it is still running (no challenger registered yet).
    instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"),
        run_config=first.run_config,
        tags={**first.tags, "dagster/run_key": first.run_key},
        status=DagsterRunStatus.STARTED,
    )
    label_and_judge(graph, settings, scored.iloc[75:], rows=60, drop=0.0)
    second = retraining_tick(graph, cursor)
    assert isinstance(second, dg.SkipReason), f"a second training run beside the first: {second}"
