"""Notifications reach a real HTTP server on 127.0.0.1; a dead webhook fails nothing."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from iris_assets.assets.notifications import notification_sensor
from iris_assets.core.labels import simulate_labels
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.notify import recent
from iris_assets.core.registry import ModelRegistry
from iris_assets.definitions import build_definitions
from iris_assets.settings import CHAMPION_ALIAS
from iris_assets.steps.stores import table_store
from tests.assets.helpers import run_job, step_failure_messages
from tests.conftest import free_port

DAY = "2026-11-23"
TOKEN = "T0KEN-s3cr3t"


class Webhook:
    """A webhook receiver: records each POSTed JSON body, answers 204."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def tick(defs, instance, cursor=None):
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
    ) as context:
        return notification_sensor(context), context.cursor


def test_a_person_is_told_when_a_challenger_waits_and_when_live_accuracy_decays(
    settings, webhook, monkeypatch
):
    monkeypatch.setenv("IRIS_NOTIFY_URL", webhook.url)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        training = run_job(defs, instance, "training_job")
        assert training.success, step_failure_messages(training)

        outcome, cursor = tick(defs, instance)
        assert "1 notification(s)" in outcome.skip_message
        [waiting] = webhook.bodies
        assert waiting["event"] == "challenger_waiting_for_approval"
        assert waiting["version"] == "1" and waiting["approve"] == "iris approve 1 --by NAME"
        assert set(waiting["links"]) >= {"evaluation_report", "mlflow_version", "dagster_run"}
        assert "/versions/1" in waiting["links"]["mlflow_version"]
        assert TOKEN not in json.dumps(waiting), "the webhook URL is never in the message"

        again, cursor = tick(defs, instance, cursor)
        assert isinstance(again, dg.SkipReason) and len(webhook.bodies) == 1, "told once"

        ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")
        LandingArea(settings.landing_dir).write_batch(simulate_flowers(80, DAY, seed=5), DAY)
        assert run_job(defs, instance, "inference_job", partition_key=DAY).success
        scored = table_store(settings).read(settings.inference_table)
        labels = simulate_labels(scored, rows=60, accuracy_drop=0.6, seed=3)
        LandingArea(settings.labels_landing_dir).write_batch(labels, DAY)
        assert run_job(defs, instance, "performance_job", partition_key=DAY).success

        tick(defs, instance, cursor)
        failed = [b for b in webhook.bodies if b["event"] == "monitoring_check_failed"]
        [decay] = [b for b in failed if b["check"] == "live_accuracy"]
        assert decay["check"] == "live_accuracy" and decay["partition"] == DAY
        assert "below the bar 0.90" in decay["summary"]
        assert decay["links"]["asset"].endswith("/assets/model_performance")

    told = recent(settings.env_home)
    assert len(told) == len(webhook.bodies) >= 2
    assert {r["delivery"] for r in told} == {"delivered"}
    assert TOKEN not in (settings.env_home / "notifications.jsonl").read_text()


def test_a_dead_webhook_is_reported_and_fails_nothing(settings, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}"  # nothing listens there
    monkeypatch.setenv("IRIS_NOTIFY_URL", dead)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        training = run_job(defs, instance, "training_job")
        assert training.success, step_failure_messages(training)
        outcome, _ = tick(defs, instance)
    assert isinstance(outcome, dg.SkipReason)
    assert "the webhook failed for 1" in outcome.skip_message
    assert TOKEN not in outcome.skip_message
    [record] = recent(settings.env_home)
    assert record["delivery"] == "failed" and "refused" in record["detail"].lower()
    assert record["message"]["event"] == "challenger_waiting_for_approval"
    assert TOKEN not in (settings.env_home / "notifications.jsonl").read_text()


def test_without_a_webhook_the_message_still_reaches_the_outbox(settings, graph, monkeypatch):
    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    defs, instance = graph
    assert defs.resources["notifier"].url is None
    training = run_job(defs, instance, "training_job")
    assert training.success, step_failure_messages(training)
    tick(defs, instance)
    [record] = recent(settings.env_home)
    assert record["delivery"] == "not configured"

    ModelRegistry(settings).approve("1", by="ana")
    outcome, _ = tick(defs, instance)  # a fresh cursor reads the same evaluation again
    assert "nothing to tell" in outcome.skip_message, "an approved version is not news"
    assert len(recent(settings.env_home)) == 1
