"""The short cuts of the request path give the answers of the long way, for any input.

The server takes short cuts for the request nearly every client sends (a small, well-formed
JSON body of records, the same request head again and again on one connection, a one-label
answer). Each must accept, refuse and answer exactly as the general code would; these tests
try to make them differ.
"""

from __future__ import annotations

import json
import random
import socket
from typing import TYPE_CHECKING

import numpy as np
import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving import protocol
from iris_assets.serving.protocol import BadRequest, format_predictions, parse_request

if TYPE_CHECKING:
    from conftest import RunningServer

COLUMNS = list(FEATURE_COLUMNS)
FAST = "application/json"
# The same media type spelled otherwise: always parsed by the general parser.
GENERAL = "Application/JSON"
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [7.7, 3.0, 6.1, 2.3]  # the same length in JSON as SETOSA

ODD_VALUES = [
    True,
    False,
    None,
    "3.5",
    " 3.5 ",
    "5_1",
    "nan",
    "",
    [1.0],
    {"v": 1.0},
    0,
    -3,
    2**53,
    2**53 + 1,
    -(2**53) - 1,
    10**30,
    10**400,
    1e308,
    -0.0,
    5e-324,
]


def outcome(body: bytes, content_type: str, max_rows: int | None = None):
    try:
        matrix = parse_request(body, content_type, COLUMNS, max_rows)
    except BadRequest as exc:
        return ("refused", exc.status, exc.error_code, exc.message)
    assert matrix.dtype == np.float64
    return ("matrix", matrix.shape, matrix.tobytes())


def hostile_bodies() -> list[bytes]:
    rng = random.Random(20261202)
    bodies = []
    for _ in range(1500):
        rows = []
        for _ in range(rng.choice([1, 1, 1, 2, 3, 16, 17, 64, 65, 200])):
            record = {c: round(rng.uniform(0.1, 9.0), rng.choice([0, 1, 3, 17])) for c in COLUMNS}
            if rng.random() < 0.2:
                record[rng.choice(COLUMNS)] = rng.choice(ODD_VALUES)
            if rng.random() < 0.05:
                del record[rng.choice(COLUMNS)]
            if rng.random() < 0.1:
                record["colour"] = "blue"
            rows.append(record)
        key = rng.choice(["dataframe_records", "instances", "inputs"])
        value: object = rows
        if rng.random() < 0.05:
            value = rows[0]  # one row as an object of values
        elif rng.random() < 0.05:
            value = [list(r.values()) for r in rows]  # rows as lists
        elif rng.random() < 0.03:
            value = [*rows, 7]
        document: dict[str, object] = {key: value}
        if rng.random() < 0.05:
            document["params"] = {}
        if rng.random() < 0.03:
            document["dataframe_split"] = {"columns": COLUMNS, "data": [SETOSA]}
        bodies.append(json.dumps(document).encode())
    one = json.dumps({"dataframe_records": [dict(zip(COLUMNS, SETOSA, strict=True))]})
    bodies += [
        b"",
        b"  \r\n",
        b"{",
        b"[]",
        b"null",
        b'{"dataframe_records": []}',
        b'{"dataframe_records": {}}',
        one.replace("5.1", "NaN").encode(),
        one.replace("5.1", "-Infinity").encode(),
        one.replace("5.1", "1e999").encode(),
        b"\xef\xbb\xbf" + one.encode(),  # a UTF-8 byte order mark
        one.encode("utf-16"),
        one.encode("utf-32-le"),
        one.replace('"sepal_length_cm"', '"sepal_length_c\\u006d"').encode(),  # an escape
        one.replace("}]", ', "note": "\\ud800"}]').encode(),  # a lone surrogate
        b"\xff" + one.encode(),
        one.encode() + b" trailing",
        one.replace("[{", "[{" * 1 + '"x": ' + "[" * 5000 + "]" * 5000 + ", ").encode(),
    ]
    return bodies


def test_the_fast_path_accepts_and_refuses_exactly_what_the_general_parser_does() -> None:
    for body in hostile_bodies():
        for max_rows in (None, 2, 100):
            assert outcome(body, FAST, max_rows) == outcome(body, GENERAL, max_rows), body[:200]


def test_the_fast_path_takes_the_charset_spelling_it_knows_only() -> None:
    body = json.dumps({"inputs": [dict(zip(COLUMNS, SETOSA, strict=True))]}).encode()
    for content_type in ("application/json; charset=utf-8", "application/json; charset=latin-1"):
        assert outcome(body, content_type) == outcome(body, content_type.upper())


def test_a_small_well_formed_request_does_not_take_the_general_parser(monkeypatch) -> None:
    def general(*_):
        raise AssertionError("the general JSON parser was used")

    monkeypatch.setattr(protocol, "_parse_json", general)
    monkeypatch.setattr(protocol, "_to_matrix", general)
    for key in ("dataframe_records", "instances", "inputs"):
        records = [dict(zip(COLUMNS, row, strict=True)) for row in (SETOSA, VIRGINICA)]
        matrix = parse_request(json.dumps({key: records}).encode(), FAST, COLUMNS)
        np.testing.assert_array_equal(matrix, np.array([SETOSA, VIRGINICA]))
    with pytest.raises(AssertionError):  # anything unusual still goes the long way
        parse_request(json.dumps({"dataframe_records": [{"x": 1}]}).encode(), FAST, COLUMNS)


@pytest.mark.parametrize(
    "predictions",
    [[0], [2], [-1], [10**30], [True], [False], ["setosa"], [1.5], [None], [0, 1], []],
)
def test_predictions_are_written_as_json_writes_them(predictions) -> None:
    expected = json.dumps({"predictions": predictions}, separators=(",", ":")).encode()
    assert format_predictions(predictions) == expected
    assert (
        format_predictions(np.array(predictions))
        == json.dumps(
            {"predictions": np.array(predictions).tolist()}, separators=(",", ":")
        ).encode()
    )


def test_many_distinct_labels_are_all_written_right() -> None:
    for label in range(-5, 5000):  # past the bound of remembered answers
        assert json.loads(format_predictions([label])) == {"predictions": [label]}


# --- one connection, the same head again ---------------------------------------------------------


def record_body(row: list[float]) -> bytes:
    return json.dumps({"dataframe_records": [dict(zip(COLUMNS, row, strict=True))]}).encode()


def head(length: int, extra: bytes = b"", path: bytes = b"/invocations") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
        b"Content-Length: %d\r\n\r\n" % (path, extra, length)
    )


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        buffer += chunk
    raw_head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status = int(raw_head.split(b" ", 2)[1])
    length = 0
    for line in raw_head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a body"
        rest += chunk
    buffer[:] = rest[length:]
    return status, rest[:length]


def test_the_same_head_with_other_bodies_answers_each_body(server: RunningServer) -> None:
    setosa, virginica = record_body(SETOSA), record_body(VIRGINICA)
    assert len(setosa) == len(virginica)
    same = head(len(setosa))
    broken = b"{" + b" " * (len(setosa) - 1)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        same
        + setosa
        + same
        + virginica
        + same
        + broken
        + same
        + setosa
        # the same head but another route: its own answer
        + head(len(setosa), path=b"/ping")
        + setosa
    )
    buffer = bytearray()
    answers = [read_response(sock, buffer) for _ in range(5)]
    assert [status for status, _ in answers] == [200, 200, 400, 200, 405]
    assert json.loads(answers[0][1]) == {"predictions": [0]}
    assert json.loads(answers[1][1]) == {"predictions": [2]}
    assert json.loads(answers[2][1])["message"] == "request body is not valid JSON"
    assert json.loads(answers[3][1]) == {"predictions": [0]}
    sock.close()


def test_every_expect_100_continue_gets_its_100_even_with_the_same_head(
    server: RunningServer,
) -> None:
    body = record_body(SETOSA)
    expecting = head(len(body), b"Expect: 100-continue\r\n")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    buffer = bytearray()
    for _ in range(3):
        sock.sendall(expecting)
        assert read_response(sock, buffer)[0] == 100
        sock.sendall(body)
        assert read_response(sock, buffer) == (200, b'{"predictions":[0]}')
    # a head that was framed plainly before, then asks for a 100: it gets one
    sock.sendall(head(len(body)) + body)
    assert read_response(sock, buffer)[0] == 200
    sock.sendall(expecting)
    assert read_response(sock, buffer)[0] == 100
    sock.sendall(body)
    assert read_response(sock, buffer)[0] == 200
    sock.close()


def test_a_body_the_short_cut_declines_is_decoded_once(monkeypatch):
    """A batch or a dataframe_split body is decoded once, not once per parser (a review found
    every declined body decoded twice: batches cost 1.3-1.6x the server CPU they did)."""
    calls = []
    real_decode, real_loads = protocol._JSON_DECODE, protocol.json.loads
    monkeypatch.setattr(protocol, "_JSON_DECODE", lambda s: calls.append(1) or real_decode(s))
    monkeypatch.setattr(protocol.json, "loads", lambda s: calls.append(1) or real_loads(s))
    row = dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))
    for document in (
        {"dataframe_records": [row] * 65},
        {"dataframe_records": [row] * 1000},
        {"dataframe_split": {"columns": COLUMNS, "data": [list(row.values())] * 1000}},
        {"inputs": {column: 1.0 for column in COLUMNS}},
        {"dataframe_records": [{**row, COLUMNS[0]: "5.1"}]},
    ):
        calls.clear()
        matrix = protocol.parse_request(json.dumps(document).encode(), "application/json", COLUMNS)
        assert matrix.shape[1] == len(COLUMNS)
        assert len(calls) == 1, f"{list(document)[0]}: decoded {len(calls)} times"
