"""Review 13: the sensors' run keys must not repeat for a day whose folder changed.

The Dagster daemon skips a RunRequest whose run_key an earlier run of the same sensor already
used ("Skipping run request: a run with this run_key already exists"). A batch that lands and is
then deleted (the documented way to retract a label, or late flowers) brings the day folder back
to a fingerprint it had before, so a key that names the fingerprint is spent: the daemon drops
the run, and the retracted rows stay in the tables. A failed performance run is asked for again.
"""

import json

import dagster as dg
import pandas as pd
from dagster._core.storage.dagster_run import DagsterRunStatus

from iris_assets.assets.inference import landing_files_sensor
from iris_assets.assets.monitoring import MAX_RETRIES, labels_files_sensor
from iris_assets.core.landing import LandingArea, simulate_flowers
from tests.assets.helpers import run_job, sensor_ticker

DAY = "2026-11-22"


def test_a_retracting_delete_gets_a_run_key_not_used_before(settings, graph):
    tick = sensor_ticker(graph, labels_files_sensor)
    landing = LandingArea(settings.labels_landing_dir)
    labels = pd.DataFrame({"flower_id": [1, 2], "species": ["setosa", "virginica"]})
    landing.write_batch(labels.iloc[:1], DAY)

    spent = set()
    [first], cursor = tick(None)
    spent.add(first.run_key)
    wrong = landing.write_batch(labels.iloc[1:], DAY)
    [second], cursor = tick(cursor)
    spent.add(second.run_key)
    wrong.unlink()  # the collector retracts the wrong batch
    [third], cursor = tick(cursor)
    assert third.partition_key == DAY
    assert third.run_key not in spent, "the daemon would skip this run: its key was used"
    spent.add(third.run_key)
    landing.write_batch(labels.iloc[1:], DAY)  # and lands it again, the same fingerprint
    [fourth], cursor = tick(cursor)
    assert fourth.run_key not in spent
    idle, _ = tick(cursor)
    assert isinstance(idle, dg.SkipReason), "an unchanged folder asks for nothing"


def test_a_cursor_of_an_earlier_release_is_read(settings, graph):
    tick = sensor_ticker(graph, labels_files_sensor)
    landing = LandingArea(settings.labels_landing_dir)
    landing.write_batch(pd.DataFrame({"flower_id": [1], "species": ["setosa"]}), DAY)
    [first], cursor = tick(None)
    old = {DAY: first.run_key.split("-", 5)[-1]}  # {day: fingerprint}, as it was
    idle, _ = tick(json.dumps(old))
    assert isinstance(idle, dg.SkipReason), "the same folder is not judged again"


def test_a_failed_performance_run_is_retried_then_left_alone(settings, graph):
    defs, instance = graph
    tick = sensor_ticker(graph, labels_files_sensor)
    landing = LandingArea(settings.labels_landing_dir)
    landing.write_batch(pd.DataFrame({"flower_id": [1], "species": ["setosa"]}), DAY)

    def fail(request):  # as the daemon would launch it, with a config the run refuses
        result = run_job(
            defs,
            instance,
            "performance_job",
            partition_key=DAY,
            tags={"dagster/run_key": request.run_key},
            run_config=REFUSED,
        )
        assert not result.success

    [request], cursor = tick(None)
    spent = {request.run_key}
    for _ in range(MAX_RETRIES):
        fail(request)
        [request], cursor = tick(cursor)
        assert request.partition_key == DAY and request.run_key not in spent
        spent.add(request.run_key)
    fail(request)
    given_up, cursor = tick(cursor)
    assert isinstance(given_up, dg.SkipReason), "a day that keeps failing is not run forever"
    # Said on the tick, not hidden behind "no label folder changed" (review 13b).
    assert given_up.skip_message.startswith(
        f"model_performance failed {MAX_RETRIES + 1} times on the same labels for {DAY}"
    ), given_up.skip_message
    landing.write_batch(pd.DataFrame({"flower_id": [2], "species": ["setosa"]}), DAY)
    [changed], cursor = tick(cursor)
    assert changed.run_key not in spent, "new labels: judged again"
    idle, _ = tick(cursor)
    assert isinstance(idle, dg.SkipReason), "a run not (yet) failed is not asked for again"


REFUSED = {"ops": {"model_performance": {"config": {"confidence": 1.0}}}}


def test_the_landing_sensor_scores_a_day_again_after_a_retracting_delete(settings, graph, champion):
    tick = sensor_ticker(graph, landing_files_sensor)
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(5, DAY, seed=1), DAY)
    [first], cursor = tick(None)
    assert run_job(*graph, "inference_job", partition_key=DAY).success
    late = landing.write_batch(simulate_flowers(5, DAY, seed=2), DAY)
    [second], cursor = tick(cursor)
    assert run_job(*graph, "inference_job", partition_key=DAY).success
    late.unlink()  # the late batch was wrong: the day must be scored from the first alone
    [third], cursor = tick(cursor)
    assert third.partition_key == DAY
    assert third.run_key not in {first.run_key, second.run_key}, "the daemon would skip it"
    assert run_job(*graph, "inference_job", partition_key=DAY).success
    idle, _ = tick(cursor)
    assert isinstance(idle, dg.SkipReason), "the scored day is not scored a second time"
    fresh, _ = tick(None)  # a lost cursor: the partition was scored from exactly these files
    assert isinstance(fresh, dg.SkipReason), "no duplicate scoring of an unchanged day"


def _launched(graph, request, job="performance_job"):
    """What the daemon does with a request: a run that carries its key."""
    defs, instance = graph
    instance.create_run_for_job(
        job_def=defs.get_job_def(job),
        tags={"dagster/run_key": request.run_key, "dagster/partition": request.partition_key},
        status=DagsterRunStatus.SUCCESS,
    )
    return request.run_key


def test_after_a_cursor_reset_a_retracting_delete_gets_a_run_key_not_used_before(settings, graph):
    tick = sensor_ticker(graph, labels_files_sensor)
    landing = LandingArea(settings.labels_landing_dir)
    labels = pd.DataFrame({"flower_id": [1, 2, 3], "species": ["setosa", "virginica", "setosa"]})
    landing.write_batch(labels.iloc[:1], DAY)
    spent = set()
    [first], cursor = tick(None)
    spent.add(_launched(graph, first))
    wrong = landing.write_batch(labels.iloc[1:2], DAY)
    [second], cursor = tick(cursor)
    spent.add(_launched(graph, second))
    wrong.unlink()  # back to the first fingerprint
    [third], cursor = tick(cursor)
    spent.add(_launched(graph, third))
    # An operator resets the sensor's cursor (UI: Reset cursor): the day is judged again under
    # a key no run holds (before, key 1 again, which the daemon skipped).
    [again], cursor = tick(None)
    assert again.run_key not in spent
    spent.add(_launched(graph, again))
    late = landing.write_batch(labels.iloc[2:], DAY)
    [fourth], cursor = tick(cursor)
    assert fourth.run_key not in spent
    spent.add(_launched(graph, fourth))
    late.unlink()  # retracted: back to the first fingerprint, key 3 again
    [fifth], cursor = tick(cursor)
    assert fifth.run_key not in spent, (
        f"{fifth.run_key} was used: the daemon skips it and flower 3's label stays"
    )
