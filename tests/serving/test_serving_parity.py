"""Protocol parity with MLflow's own scoring server: the same payloads, the same answers.

MLflow's scoring app (``mlflow.pyfunc.scoring_server.init``, what ``mlflow models serve`` runs)
answers in-process through Starlette's TestClient; ours is the session server over real HTTP.
Both serve version 1, and both must agree with ``mlflow.pyfunc.load_model(uri).predict``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from iris_assets.core.schema import FEATURE_COLUMNS

if TYPE_CHECKING:
    from conftest import Registry, RunningServer

COLUMNS = list(FEATURE_COLUMNS)
JSON = "application/json"
CSV = "text/csv"


@dataclass(frozen=True)
class MlflowScoring:
    client: Any  # starlette.testclient.TestClient
    predictions: list[int]  # pyfunc predict on registry.X


@pytest.fixture(scope="module")
def mlflow_scoring(registry: Registry) -> Iterator[MlflowScoring]:
    import mlflow.pyfunc
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as env:
        for name, value in registry.env().items():
            env.setenv(name, value)
        # init() marks this process as a serving environment; the context undoes it.
        env.delenv(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name, raising=False)
        model = mlflow.pyfunc.load_model(f"models:/{registry.model_name}/1")
        predictions = model.predict(registry.X[COLUMNS]).tolist()
        with TestClient(scoring_server.init(model), raise_server_exceptions=False) as client:
            yield MlflowScoring(client, predictions)


def ours(server: RunningServer, body: bytes, content_type: str | None) -> tuple[int, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request("POST", "/invocations", body, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def theirs(scoring: MlflowScoring, body: bytes, content_type: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    response = scoring.client.post("/invocations", content=body, headers=headers)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def valid_payloads(X) -> dict[str, tuple[bytes, str]]:
    records = X[COLUMNS].to_dict(orient="records")
    columnar = {c: X[c].tolist() for c in COLUMNS}
    # Columns in another order, an extra one and an index: matched by name, the rest ignored.
    split_columns = ["flower_id", *reversed(COLUMNS)]
    split = {
        "columns": split_columns,
        "index": list(range(100, 100 + len(X))),
        "data": [[i, *row] for i, row in enumerate(X[COLUMNS[::-1]].to_numpy().tolist())],
    }
    extra = [{**record, "collector": "ana"} for record in records]
    csv = X[COLUMNS[::-1]].assign(flower_id=range(len(X))).to_csv(index=False)
    forms = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": records},
        "dataframe_records, extra key": {"dataframe_records": extra},
        "dataframe_records, params": {"dataframe_records": records, "params": {}},
        "instances records": {"instances": records},
        "instances columnar": {"instances": columnar},
        "inputs records": {"inputs": records},
        "inputs columnar": {"inputs": columnar},
        "numeric strings": {
            "dataframe_records": [{c: str(v) for c, v in r.items()} for r in records]
        },
        "a column given as one value": {"inputs": {**columnar, COLUMNS[0]: 5.0}},
    }
    out = {name: (json.dumps(doc).encode(), JSON) for name, doc in forms.items()}
    out["csv, reordered with an extra column"] = (csv.encode(), CSV)
    return out


VALID = [
    "dataframe_split",
    "dataframe_records",
    "dataframe_records, extra key",
    "dataframe_records, params",
    "instances records",
    "instances columnar",
    "inputs records",
    "inputs columnar",
    "numeric strings",
    "csv, reordered with an extra column",
]


@pytest.mark.parametrize("form", VALID)
def test_same_predictions_as_mlflows_scoring_server(
    server: RunningServer, registry: Registry, mlflow_scoring: MlflowScoring, form: str
) -> None:
    body, content_type = valid_payloads(registry.X)[form]
    their_status, their_answer = theirs(mlflow_scoring, body, content_type)
    our_status, our_answer = ours(server, body, content_type)
    assert their_status == 200, their_answer
    assert our_status == 200, our_answer
    assert our_answer == their_answer == {"predictions": mlflow_scoring.predictions}


def test_a_column_given_as_one_value_is_broadcast_by_both(
    server: RunningServer, registry: Registry, mlflow_scoring: MlflowScoring
) -> None:
    body, content_type = valid_payloads(registry.X)["a column given as one value"]
    assert ours(server, body, content_type) == theirs(mlflow_scoring, body, content_type)


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_one_row_as_an_object_of_values_for_both(
    server: RunningServer, mlflow_scoring: MlflowScoring, key: str
) -> None:
    body = json.dumps({key: ROW}).encode()
    answers = [ours(server, body, JSON), theirs(mlflow_scoring, body, JSON)]
    assert answers[0] == answers[1]
    assert answers[0][0] == 200


def test_a_chunked_body_is_read_by_both(
    server: RunningServer, registry: Registry, mlflow_scoring: MlflowScoring
) -> None:
    import http.client

    body, _ = valid_payloads(registry.X)["dataframe_records"]
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(
            "POST", "/invocations", iter(pieces), {"Content-Type": JSON}, encode_chunked=True
        )
        response = conn.getresponse()
        our_answer = (response.status, json.loads(response.read()))
    finally:
        conn.close()
    their = mlflow_scoring.client.post(
        "/invocations", content=iter(pieces), headers={"Content-Type": JSON}
    )
    assert their.request.headers["transfer-encoding"] == "chunked"
    assert (
        our_answer
        == (their.status_code, their.json())
        == (200, {"predictions": mlflow_scoring.predictions})
    )


def test_integer_values_are_numbers_for_both(
    server: RunningServer, mlflow_scoring: MlflowScoring
) -> None:
    body = json.dumps({"dataframe_records": [dict.fromkeys(COLUMNS, 3), dict.fromkeys(COLUMNS, 1)]})
    answers = [f(s, body.encode(), JSON) for f, s in ((ours, server), (theirs, mlflow_scoring))]
    assert answers[0] == answers[1]
    assert answers[0][0] == 200


ROW = dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))
HEADER = ",".join(COLUMNS)


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


# Requests MLflow refuses as the client's fault: we refuse them too (our status may be more
# precise: 415 for a media type, where MLflow's JSON errors are all 400).
REFUSED_BY_BOTH = {
    "missing column": (_json({"dataframe_records": [{"sepal_length_cm": 5.1}]}), JSON),
    "null": (_json({"dataframe_records": [{**ROW, "petal_width_cm": None}]}), JSON),
    "NaN": (
        b'{"inputs": {"sepal_length_cm": [NaN], "sepal_width_cm": [1], '
        b'"petal_length_cm": [1], "petal_width_cm": [1]}}',
        JSON,
    ),
    "huge number": (_json({"dataframe_records": [{**ROW, "sepal_width_cm": 10**400}]}), JSON),
    "no rows": (_json({"dataframe_records": []}), JSON),
    "unknown key": (_json({"rows": [ROW]}), JSON),
    "invalid JSON": (b'{"dataframe_records": [', JSON),
    "empty body": (b"", JSON),
    "text/plain": (_json({"dataframe_records": [ROW]}), "text/plain"),
    "latin-1 charset": (_json({"dataframe_records": [ROW]}), "application/json; charset=latin-1"),
    "csv empty value": (f"{HEADER}\n5.1,,1.4,0.2\n".encode(), CSV),
    "csv text value": (f"{HEADER}\n5.1,abc,1.4,0.2\n".encode(), CSV),
    "csv underscore": (f"{HEADER}\n5_1,3.5,1.4,0.2\n".encode(), CSV),
    "text in a string": (_json({"dataframe_records": [{**ROW, "sepal_width_cm": "abc"}]}), JSON),
    "nan string": (_json({"dataframe_records": [{**ROW, "sepal_width_cm": "nan"}]}), JSON),
    # A review found these two answered with the other error code than MLflow's.
    "one record lacks a column": (
        _json({"dataframe_records": [ROW, {"sepal_length_cm": 1}]}),
        JSON,
    ),
    "inputs: one record lacks a column": (
        _json({"inputs": [ROW, {"sepal_length_cm": 1}]}),
        JSON,
    ),
    "records nested in a list": (_json({"dataframe_records": [[ROW]]}), JSON),
    "records as lists": (_json({"dataframe_records": [list(ROW.values())]}), JSON),
}


@pytest.mark.parametrize("case", list(REFUSED_BY_BOTH))
def test_what_mlflow_refuses_we_refuse(
    server: RunningServer, mlflow_scoring: MlflowScoring, case: str
) -> None:
    body, content_type = REFUSED_BY_BOTH[case]
    their_status, _ = theirs(mlflow_scoring, body, content_type)
    our_status, our_answer = ours(server, body, content_type)
    assert 400 <= their_status < 500
    assert 400 <= our_status < 500
    assert set(our_answer) == {"error_code", "message"}


# MLflow answers a media type it does not take with a text body, not an error code.
NOT_JSON_FOR_MLFLOW = ("text/plain", "latin-1 charset")


@pytest.mark.parametrize("case", [c for c in REFUSED_BY_BOTH if c not in NOT_JSON_FOR_MLFLOW])
def test_refused_with_mlflows_error_code(
    server: RunningServer, mlflow_scoring: MlflowScoring, case: str
) -> None:
    body, content_type = REFUSED_BY_BOTH[case]
    their_status, their_answer = theirs(mlflow_scoring, body, content_type)
    our_status, our_answer = ours(server, body, content_type)
    assert our_status == their_status == 400
    assert our_answer["error_code"] == their_answer["error_code"]


# Where we differ on purpose (docs/serving.md, "Differences from mlflow models serve"). Pinned so
# that an MLflow upgrade that changes its side is noticed and the page is kept true.
DIFFERENCES = {
    # MLflow casts strings with Python's float(), which reads "5_1" as 51.0; we take decimals only
    # (its CSV parser refuses "5_1" too).
    "underscore in a string": (
        _json({"dataframe_records": [{**ROW, "sepal_width_cm": "5_1"}]}),
        JSON,
        200,
        400,
    ),
    "boolean": (_json({"dataframe_records": [{**ROW, "sepal_width_cm": True}]}), JSON, 200, 400),
    # MLflow refuses unnamed rows for a model with named columns; we read them in signature order.
    "inputs lists": (_json({"inputs": [list(ROW.values())]}), JSON, 400, 200),
    "instances lists": (_json({"instances": [list(ROW.values())]}), JSON, 400, 200),
    # MLflow fails with a 500 and a text body; we say what is missing.
    "no Content-Type": (_json({"dataframe_records": [ROW]}), None, 500, 415),
    # MLflow compares the media type case-sensitively; media types are case-insensitive (RFC 9110).
    "media type in capitals": (_json({"dataframe_records": [ROW]}), "APPLICATION/JSON", 415, 200),
}


@pytest.mark.parametrize("case", list(DIFFERENCES))
def test_documented_differences(
    server: RunningServer, mlflow_scoring: MlflowScoring, case: str
) -> None:
    body, content_type, their_expected, our_expected = DIFFERENCES[case]
    assert theirs(mlflow_scoring, body, content_type)[0] == their_expected
    assert ours(server, body, content_type)[0] == our_expected
