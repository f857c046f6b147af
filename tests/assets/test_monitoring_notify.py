"""Notifications reach a real HTTP server on 127.0.0.1; a dead webhook fails nothing."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from iris_assets.assets.notifications import MESSAGES_PER_TICK, notification_sensor
from iris_assets.core.labels import simulate_labels
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.notify import post_json, recent
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


class TricklingWebhook:
    """A webhook that answers the status line, then one header line every ``drip`` seconds,
    never ending: each socket read succeeds, so urllib's per-operation timeout never fires."""

    def __init__(self, drip: float = 0.5):
        self.requests = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.closed = threading.Event()
        threading.Thread(target=self._accept, args=(drip,), daemon=True).start()

    def _accept(self, drip):
        while not self.closed.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._trickle, args=(connection, drip), daemon=True).start()

    def _trickle(self, connection, drip):
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.closed.wait(drip):
                    connection.sendall(b"X-Slow: yes\r\n")
            except OSError:
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/hooks/{TOKEN}"

    def close(self):
        self.closed.set()
        self.server.close()


@pytest.fixture
def trickling():
    hook = TricklingWebhook()
    yield hook
    hook.close()


def in_thread(function, *args, bound: float = 60.0):
    """``function(*args)`` in a thread; fails (instead of hanging the suite) if it never ends."""
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(function(*args)), daemon=True)
    worker.start()
    worker.join(bound)
    assert not worker.is_alive(), f"{function.__name__} still blocked after {bound} s"
    return outcome[0]


def test_a_trickling_webhook_cannot_hold_a_post_past_its_deadline(trickling):
    delivery = in_thread(post_json, trickling.url, {"text": "hi"}, 1.0)
    assert delivery.status == "failed" and "timed out" in delivery.detail
    assert TOKEN not in delivery.detail


def report_failed_checks(instance, count: int):
    for n in range(count):
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("model_performance"),
                check_name="live_accuracy",
                passed=False,
                metadata={"summary": f"failure {n}"},
            )
        )


def test_a_burst_of_failed_checks_is_told_in_full_once_across_ticks(settings, webhook, monkeypatch):
    """More failures than a history page (20) and than a tick's budget: every one is told, in
    order, exactly once."""
    monkeypatch.setenv("IRIS_NOTIFY_URL", webhook.url)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        report_failed_checks(instance, 25)
        cursor, outcomes = None, []
        for _ in range(4):
            outcome, cursor = tick(defs, instance, cursor)
            outcomes.append(outcome.skip_message)
    told = [body["summary"] for body in webhook.bodies]
    assert told == [f"failure {n}" for n in range(25)], outcomes
    assert f"at most {MESSAGES_PER_TICK} a tick" in outcomes[0]
    assert "nothing to tell" in outcomes[-1]


def test_a_hanging_webhook_spends_the_tick_budget_then_resumes_without_repeats(
    settings, trickling, monkeypatch
):
    monkeypatch.setenv("IRIS_NOTIFY_URL", trickling.url)
    monkeypatch.setattr("iris_assets.core.notify.TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr("iris_assets.assets.notifications.TICK_BUDGET_SECONDS", 1.2)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        report_failed_checks(instance, 6)
        first, cursor = in_thread(tick, defs, instance)
        assert "the webhook failed" in first.skip_message and "timed out" in first.skip_message
        assert "wait for the next tick" in first.skip_message
        attempts = trickling.requests
        assert 1 <= attempts < 6
        rest = []
        while len(rest) < 6 and (not rest or "nothing to tell" not in rest[-1]):
            outcome, cursor = in_thread(tick, defs, instance, cursor)
            rest.append(outcome.skip_message)
    records = recent(settings.env_home, limit=100)
    summaries = [record["message"]["summary"] for record in records]
    assert summaries == [f"failure {n}" for n in range(6)], "each once, none lost, in order"
    assert {record["delivery"] for record in records} == {"failed"}
    assert trickling.requests == 6
    assert TOKEN not in (settings.env_home / "notifications.jsonl").read_text()


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:9/hooks/{TOKEN} s3cr3t",  # the reviewer's: InvalidURL quotes the path
        f"http://127.0.0.1:9/hooks?token={TOKEN}",
        f"http://user:{TOKEN}@127.0.0.1:9/hooks",
        f"http://{TOKEN}.invalid/hooks",
        f"ftp://127.0.0.1:9/{TOKEN}",
        f"not a url {TOKEN}",
        f"http://127.0.0.1:99999/{TOKEN}",
    ],
)
def test_the_webhook_url_never_reaches_the_outbox_the_log_or_the_tick(
    settings, url, monkeypatch, caplog
):
    monkeypatch.setenv("IRIS_NOTIFY_URL", url)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        report_failed_checks(instance, 1)
        outcome, _ = in_thread(tick, defs, instance)
    assert "the webhook failed for 1" in outcome.skip_message
    [record] = recent(settings.env_home)
    assert record["delivery"] == "failed"
    for text in (outcome.skip_message, record["detail"], caplog.text):
        assert TOKEN not in text and "s3cr3t" not in text and "hooks" not in text, text
    assert "s3cr3t" not in (settings.env_home / "notifications.jsonl").read_text()


def test_links_point_at_the_ui_iris_dev_started_and_the_decay_bar_is_the_evaluation_bar(
    settings, monkeypatch
):
    from iris_assets.assets.monitoring import PerformanceConfig
    from iris_assets.assets.training import EvaluationConfig

    monkeypatch.setenv("IRIS_DAGSTER_URL", "http://127.0.0.1:3999")
    assert build_definitions(settings).resources["notifier"].dagster_url == "http://127.0.0.1:3999"
    assert PerformanceConfig().min_accuracy == EvaluationConfig().min_accuracy


class RedirectingWebhook:
    """A webhook that answers its POST with a redirect and a later GET with 200 (an http://
    URL whose host moved to https://, say): urllib would follow 301/302/303 as a GET without
    the body, and the message that never arrived would read as delivered."""

    def __init__(self, code: int):
        self.requests: list[tuple[str, str, int]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                seen.append(("POST", self.path, len(self.rfile.read(length))))
                self.send_response(code)
                self.send_header("Location", "/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                seen.append(("GET", self.path, 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirecting_webhook_is_a_failure_not_a_delivery(code):
    hook = RedirectingWebhook(code)
    try:
        delivery = post_json(hook.url, {"text": "v2 waits for approval"})
    finally:
        hook.close()
    assert delivery.status == "failed", f"the message went nowhere: {hook.requests}"
    assert delivery.detail == f"HTTP {code}" and TOKEN not in delivery.detail
    assert [method for method, _, _ in hook.requests] == ["POST"], "no redirect is followed"


def test_an_outbox_that_cannot_be_written_neither_raises_the_tick_nor_posts_twice(
    settings, webhook, monkeypatch
):
    """A full disk or a read-only home: the post went out, the outbox write fails. Raising
    there threw the tick away with its cursor, so every later tick posted the same message
    again (a webhook spammed every 30 s)."""
    monkeypatch.setenv("IRIS_NOTIFY_URL", webhook.url)
    (settings.env_home / "notifications.jsonl").mkdir()  # open(..., "a") fails: IsADirectoryError
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        report_failed_checks(instance, 1)
        first, cursor = tick(defs, instance)
        again, _ = tick(defs, instance, cursor)
    assert [body["summary"] for body in webhook.bodies] == ["failure 0"], "told once"
    assert "outbox" in first.skip_message and "IsADirectoryError" in first.skip_message
    assert "nothing to tell" in again.skip_message
