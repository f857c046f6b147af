"""Retraining that starts itself and stops at the approval gate, through the real graph."""

import dagster as dg

from iris_assets.assets.retraining import retraining_sensor
from iris_assets.core.labels import simulate_labels
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import ModelRegistry
from iris_assets.core.split import split_by_measurements
from iris_assets.steps.stores import table_store
from tests.assets.helpers import run_job, sensor_decision, step_failure_messages

DAY = "2026-11-24"


def score(graph, settings, day, rows=120, drift=False, seed=1):
    defs, instance = graph
    LandingArea(settings.landing_dir).write_batch(
        simulate_flowers(rows, day, seed=seed, drift=drift), day
    )
    result = run_job(defs, instance, "inference_job", partition_key=day)
    assert result.success, step_failure_messages(result)
    return scored_rows(settings, day)


def scored_rows(settings, day=DAY):
    """What ``score`` returns: ``day``'s rows of the inference table."""
    return table_store(settings).read(
        settings.inference_table, predicate=f"observed_date = '{day}'"
    )


def label_and_judge(graph, settings, scored, rows, drop, day=DAY):
    defs, instance = graph
    labels = simulate_labels(scored, rows=rows, accuracy_drop=drop, seed=4)
    LandingArea(settings.labels_landing_dir).write_batch(labels, day)
    result = run_job(defs, instance, "performance_job", partition_key=day)
    assert result.success, step_failure_messages(result)
    return labels


def retraining_tick(graph, cursor=None, with_cursor=False):
    defs, instance = graph
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
    ) as context:
        outcome = retraining_sensor(context)
        return (outcome, context.cursor) if with_cursor else outcome


def test_new_labels_start_a_training_run_that_stops_at_the_gate(settings, graph, champion):
    defs, instance = graph
    assert "no trigger" in retraining_tick(graph).skip_message
    store = table_store(settings)
    before = store.read(settings.feature_table, ["flower_id", "split"]).set_index("flower_id")
    labels = label_and_judge(graph, settings, score(graph, settings, DAY), rows=60, drop=0.0)

    request = retraining_tick(graph)
    assert isinstance(request, dg.RunRequest), request
    reason = request.tags["iris/retrain_reason"]
    assert reason == "labels: 60 new labelled flowers (at least 50)"
    assert retraining_tick(graph).run_key == request.run_key, "the same evidence, the same run"
    run = run_job(defs, instance, "training_job", run_config=request.run_config, tags=request.tags)
    assert run.success, step_failure_messages(run)

    models = ModelRegistry(settings)
    challenger = models.challenger()
    assert challenger.version == "2" and challenger.tags["retrain_reason"] == reason
    assert challenger.evaluation == "passed"
    assert models.champion().version == champion, "retraining never promotes"
    assert challenger.approval is None

    after = store.read(
        settings.feature_table,
        [
            "flower_id",
            "split",
            "sepal_length_cm",
            "sepal_width_cm",
            "petal_length_cm",
            "petal_width_cm",
        ],
    ).set_index("flower_id")
    assert len(after) == 150 + 60
    assert after.loc[before.index, "split"].equals(before["split"]), "no flower changed side"
    labelled = after.loc[labels["flower_id"]]
    assert list(labelled["split"]) == list(split_by_measurements(labelled.reset_index()))

    waiting = retraining_tick(graph)
    assert isinstance(waiting, dg.SkipReason)
    assert "iris approve 2 --by NAME" in waiting.skip_message
    decision, _ = sensor_decision(defs, instance)  # the promotion sensor: v2 is not approved
    assert getattr(decision, "job_name", None) != "promotion_job"


def test_decay_is_a_reason_to_retrain(settings, graph, champion, scored_day_of_120):
    scored = scored_rows(settings)
    label_and_judge(graph, settings, scored, rows=40, drop=0.6)
    request = retraining_tick(graph)
    assert isinstance(request, dg.RunRequest)
    reason = request.tags["iris/retrain_reason"]
    assert reason.startswith(f"decay on {DAY}: v1: live accuracy")
    assert "labels:" not in reason, "40 labels are fewer than the 50 that trigger on their own"

    later = "2026-11-25"
    label_and_judge(graph, settings, score(graph, settings, later), rows=5, drop=0.0, day=later)
    still = retraining_tick(graph)
    assert isinstance(still, dg.RunRequest), "5 labels on a later day do not hide the decay"
    assert still.tags["iris/retrain_reason"].startswith(f"decay on {DAY}")


def test_three_drifting_days_in_a_row_are_a_reason_to_retrain(settings, graph, champion):
    for day in ("2026-11-01", "2026-11-02", "2026-11-04"):
        score(graph, settings, day, rows=150, drift=True)
    gap = retraining_tick(graph)
    assert isinstance(gap, dg.SkipReason), "three drifting days with a gap are not a streak"

    score(graph, settings, "2026-11-05", rows=150, drift=True)
    score(graph, settings, "2026-11-06", rows=150, drift=True)
    request = retraining_tick(graph)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"] == (
        "drift: feature_drift warned 3 days in a row (2026-11-04 to 2026-11-06)"
    )


def test_one_piece_of_evidence_starts_one_retrain(settings, graph, champion, scored_day_of_120):
    """Decay on DAY with 60 new labels: one retrain. Once it ingested the labels, the labels
    trigger drops out, but the decay of DAY is the same evidence: no second retrain."""
    defs, instance = graph
    label_and_judge(graph, settings, scored_rows(settings), rows=60, drop=0.6)
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    assert "decay on" in request.tags["iris/retrain_reason"]
    assert "labels: 60" in request.tags["iris/retrain_reason"]
    # Trained on 60% wrong labels, it may fail evaluation (a failed evaluation fails the run):
    # either way v2 exists and nothing waits once it is rejected.
    run_job(defs, instance, "training_job", run_config=request.run_config, tags=request.tags)
    assert ModelRegistry(settings).challenger().version == "2"
    ModelRegistry(settings).reject("2", by="ana", reason="not now")  # nothing waits any more

    again, cursor = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(again, dg.SkipReason), "the same decay must not retrain twice"
    assert again.skip_message.startswith("no new evidence: already retrained for decay on")

    later = "2026-11-25"  # new evidence: a decay on another day
    label_and_judge(graph, settings, score(graph, settings, later), rows=40, drop=0.6, day=later)
    fresh, _ = retraining_tick(graph, cursor, with_cursor=True)
    assert (
        isinstance(fresh, dg.RunRequest)
        and f"decay on {later}" in fresh.tags["iris/retrain_reason"]
    )


def test_a_retrain_that_fails_evaluation_blocks_nothing_and_a_person_is_told(
    settings, graph, champion, judged_day, monkeypatch
):
    from iris_assets.assets.notifications import notification_sensor

    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    defs, instance = graph
    request = retraining_tick(graph)
    assert isinstance(request, dg.RunRequest), request
    impossible = {"evaluation_report": {"config": {"min_accuracy": 1.01}}}
    config = {"ops": {**request.run_config.get("ops", {}), **impossible}}
    run = run_job(defs, instance, "training_job", run_config=config, tags=request.tags)
    assert not run.success, "a failed evaluation fails the run (its blocking check)"
    challenger = ModelRegistry(settings).challenger()
    assert challenger.version == "2" and challenger.evaluation == "failed"

    after = retraining_tick(graph)
    text = getattr(after, "skip_message", "") or ""
    assert "iris approve 2" not in text, "never tell a person to approve a failed version"
    assert "waits for approval" not in text

    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        notification_sensor(context)
    from iris_assets.core.notify import recent

    events = {r["message"]["event"]: r["message"] for r in recent(settings.env_home, limit=20)}
    failed = events["retrained_challenger_failed_evaluation"]
    assert failed["version"] == "2" and "iris approve" not in failed["text"]
    assert "labels: 60 new labelled flowers" in failed["retrain_reason"]
