"""A retrain that ends without a challenger spent nothing: retraining_sensor asks for it again
under a new run key, three runs in all, then says on the tick which runs failed and what to do.
A retrain that registered its challenger has its answer, even when evaluation failed it."""

import json

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus

from iris_assets.assets.retraining import MAX_ATTEMPTS
from iris_assets.core.registry import ModelRegistry
from tests.assets.helpers import run_job
from tests.assets.test_monitoring_retraction import labelled_rows
from tests.assets.test_monitoring_retraining import (
    label_and_judge,
    retraining_tick,
    score,
    scored_rows,
)


def start_and_end(graph, request, ending: str):
    """The run the daemon creates for ``request``, ended as a cold start timeout would end it."""
    defs, instance = graph
    run = instance.create_run_for_job(
        job_def=defs.get_job_def("training_job"),
        run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": request.run_key},
        status=DagsterRunStatus.STARTED,
    )
    if ending == "failed":
        instance.report_run_failed(run)
    else:
        instance.report_run_canceled(run)
    return run.run_id


def run_with(graph, request, ops: dict):
    """The training_job ``request`` starts, as the daemon runs it, with ``ops`` config added."""
    defs, instance = graph
    return run_job(
        defs,
        instance,
        "training_job",
        run_config={"ops": {**request.run_config.get("ops", {}), **ops}},
        tags={**request.tags, "dagster/run_key": request.run_key},
    )


def test_a_retrain_that_keeps_failing_is_asked_for_three_times_then_named_on_the_tick(
    settings, graph, champion, judged_day_of_150
):
    cursor, keys, runs = None, [], []
    for ending in ("failed", "canceled", "failed"):
        request, cursor = retraining_tick(graph, cursor, with_cursor=True)
        assert isinstance(request, dg.RunRequest), request
        assert request.tags["iris/retrain_reason"] == (
            "labels: 60 new labelled flowers (at least 50)"
        )
        keys.append(request.run_key)
        runs.append(start_and_end(graph, request, ending))
    assert len(set(keys)) == MAX_ATTEMPTS == 3, "each attempt a run key the daemon has not seen"

    told, after = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(told, dg.SkipReason), told
    message = told.skip_message
    assert message.startswith("training_job ended 3 times without a challenger for labels: 60")
    assert all(run_id in message for run_id in runs), message
    assert "(canceled)" in message and "(failure)" in message
    assert "re-execute" in message
    told_keys = json.loads(after).pop("given_up_told")
    assert told_keys == [key for key in json.loads(cursor)["evidence"]], "told once, remembered"
    assert {k: v for k, v in json.loads(after).items() if k != "given_up_told"} == json.loads(
        cursor
    ), "nothing more is spent or requested"
    again, last = retraining_tick(graph, after, with_cursor=True)
    assert again.skip_message == message and last == after, "the give-up is not told twice"
    # New evidence still trains: 60 more flowers labelled in another batch.
    later = "2026-11-25"
    label_and_judge(
        graph, settings, score(graph, settings, later, seed=2), rows=60, drop=0.0, day=later
    )
    fresh = retraining_tick(graph, cursor)
    assert isinstance(fresh, dg.RunRequest), fresh
    assert fresh.run_key not in keys


def test_a_retrain_whose_challenger_failed_evaluation_is_not_asked_for_again(
    settings, graph, champion, scored_day_of_120
):
    defs, instance = graph
    label_and_judge(graph, settings, scored_rows(settings), rows=60, drop=0.6)
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest) and "decay on" in request.tags["iris/retrain_reason"]
    impossible = {"evaluation_report": {"config": {"min_accuracy": 1.01}}}
    run = run_with(graph, request, impossible)
    assert not run.success, "a failed evaluation fails the run"
    assert ModelRegistry(settings).challenger().evaluation == "failed"
    # The decay of DAY still holds, and its run failed: but it registered a challenger.
    again = retraining_tick(graph, cursor)
    assert isinstance(again, dg.SkipReason), again
    assert again.skip_message.startswith("no new evidence: already retrained for decay on")


def test_a_cursor_of_the_earlier_release_still_spends_its_keys(
    settings, graph, champion, judged_day
):
    _, cursor = retraining_tick(graph, with_cursor=True)
    earlier = json.dumps(list(json.loads(cursor)["evidence"]))  # a list of spent keys, no runs
    outcome = retraining_tick(graph, earlier)
    assert isinstance(outcome, dg.SkipReason), outcome
    assert outcome.skip_message.startswith("no new evidence: already retrained for labels: 60")


def test_a_retrain_that_took_the_labels_in_and_then_failed_to_train_is_asked_for_again(
    settings, graph, champion, judged_day
):
    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    broken = {"challenger_model": {"config": {"C": -1.0}}}  # the training step fails
    run = run_with(graph, request, broken)
    assert not run.success
    models = ModelRegistry(settings)
    challenger = models.challenger()
    assert challenger is None or challenger.version == models.champion().version, "none new"
    assert len(labelled_rows(settings)) == 60, "its ingest took the 60 labelled flowers in"
    # The report's evidence is taken in now, yet nothing was trained on it.
    again = retraining_tick(graph, cursor)
    assert isinstance(again, dg.RunRequest), again
    assert again.tags["iris/retrain_reason"] == "labels: 60 new labelled flowers (at least 50)"
    assert again.run_key != request.run_key
