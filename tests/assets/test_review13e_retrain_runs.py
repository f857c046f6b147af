"""Review 13e: retraining_sensor's retry logic under a careless or hostile user.

Each test is a reproducer on main, marked xfail(strict) so the branch stays green: it passes
once the break is fixed, and then the mark must go.
"""

import time
from unittest import mock

import dagster as dg
import pytest

from iris_assets.assets.retraining import SUBMIT_GRACE_SECONDS
from iris_assets.core.registry import ModelRegistry
from tests.assets.test_monitoring_retraining import (
    DAY,
    label_and_judge,
    retraining_tick,
    scored_rows,
)
from tests.assets.test_retrain_attempts import run_with


def test_deleting_an_answered_retrain_run_does_not_retrain_the_same_evidence(
    settings, graph, champion, scored_day_of_120
):
    defs, instance = graph
    # 40 labels, 60% of them wrong: a decay, and fewer than the 50 new labels that trigger alone.
    label_and_judge(graph, settings, scored_rows(settings), rows=40, drop=0.6)
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"].startswith(f"decay on {DAY}")
    run = run_with(graph, request, {})  # the daemon's run: ingest, train, evaluate
    models = ModelRegistry(settings)
    assert models.challenger().version == "2", "the retrain answered: challenger v2"
    models.reject("2", by="ana", reason="looked at it, not now")  # a person decided
    spent = retraining_tick(graph, cursor)
    assert spent.skip_message.startswith("no new evidence: already retrained for decay on")

    # Weeks later someone tidies the Runs page: the answered run is deleted. Nothing about the
    # evidence changed: the decay of DAY was answered by v2, which a person rejected.
    instance.delete_run(run.run_id)
    later = time.time() + SUBMIT_GRACE_SECONDS + 60
    with mock.patch("iris_assets.assets.retraining._now", return_value=later):
        after = retraining_tick(graph, cursor)
    assert isinstance(after, dg.SkipReason), (
        f"a second retrain for the same decay: {after.tags.get('iris/retrain_reason')}"
    )


def test_a_clock_stepped_back_does_not_hide_a_deleted_retrain_run(
    settings, graph, champion, judged_day_of_150
):
    defs, instance = graph
    skew = 24 * 3600  # the host's clock was a day fast when the tick ran
    with mock.patch("iris_assets.assets.retraining._now", return_value=time.time() + skew):
        request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    # The daemon's run is gone (deleted, as the in-flight skip advises, or never created) and
    # the clock was corrected. Well past the grace in real time, the request is unanswered.
    later = time.time() + SUBMIT_GRACE_SECONDS + 60
    with mock.patch("iris_assets.assets.retraining._now", return_value=later):
        after = retraining_tick(graph, cursor)
    assert isinstance(after, dg.RunRequest), after.skip_message


def test_labels_merged_by_a_killed_ingest_are_still_retrained(
    settings, graph, champion, judged_day, monkeypatch
):
    from iris_assets.steps.failpoints import FAILPOINT_ENV
    from tests.assets.helpers import run_job, step_failure_messages
    from tests.assets.test_monitoring_retraction import labelled_rows

    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    monkeypatch.setenv(FAILPOINT_ENV, "ingest:merged")  # the machine is lost right after MERGE
    run = run_with(graph, request, {})
    monkeypatch.delenv(FAILPOINT_ENV)
    assert not run.success
    assert len(labelled_rows(settings)) == 60, "the MERGE committed the 60 labelled flowers"
    models = ModelRegistry(settings)
    assert models.challenger() is None or models.challenger().version == "1", "none trained"
    # Before the next retraining tick (every 5 min) DAY is judged again (labels_files_sensor
    # does so whenever a batch lands, every 60 s): its report now says the 60 are held.
    again = run_job(defs, instance, "performance_job", partition_key=DAY)
    assert again.success, step_failure_messages(again)
    outcome = retraining_tick(graph, cursor)
    assert isinstance(outcome, dg.RunRequest), (
        f"60 labelled flowers never trained on: {outcome.skip_message}"
    )


GARBAGE_CURSORS = {
    "reasons null": '{"evidence": {}, "last": {"run_key": "retrain-x", "reasons": null}}',
    "reasons not pairs": '{"evidence": {}, "last": {"run_key": "retrain-x", "reasons": [["a"]]}}',
    "reasons a number": '{"evidence": {}, "last": {"run_key": "retrain-x", "reasons": 7}}',
    "requested_at huge": '{"evidence": {"decay:x": ["k"]}, "requested_at": {"k": 1'
    + "0" * 400
    + "}}",
}


@pytest.mark.parametrize("cursor", list(GARBAGE_CURSORS.values()), ids=list(GARBAGE_CURSORS))
def test_a_garbage_cursor_does_not_raise_in_the_tick(settings, graph, champion, cursor):
    outcome = retraining_tick(graph, cursor)
    assert isinstance(outcome, dg.SkipReason | dg.RunRequest), outcome


def test_a_retrained_challenger_left_unevaluated_is_told_to_a_person(
    settings, graph, champion, judged_day, monkeypatch
):
    import shutil
    from urllib.parse import unquote, urlparse

    from iris_assets.assets.notifications import notification_sensor
    from iris_assets.core.notify import recent

    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    defs, instance = graph
    request, cursor = retraining_tick(graph, with_cursor=True)
    assert isinstance(request, dg.RunRequest), request
    # The evaluate step cannot read the champion's model (an artifact store outage): it fails
    # after challenger_model registered and aliased v2. Training never reads the champion.
    models = ModelRegistry(settings)
    uri = models.client.get_model_version_download_uri(models.name, "1")
    artifacts = urlparse(uri)
    assert artifacts.scheme == "file", uri
    folder = unquote(artifacts.path)
    shutil.move(folder, folder + ".away")
    try:
        run = run_with(graph, request, {})
    finally:
        shutil.move(folder + ".away", folder)
    assert not run.success
    assert models.challenger().version == "2" and models.challenger().evaluation is None
    stalled = retraining_tick(graph, cursor)
    assert "has no evaluation yet" in stalled.skip_message, stalled

    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        notification_sensor(context)
    told = [r["message"] for r in recent(settings.env_home, limit=20)]
    assert any(str(m.get("version")) == "2" or " v2" in m.get("text", "") for m in told), told


def test_a_hand_trained_challenger_waiting_for_approval_is_not_replaced(
    settings, graph, champion, judged_day_of_150
):
    from tests.assets.helpers import run_job, step_failure_messages

    defs, instance = graph
    hand = run_job(defs, instance, "training_job")  # a person trains v2 from the UI
    assert hand.success, step_failure_messages(hand)
    challenger = ModelRegistry(settings).challenger()
    assert challenger.version == "2" and challenger.evaluation == "passed"
    assert challenger.approval is None, "v2 waits for a person's approval"
    outcome = retraining_tick(graph)
    assert isinstance(outcome, dg.SkipReason), (
        f"v2 waits for approval, yet a retrain replaces it: {outcome.tags['iris/retrain_reason']}"
    )


def test_a_retrain_given_up_after_its_attempts_is_told_to_a_person(
    settings, graph, champion, judged_day_of_150, monkeypatch
):
    from iris_assets.assets.notifications import notification_sensor
    from iris_assets.core.notify import recent
    from tests.assets.test_retrain_attempts import start_and_end

    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    defs, instance = graph
    cursor = None
    for _ in range(3):  # three serverless cold starts that timed out
        request, cursor = retraining_tick(graph, cursor, with_cursor=True)
        assert isinstance(request, dg.RunRequest), request
        start_and_end(graph, request, "failed")
    stuck = retraining_tick(graph, cursor)
    assert stuck.skip_message.startswith("training_job ended 3 times without a challenger")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        notification_sensor(context)
    told = [r["message"]["text"] for r in recent(settings.env_home, limit=20)]
    assert any("without a challenger" in t or "retrain" in t for t in told), told
