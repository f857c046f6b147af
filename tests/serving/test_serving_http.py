"""The server over real HTTP: routes, every input form, errors, and the HTTP/1.1 framing."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import pytest

from iris_assets.core.schema import FEATURE_COLUMNS

if TYPE_CHECKING:
    from conftest import Registry, RunningServer

COLUMNS = list(FEATURE_COLUMNS)
JSON = {"Content-Type": "application/json"}
SECRET = "SECRET-VALUE-7731"


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.headers, response.read()


def payloads(X) -> dict[str, tuple[bytes, str]]:
    rows = X[COLUMNS].to_numpy().tolist()
    records = X[COLUMNS].to_dict(orient="records")
    columnar = {c: X[c].tolist() for c in COLUMNS}
    split = {"columns": list(reversed(COLUMNS)), "data": X[COLUMNS[::-1]].to_numpy().tolist()}
    csv = X[COLUMNS].to_csv(index=False)
    forms = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": records},
        "instances records": {"instances": records},
        "instances lists": {"instances": rows},
        "inputs records": {"inputs": records},
        "inputs columnar": {"inputs": columnar},
        "inputs lists": {"inputs": rows},
    }
    out = {name: (json.dumps(doc).encode(), "application/json") for name, doc in forms.items()}
    out["csv"] = (csv.encode(), "text/csv")
    return out


FORMS = [
    "dataframe_split",
    "dataframe_records",
    "instances records",
    "instances lists",
    "inputs records",
    "inputs columnar",
    "inputs lists",
    "csv",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_predicts_like_the_estimator(
    server: RunningServer, registry: Registry, form: str
) -> None:
    body, content_type = payloads(registry.X)[form]
    conn = connect(server.url)
    status, headers, raw = call(conn, "POST", "/invocations", body, {"Content-Type": content_type})
    assert status == 200, raw
    assert headers["X-Model-Version"] == "1"
    assert headers["Content-Type"] == "application/json"
    expected = registry.estimators["1"].predict(registry.X).tolist()
    assert json.loads(raw) == {"predictions": expected}


def test_a_big_batch_is_scored_off_the_event_loop(server: RunningServer, registry) -> None:
    X = registry.X[COLUMNS]
    big = np.tile(X.to_numpy(), (200, 1))  # 30 000 rows, ~1 MB of JSON
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": big.tolist()}}).encode()
    status, headers, raw = call(connect(server.url), "POST", "/invocations", body, JSON)
    assert status == 200
    expected = registry.estimators["1"].predict(X).tolist() * 200
    assert json.loads(raw)["predictions"] == expected


def record(**overrides):
    row = dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))
    row.update(overrides)
    return {"dataframe_records": [row]}


BAD = {
    "empty body": (b"", JSON, 400),
    "invalid json": (b'{"inputs": [SECRET-VALUE-7731', JSON, 400),
    "missing content type": (json.dumps(record()).encode(), {}, 415),
    "form content type": (
        json.dumps(record()).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    "unknown key": (json.dumps({"rows": [SECRET]}).encode(), JSON, 400),
    "two keys": (json.dumps({**record(), "inputs": [[1, 2, 3, 4]]}).encode(), JSON, 400),
    "missing column": (
        json.dumps({"dataframe_records": [{"sepal_length_cm": 1}]}).encode(),
        JSON,
        400,
    ),
    "non-numeric": (json.dumps(record(petal_width_cm=SECRET)).encode(), JSON, 400),
    "null": (json.dumps(record(petal_width_cm=None)).encode(), JSON, 400),
    "NaN": (b'{"inputs": [[5.1, NaN, 1.4, 0.2]]}', JSON, 400),
    "no rows": (b'{"dataframe_records": []}', JSON, 400),
    "ragged": (b'{"instances": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5]]}', JSON, 400),
    "csv text": (
        f"{','.join(COLUMNS)}\n5.1,{SECRET},1.4,0.2\n".encode(),
        {"Content-Type": "text/csv"},
        400,
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_a_short_json_error_and_the_server_keeps_serving(
    server: RunningServer, case: str
) -> None:
    body, headers, expected_status = BAD[case]
    conn = connect(server.url)
    status, _, raw = call(conn, "POST", "/invocations", body, headers)
    assert status == expected_status
    error = json.loads(raw)
    assert set(error) == {"error_code", "message"}
    assert error["error_code"] and error["message"]
    assert SECRET.encode() not in raw
    assert b"Traceback" not in raw
    assert len(raw) < 200
    # Same keep-alive connection: the error did not break it.
    status, _, raw = call(conn, "POST", "/invocations", json.dumps(record()).encode(), JSON)
    assert (status, json.loads(raw)) == (200, {"predictions": [0]})


def test_a_body_over_the_configured_limit_is_413_and_the_server_keeps_serving(
    start_server,
) -> None:
    server = start_server(extra_args=("--max-body-bytes", "1000"))
    rows = [{**record()["dataframe_records"][0], "note": SECRET} for _ in range(20)]
    big = json.dumps({"dataframe_records": rows}).encode()
    assert len(big) > 1000
    conn = connect(server.url)
    status, headers, raw = call(conn, "POST", "/invocations", big, JSON)
    assert status == 413
    assert headers["Connection"] == "close"
    assert json.loads(raw) == {
        "error_code": "REQUEST_TOO_LARGE",
        "message": "request body too large (limit 1000 bytes)",
    }
    assert SECRET.encode() not in raw
    status, _, raw = call(
        connect(server.url), "POST", "/invocations", json.dumps(record()).encode(), JSON
    )
    assert (status, json.loads(raw)) == (200, {"predictions": [0]})
    assert SECRET not in server.log_text()


def test_not_ready_until_a_model_is_loaded() -> None:
    # The transport-free app as it is between start and the end of the first model load.
    from iris_assets.serving.server import ServingApp

    app = ServingApp("iris_test.ml.iris_model", admin_token=None, max_body_bytes=1000)
    status, raw, _ = app.handle("GET", "/health", {}, b"")
    assert status == 503
    assert json.loads(raw)["version"] is None
    assert app.handle("GET", "/ping", {}, b"")[0] == 200
    status, raw, _ = app.handle("GET", "/version", {}, b"")
    assert status == 200 and json.loads(raw)["version"] is None
    body = json.dumps(record()).encode()
    status, raw, _ = app.handle("POST", "/invocations", {"content-type": "application/json"}, body)
    assert status == 503
    assert json.loads(raw)["error_code"] == "TEMPORARILY_UNAVAILABLE"


def listening_addresses(port: int) -> list[str]:
    """The local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_binds_loopback_only_unless_told_otherwise(server: RunningServer) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the kernel's socket table in /proc/net")
    # The session server was started without --host.
    assert listening_addresses(server.port) == ["0100007F"]  # 127.0.0.1, nothing else


def test_ping_health_version(server: RunningServer, registry: Registry) -> None:
    conn = connect(server.url)
    status, _, _ = call(conn, "GET", "/ping")
    assert status == 200
    status, _, raw = call(conn, "GET", "/health")
    health = json.loads(raw)
    assert status == 200
    assert (health["model_name"], health["version"]) == (registry.model_name, "1")
    status, _, raw = call(conn, "GET", "/version")
    version = json.loads(raw)
    assert status == 200
    assert (version["model_name"], version["version"]) == (registry.model_name, "1")
    assert version["loaded_at"] and version["server_version"]
    assert version["pid"] == server.process.pid


def test_unknown_path_and_wrong_method(server: RunningServer) -> None:
    conn = connect(server.url)
    status, _, raw = call(conn, "GET", "/no/such/path")
    assert status == 404
    assert json.loads(raw)["error_code"] == "ENDPOINT_NOT_FOUND"
    status, headers, raw = call(conn, "GET", "/invocations")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert json.loads(raw)["error_code"] == "METHOD_NOT_ALLOWED"
    status, _, _ = call(conn, "POST", "/ping", b"{}", JSON)
    assert status == 405


@pytest.mark.parametrize(
    "headers", [{}, {"X-Iris-Admin-Token": "wrong"}, {"X-Iris-Admin-Token": ""}]
)
def test_admin_requires_the_token(server: RunningServer, headers) -> None:
    conn = connect(server.url)
    status, _, raw = call(conn, "POST", "/admin/model", b'{"version": "2"}', {**JSON, **headers})
    assert status == 403
    assert json.loads(raw)["error_code"] == "PERMISSION_DENIED"
    _, _, raw = call(conn, "GET", "/health")
    assert json.loads(raw)["version"] == "1"


# --- raw HTTP/1.1 framing ------------------------------------------------------------------------


def raw_connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from the stream (Content-Length framed); leftovers stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a body"
        rest += chunk
    buffer[:] = rest[length:]
    return status_line.encode(), headers, rest[:length]


def request_bytes(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    good = json.dumps(record()).encode()
    sock = raw_connect(server)
    sock.sendall(
        request_bytes("GET", "/ping")
        + request_bytes("POST", "/invocations", good)
        + request_bytes("POST", "/invocations", b"{}")
        + request_bytes("GET", "/health")
        + request_bytes("POST", "/invocations", good)
    )
    buffer = bytearray()
    statuses = [read_response(sock, buffer) for _ in range(5)]
    assert [s[0].split()[1] for s in statuses] == [b"200", b"200", b"400", b"200", b"200"]
    assert json.loads(statuses[3][2])["status"] == "ok"
    assert json.loads(statuses[4][2]) == {"predictions": [0]}
    sock.close()


CHUNKED_HEAD = (
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunked(body: bytes, size: int) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_chunked_bodies_are_read_byte_by_byte_and_pipelined(server: RunningServer) -> None:
    good = json.dumps(record()).encode()
    sock = raw_connect(server)
    # A chunk extension and a trailer are allowed and ignored; a request follows on the same
    # connection, and every byte arrives on its own.
    stream = (
        CHUNKED_HEAD
        + b"3;ext=1\r\n"
        + good[:3]
        + b"\r\n"
        + chunked(good[3:], 7)[:-2]
        + b"X-Trailer: 1\r\n\r\n"
        + request_bytes("POST", "/invocations", good)
    )
    for i in range(len(stream)):
        sock.sendall(stream[i : i + 1])
    buffer = bytearray()
    for _ in range(2):
        status, _, body = read_response(sock, buffer)
        assert status.split()[1] == b"200"
        assert json.loads(body) == {"predictions": [0]}
    sock.close()


@pytest.mark.parametrize(
    "stream",
    [
        CHUNKED_HEAD + b"zz\r\n{}\r\n0\r\n\r\n",  # not a hex size
        CHUNKED_HEAD + b"0x2\r\n{}\r\n0\r\n\r\n",  # int(.., 16) would accept it
        CHUNKED_HEAD + b"2\r\n{}XX0\r\n\r\n",  # data longer than its size
        CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\n") + b"{}",
        CHUNKED_HEAD.replace(b"chunked", b"gzip, chunked") + b"0\r\n\r\n",
    ],
    ids=["bad size", "0x size", "no CRLF after data", "both framings", "gzip"],
)
def test_malformed_chunked_bodies_are_refused_and_close(
    server: RunningServer, stream: bytes
) -> None:
    sock = raw_connect(server)
    sock.sendall(stream)
    status, headers, body = read_response(sock, bytearray())
    assert status.split()[1] in (b"400", b"501")
    assert headers["connection"] == "close"
    assert set(json.loads(body)) == {"error_code", "message"}
    assert closed_by_server(sock)


def test_a_chunked_body_over_the_limit_is_refused(start_server) -> None:
    small = start_server(extra_args=("--max-body-bytes", "1000"))
    sock = raw_connect(small)
    sock.sendall(CHUNKED_HEAD + b"300\r\n" + b" " * 0x300 + b"\r\n300\r\n")
    status, _, body = read_response(sock, bytearray())
    assert status.split()[1] == b"413"
    assert json.loads(body)["error_code"] == "REQUEST_TOO_LARGE"


def test_an_oversized_body_is_refused_before_it_is_sent(server: RunningServer) -> None:
    sock = raw_connect(server)
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    # A client that does not wait for an answer before sending still gets to read it.
    sock.sendall(b"[" * 2_000_000)
    status, _, body = read_response(sock, bytearray())
    assert status.split()[1] == b"413"
    assert json.loads(body)["error_code"] == "REQUEST_TOO_LARGE"
    assert closed_by_server(sock)


def test_expect_100_continue(server: RunningServer) -> None:
    good = json.dumps(record()).encode()
    sock = raw_connect(server)
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(good)
    )
    buffer = bytearray()
    status, _, _ = read_response(sock, buffer)
    assert status.split()[1] == b"100"
    sock.sendall(good)
    status, headers, body = read_response(sock, buffer)
    assert status.split()[1] == b"200"
    assert json.loads(body) == {"predictions": [0]}


def test_http_1_0_closes_after_the_response(server: RunningServer) -> None:
    sock = raw_connect(server)
    sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
    status, headers, _ = read_response(sock, bytearray())
    assert status.split()[1] == b"200"
    assert closed_by_server(sock)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"HELLO\r\n\r\n", b"400"),
        (b"GET /ping HTTP/2.0\r\n\r\n", b"505"),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", b"400"),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
    ],
    ids=["garbage", "http2", "two lengths", "negative length", "huge head"],
)
def test_unframeable_requests_are_refused_and_closed(server: RunningServer, raw, status) -> None:
    sock = raw_connect(server)
    sock.sendall(raw)
    line, _, body = read_response(sock, bytearray())
    assert line.split()[1] == status
    assert json.loads(body)["message"]
    assert closed_by_server(sock)


def test_server_log_has_no_warnings_and_no_request_data(server: RunningServer) -> None:
    log = server.log_text()
    assert "Warning" not in log and "feature names" not in log
    assert SECRET not in log
