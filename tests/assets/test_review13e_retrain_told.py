"""Review 13e, break 6: a retrain that needs a person is told once, through the webhook, with no
secret in the body; attempts retraining_sensor retries by itself are not told."""

import json

import dagster as dg
import pytest

from iris_assets.core.notify import recent
from iris_assets.definitions import build_definitions
from tests.assets.test_monitoring_notify import TOKEN, Webhook, tick
from tests.assets.test_monitoring_retraining import retraining_tick
from tests.assets.test_retrain_attempts import start_and_end


@pytest.fixture
def hook():
    receiver = Webhook()
    yield receiver
    receiver.close()


def test_a_given_up_retrain_is_posted_once_without_the_webhook_secret(
    settings, graph, champion, judged_day_of_150, hook, monkeypatch
):
    defs, instance = graph
    monkeypatch.setenv("IRIS_NOTIFY_URL", hook.url)
    told_defs = build_definitions(settings)  # the notifier reads IRIS_NOTIFY_URL
    told = (told_defs, instance)  # retraining_sensor with that notifier
    cursor, notes = None, None
    for _ in range(3):
        request, cursor = retraining_tick(told, cursor, with_cursor=True)
        assert isinstance(request, dg.RunRequest), request
        start_and_end(graph, request, "failed")
        _, notes = tick(told_defs, instance, notes)
        # The sensor retries the first two by itself: nobody needs to hear of them, nor of the
        # third's failure before the sensor decides on it.
        assert not [b for b in hook.bodies if b.get("event") == "retrain_given_up"], hook.bodies
    for _ in range(2):  # the tick that gives up tells it; the next one does not tell it again
        stuck, cursor = retraining_tick(told, cursor, with_cursor=True)
        assert stuck.skip_message.startswith("training_job ended 3 times"), stuck
        _, notes = tick(told_defs, instance, notes)
        assert len([b for b in hook.bodies if b.get("event") == "retrain_given_up"]) == 1
    [given_up] = [b for b in hook.bodies if b.get("event") == "retrain_given_up"]
    assert "3 times without a challenger" in given_up["text"]
    assert "labels: 60 new labelled flowers" in given_up["text"]
    assert TOKEN not in json.dumps(hook.bodies)
    assert TOKEN not in (settings.env_home / "notifications.jsonl").read_text()
    assert any(r["message"]["event"] == "retrain_given_up" for r in recent(settings.env_home))
