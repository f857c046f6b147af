"""Review 13f: a retrain given up is told to a person however its last attempt ended.

The last attempt deleted (as the in-flight skip advises) ends with no run failure event: the
give-up is told by retraining_sensor, where it is decided, not from such an event.
"""

import time
from unittest import mock

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus

from iris_assets.assets.retraining import SUBMIT_GRACE_SECONDS
from tests.assets.test_monitoring_retraining import retraining_tick
from tests.assets.test_retrain_attempts import start_and_end


def test_a_retrain_given_up_after_a_deleted_last_attempt_is_told_to_a_person(
    settings, graph, champion, judged_day_of_150, monkeypatch
):
    from iris_assets.assets.notifications import notification_sensor
    from iris_assets.core.notify import recent

    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    defs, instance = graph
    cursor = None
    for _ in range(2):  # two serverless cold starts that timed out
        request, cursor = retraining_tick(graph, cursor, with_cursor=True)
        assert isinstance(request, dg.RunRequest), request
        start_and_end(graph, request, "failed")
    request, cursor = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    # The third run is created but its launch never happens; the tick says how to unblock it.
    queued = instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"),
        run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": request.run_key},
        status=DagsterRunStatus.NOT_STARTED,
    )
    waiting = retraining_tick(graph, cursor)
    assert "dagster run delete" in waiting.skip_message, waiting
    instance.delete_run(queued.run_id)  # a person follows that advice
    later = time.time() + SUBMIT_GRACE_SECONDS + 60
    with mock.patch("iris_assets.assets.retraining._now", return_value=later):
        stuck = retraining_tick(graph, cursor)
    assert stuck.skip_message.startswith("training_job ended 3 times without a challenger"), stuck
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        notification_sensor(context)
    told = [r["message"] for r in recent(settings.env_home, limit=50)]
    assert any(m.get("event") == "retrain_given_up" for m in told), [m["text"] for m in told]
