"""The request log: every scored request becomes one row of a real Delta table, written by the
server's writer process in batches, without ever holding up an answer.

Real server subprocesses (``start_server``), real HTTP clients on 127.0.0.1, a real Delta table.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deltalake import DeltaTable

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving.log_writer import DROPPED_METADATA_KEY
from tests.serving.conftest import RunningServer

CANARY = "CANARY-must-never-be-logged-7f3a"


def log_args(table: Path, *extra: str) -> tuple[str, ...]:
    return ("--request-log", str(table), "--endpoint-name", "iris-test", *extra)


def health(server: RunningServer) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


def stop(server: RunningServer) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(60)


def rows(table: Path) -> list[dict]:
    if not (table / "_delta_log").exists():
        return []
    return DeltaTable(str(table)).to_pyarrow_table().to_pylist()


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rpartition(")")[2].split()[:1] == ["Z"])


class Client:
    """One keep-alive connection that sends bodies and keeps (body, status, answer) triples."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.exchanges: list[tuple[bytes, int, bytes]] = []

    def post(self, body: bytes, content_type: str = "application/json", path="/invocations"):
        self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        answer = response.read()
        self.exchanges.append((body, response.status, answer))
        return response.status, answer


def varied_body(registry, client_no: int, i: int) -> tuple[bytes, str]:
    """Bodies in several MLflow forms; each one distinct, so rows can be matched to requests."""
    row = registry.X.iloc[(client_no * 37 + i) % len(registry.X)]
    values = [round(float(row[c]) + (client_no * 1000 + i) * 1e-7, 7) for c in FEATURE_COLUMNS]
    form = i % 3
    if form == 0:
        record = dict(zip(FEATURE_COLUMNS, values, strict=True))
        return json.dumps({"dataframe_records": [record]}).encode(), "application/json"
    if form == 1:
        split = {"columns": list(FEATURE_COLUMNS), "data": [values, values[::-1]]}
        return json.dumps({"dataframe_split": split}).encode(), "application/json"
    header = ",".join(FEATURE_COLUMNS)
    return f"{header}\n{','.join(map(str, values))}\n".encode(), "text/csv"


def test_every_request_under_concurrent_load_is_exactly_one_row(start_server, registry, tmp_path):
    table = tmp_path / "iris_serving_log"
    server = start_server(extra_args=log_args(table, "--request-log-flush-seconds", "0.2"))
    clients, per_client = 8, 500

    def run(client_no: int) -> Client:
        client = Client(server.port)
        for i in range(per_client):
            body, content_type = varied_body(registry, client_no, i)
            path = "/invocations" if i % 2 else "/serving-endpoints/iris-test/invocations"
            client.post(body, content_type, path)
        return client

    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(run, range(clients)))
    exchanges = [exchange for client in done for exchange in client.exchanges]
    assert len(exchanges) == clients * per_client
    assert {status for _, status, _ in exchanges} == {200}, "a request failed"
    assert stop(server) == 0

    logged = rows(table)
    assert len(logged) == clients * per_client
    assert len({row["databricks_request_id"] for row in logged}) == len(logged)
    # Each row holds exactly the body a client sent and the answer it received.
    sent = collections.Counter((body.decode(), answer.decode()) for body, _, answer in exchanges)
    assert collections.Counter((row["request"], row["response"]) for row in logged) == sent
    assert {row["status_code"] for row in logged} == {200}
    assert {row["model_version"] for row in logged} == {"1"}
    assert {row["model_name"] for row in logged} == {registry.model_name}
    assert {row["endpoint"] for row in logged} == {"iris-test"}
    assert {row["path"] for row in logged} == {
        "/invocations",
        "/serving-endpoints/iris-test/invocations",
    }
    assert all(row["execution_duration_ms"] > 0 for row in logged)
    assert {row["request_content_type"] for row in logged} == {"application/json", "text/csv"}
    day = {row["request_time"].date() for row in logged}
    assert {row["request_date"] for row in logged} == day
    # Batches, not a commit per request.
    assert DeltaTable(str(table)).version() < 100


def test_a_stuck_writer_drops_and_counts_but_answers_stay_correct(start_server, registry, tmp_path):
    table = tmp_path / "iris_serving_log"
    max_rows = 200
    server = start_server(
        extra_args=log_args(
            table,
            "--request-log-max-rows",
            str(max_rows),
            "--request-log-flush-seconds",
            "0.1",
        )
    )
    writer = health(server)["request_log"]["writer_pid"]
    os.kill(writer, signal.SIGSTOP)  # the writer hangs: no commit, its pipe fills up
    try:
        clients, per_client = 4, 1000
        expected = registry.estimators["1"].predict(registry.X).tolist()

        def run(client_no: int) -> list[bool]:
            client, correct = Client(server.port), []
            for i in range(per_client):
                n = (client_no * per_client + i) % len(registry.X)
                record = registry.X.iloc[n].to_dict()
                status, answer = client.post(json.dumps({"dataframe_records": [record]}).encode())
                correct.append(status == 200 and json.loads(answer)["predictions"] == [expected[n]])
            return correct

        with ThreadPoolExecutor(clients) as pool:
            results = [ok for batch in pool.map(run, range(clients)) for ok in batch]
        assert len(results) == clients * per_client and all(results)

        stats = health(server)["request_log"]
        assert stats["queued_rows"] <= max_rows
        assert stats["dropped"] > 0
        assert stats["recorded"] + stats["dropped"] == clients * per_client
        assert stats["committed"] == 0
    finally:
        os.kill(writer, signal.SIGCONT)
    assert stop(server) == 0

    # Everything that was queued is committed once the writer runs again; the rest is counted.
    logged = rows(table)
    assert len(logged) == stats["recorded"] == clients * per_client - stats["dropped"]
    history = DeltaTable(str(table)).history()
    assert max(int(c.get(DROPPED_METADATA_KEY, 0)) for c in history) == stats["dropped"]
    assert "requests not logged so far" in server.log_text()


def test_queued_bytes_stay_under_the_bound_when_the_writer_is_stuck(
    start_server, registry, tmp_path
):
    table = tmp_path / "iris_serving_log"
    max_bytes = 1024 * 1024
    server = start_server(extra_args=log_args(table, "--request-log-max-bytes", str(max_bytes)))
    writer = health(server)["request_log"]["writer_pid"]
    os.kill(writer, signal.SIGSTOP)
    try:
        records = registry.X.sample(1000, replace=True, random_state=1).to_dict("records")
        body = json.dumps({"dataframe_records": records}).encode()  # ~100 KB
        rss_before = _rss_kib(server.process.pid)
        client = Client(server.port)
        for _ in range(300):  # ~30 MB of bodies, were they all kept
            status, answer = client.post(body)
            assert status == 200 and len(json.loads(answer)["predictions"]) == 1000
        stats = health(server)["request_log"]
        rss_growth_mib = (_rss_kib(server.process.pid) - rss_before) / 1024
    finally:
        os.kill(writer, signal.SIGCONT)
    # Nothing was committed, so every recorded row is still in the server (queued, or in the
    # frame the stuck writer does not take): all of them count against the bound.
    assert stats["committed"] == 0
    assert stats["recorded"] * len(body) <= stats["queued_bytes"] <= max_bytes
    assert stats["dropped"] >= 300 - max_bytes // len(body) - 20
    assert rss_growth_mib < 25, f"the server grew by {rss_growth_mib:.0f} MiB"
    assert stop(server) == 0
    assert len(rows(table)) == stats["recorded"]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_refused_requests_are_logged_with_their_status_and_never_their_input(
    start_server, tmp_path
):
    table = tmp_path / "iris_serving_log"
    server = start_server(extra_args=log_args(table, "--max-body-bytes", "4096"))
    client = Client(server.port)
    good = {c: 1.0 for c in FEATURE_COLUMNS}
    garbage = [
        (b'{"dataframe_records": [' + CANARY.encode() + b"]}", "application/json", 400),
        (json.dumps({"dataframe_records": [good]}).encode(), f"text/{CANARY}", 415),
        (
            json.dumps({"dataframe_records": [{**good, "sepal_width_cm": CANARY}]}).encode(),
            "application/json",
            400,
        ),
        (json.dumps({"dataframe_records": [{CANARY: 1.0}]}).encode(), "application/json", 400),
        (json.dumps({CANARY: []}).encode(), "application/json", 400),
        (b"\xff\xfe" + CANARY.encode(), "application/json", 400),
    ]
    for body, content_type, status in garbage:
        assert client.post(body, content_type)[0] == status
    # Wrong method on a scoring route, then a body over the limit (the server closes after it).
    client.connection.request("GET", "/invocations")
    wrong_method = client.connection.getresponse()
    wrong_method.read()
    assert wrong_method.status == 405
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999\r\n\r\n" + CANARY.encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 413")
    # Routes that are not scoring (health, unknown paths) are not request-log rows.
    client.connection.request("GET", "/ping")
    client.connection.getresponse().read()
    client.post(b"{}", path="/nowhere")
    assert stop(server) == 0

    logged = rows(table)
    assert sorted(row["status_code"] for row in logged) == sorted(
        [status for *_, status in garbage] + [405, 413]
    )
    assert all(row["request"] is None and row["logging_error"] for row in logged)
    assert all(json.loads(row["response"])["error_code"] for row in logged)
    assert CANARY not in json.dumps(logged, default=str)


def test_graceful_shutdown_flushes_and_a_restart_appends(start_server, registry, tmp_path):
    table = tmp_path / "iris_serving_log"
    args = log_args(table, "--request-log-flush-seconds", "3600")  # only shutdown flushes
    record = json.dumps({"dataframe_records": [registry.X.iloc[0].to_dict()]}).encode()

    first = start_server(extra_args=args)
    client = Client(first.port)
    for _ in range(50):
        assert client.post(record)[0] == 200
    assert health(first)["request_log"]["committed"] == 0
    assert stop(first) == 0
    assert len(rows(table)) == 50

    second = start_server(version="2", extra_args=args)
    client = Client(second.port)
    for _ in range(30):
        assert client.post(record)[0] == 200
    assert stop(second) == 0
    logged = rows(table)
    assert collections.Counter(row["model_version"] for row in logged) == {"1": 50, "2": 30}
    runs = {row["databricks_request_id"].rsplit("-", 1)[0] for row in logged}
    assert len(runs) == 2 and len({row["databricks_request_id"] for row in logged}) == 80


def test_a_killed_server_loses_at_most_what_it_had_not_sent(start_server, registry, tmp_path):
    table = tmp_path / "iris_serving_log"
    server = start_server(extra_args=log_args(table, "--request-log-flush-seconds", "0.2"))
    writer = health(server)["request_log"]["writer_pid"]
    record = json.dumps({"dataframe_records": [registry.X.iloc[0].to_dict()]}).encode()
    client = Client(server.port)
    for _ in range(100):
        client.post(record)
    # Committed on time, without any shutdown.
    wait_for(lambda: health(server)["request_log"]["committed"] == 100, what="a timed flush")
    for _ in range(10):
        client.post(record)

    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    # The writer sees its input end, commits what it had, and exits: no orphan.
    wait_for(lambda: not pid_alive(writer), what="the writer to exit")
    assert 100 <= len(rows(table)) <= 110


def test_without_the_flag_the_server_logs_nothing(start_server, tmp_path):
    server = start_server()
    assert health(server)["request_log"] == {"enabled": False}
    assert not any(tmp_path.rglob("_delta_log"))


def test_a_writer_that_cannot_write_is_reported_and_serving_goes_on(
    start_server, registry, tmp_path
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the table's folder should be")
    server = start_server(
        extra_args=log_args(blocker / "iris_serving_log", "--request-log-flush-seconds", "0.1")
    )
    record = json.dumps({"dataframe_records": [registry.X.iloc[0].to_dict()]}).encode()
    client = Client(server.port)
    for _ in range(20):
        assert client.post(record)[0] == 200
    wait_for(lambda: health(server)["request_log"]["failed"] > 0, what="a failed batch")
    stats = health(server)["request_log"]
    assert stats["last_error"]
    assert client.post(record)[0] == 200
    assert stop(server) == 0
    assert "a batch failed" in server.log_text()


def test_health_reports_the_log_while_serving(start_server, registry, tmp_path):
    table = tmp_path / "iris_serving_log"
    server = start_server(extra_args=log_args(table))
    stats = health(server)["request_log"]
    assert stats["enabled"] is True and stats["writer_running"] is True
    assert stats["max_queued_rows"] > 0 and stats["max_queued_bytes"] > 0
    assert stop(server) == 0


def test_a_killed_writer_is_replaced_and_every_row_it_lost_is_counted(
    start_server, registry, tmp_path
):
    table = tmp_path / "iris_serving_log"
    server = start_server(extra_args=log_args(table, "--request-log-flush-seconds", "0.1"))
    first = health(server)["request_log"]["writer_pid"]
    clients, per_client = 3, 800

    def run(client_no: int) -> list[int]:
        client = Client(server.port)
        for i in range(per_client):
            client.post(*varied_body(registry, client_no, i))
        return [status for _, status, _ in client.exchanges]

    with ThreadPoolExecutor(clients) as pool:
        load = pool.map(run, range(clients))
        wait_for(lambda: health(server)["request_log"]["committed"] > 0, what="a first commit")
        os.kill(first, signal.SIGKILL)  # under load: rows are in its pipe and in its hands
        seen = []
        while len(seen) < 2000:
            document = health(server)
            seen.append((document["status"], document["request_log"]["writer_running"]))
            if document["request_log"]["writer_pid"] != first and seen[-1] == ("ok", True):
                break
            time.sleep(0.01)
        statuses = [status for batch in load for status in batch]
    assert statuses == [200] * (clients * per_client)
    # While it was down /health said so; then a new writer took over.
    assert ("degraded", False) in seen
    assert seen[-1] == ("ok", True)

    def settled() -> bool:
        log = health(server)["request_log"]
        return log["queued_rows"] == 0 and log["committed"] + log["lost"] == log["recorded"]

    wait_for(settled, what="every recorded row committed or counted lost")
    stats = health(server)["request_log"]
    assert stats["writer_pid"] != first and stats["writer_restarts"] == 1
    assert stats["recorded"] + stats["dropped"] == clients * per_client
    assert stop(server) == 0
    # Nothing lost silently: every recorded row is committed or counted lost (a batch the writer
    # committed in the instant before its kill, unreported, is counted lost yet in the table).
    assert stats["recorded"] - stats["lost"] == stats["committed"] <= len(rows(table))
    assert "rows it held are lost" in server.log_text()


def test_writers_that_keep_dying_are_given_up_on_and_their_rows_counted(tmp_path, monkeypatch):
    from iris_assets.serving import request_log

    monkeypatch.setattr(request_log, "RESTART_BACKOFF_SECONDS", 0.01)
    log = request_log.RequestLog(tmp_path / "iris_serving_log", "m", flush_seconds=0.05)
    log._command = [sys.executable, "-c", "import sys; sys.exit(3)"]  # every new one dies
    os.kill(log.stats()["writer_pid"], signal.SIGKILL)
    wait_for(lambda: log.writer_gave_up, what="the restarts to be given up")
    assert log.writer_restarts == request_log.MAX_WRITER_RESTARTS
    assert log.stats()["writer_running"] is False
    for _ in range(10):
        log.record("/invocations", "application/json", b"{}", (200, b"{}", b""), 0.001)
    wait_for(lambda: log.lost == 10, what="rows no writer takes to be counted lost")
    closed = log.close()
    assert closed["lost"] == 10 and closed["committed"] == 0 and closed["recorded"] == 10


def test_iris_status_shows_a_request_log_whose_writer_is_down():
    from iris_assets.status import request_log_line, request_log_summary

    document = {
        "status": "degraded",
        "request_log": {
            "enabled": True,
            "writer_running": False,
            "recorded": 30,
            "committed": 10,
            "dropped": 2,
            "lost": 20,
            "writer_restarts": 5,
        },
    }
    line = request_log_line(request_log_summary(document))
    assert "DOWN" in line and "20 lost" in line and "2 dropped" in line
    assert request_log_summary({"status": "ok", "request_log": {"enabled": False}}) is None
    assert request_log_summary(None) is None
