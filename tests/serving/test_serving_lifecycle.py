"""Model swaps under load and graceful shutdown, each on a private server."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving import client

if TYPE_CHECKING:
    from conftest import Registry

COLUMNS = list(FEATURE_COLUMNS)
TOKEN = "test-admin-token-0123456789"


def test_swapping_versions_under_load_drops_nothing(start_server, registry: Registry) -> None:
    server = start_server(version="1")
    X = registry.X[COLUMNS]
    expected = {v: registry.estimators[v].predict(X) for v in ("1", "2")}
    # Rows the two versions disagree on, plus a few others: each answer shows who answered.
    disagree = np.flatnonzero(expected["1"] != expected["2"])
    rows = np.concatenate([disagree[:6], [0, 75, 149]])
    body = json.dumps({"dataframe_records": X.iloc[rows].to_dict(orient="records")}).encode()
    answers = {v: expected[v][rows].tolist() for v in expected}

    stop = threading.Event()
    results: list[tuple[int, str | None, list[int] | None]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def hammer() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        mine = []
        try:
            while not stop.is_set():
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = json.loads(response.read())
                mine.append(
                    (
                        response.status,
                        response.headers.get("X-Model-Version"),
                        payload.get("predictions"),
                    )
                )
        except BaseException as exc:
            failures.append(exc)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)
    swaps = [client.swap_model(server.url, "2", TOKEN)]
    time.sleep(0.4)
    swaps.append(client.swap_model(server.url, "1", TOKEN))
    time.sleep(0.4)
    stop.set()
    for thread in threads:
        thread.join(10)

    assert not failures
    assert [(s["version"], s["previous_version"]) for s in swaps] == [("2", "1"), ("1", "2")]
    assert len(results) > 100
    assert all(status == 200 for status, _, _ in results)
    served = {version for _, version, _ in results}
    assert served == {"1", "2"}
    # Every answer is exactly what the version named in its header predicts.
    assert all(predictions == answers[version] for _, version, predictions in results)
    assert client.health(server.url)["version"] == "1"


def test_sigterm_finishes_in_flight_requests_and_exits_0(start_server) -> None:
    # No token: the admin API must be off.
    server = start_server(version="2", token=None)
    with pytest.raises(client.ServingError) as raised:
        client.swap_model(server.url, "1", token="")
    assert raised.value.status == 403 and "disabled" in raised.value.message

    good = json.dumps(
        {"dataframe_records": [dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))]}
    ).encode()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    busy = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    busy.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(good) + good[:10]
    )
    time.sleep(0.2)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # The idle keep-alive connection is closed; the half-sent request is still answered.
    assert idle.recv(1) == b""
    busy.sendall(good[10:])
    response = b""
    while chunk := busy.recv(65536):
        response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in head
    assert json.loads(payload) == {"predictions": [0]}
    assert server.process.wait(10) == 0
    assert "stopped" in server.log_text()
