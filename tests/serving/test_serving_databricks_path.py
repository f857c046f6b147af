"""One client for both targets: the Databricks SDK's own query call against the local server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving import client

if TYPE_CHECKING:
    from conftest import Registry

ENDPOINT = "iris-test"
ROWS = [
    dict(zip(FEATURE_COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True)),
    dict(zip(FEATURE_COLUMNS, [7.7, 3.0, 6.1, 2.3], strict=True)),
]


@pytest.fixture
def endpoint(start_server):
    return start_server(extra_args=("--endpoint-name", ENDPOINT))


def workspace(url: str):
    from databricks.sdk import WorkspaceClient

    # A token is what a workspace needs; the local server does not read it.
    return WorkspaceClient(host=url, token="dapi-local-test", auth_type="pat")


def test_the_databricks_sdk_queries_the_local_endpoint(endpoint, registry: Registry) -> None:
    answer = workspace(endpoint.url).serving_endpoints.query(name=ENDPOINT, dataframe_records=ROWS)
    assert answer.predictions == [0, 2]
    # The same body on MLflow's path gives the same answer.
    assert client.predict(endpoint.url, {"dataframe_records": ROWS})["predictions"] == [0, 2]


def test_another_endpoint_name_is_not_served(endpoint) -> None:
    from databricks.sdk.errors import NotFound

    with pytest.raises(NotFound) as raised:
        workspace(endpoint.url).serving_endpoints.query(name="iris-prod", dataframe_records=ROWS)
    assert ENDPOINT in str(raised.value)


def test_the_databricks_path_validates_like_invocations(endpoint) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    path = f"/serving-endpoints/{ENDPOINT}/invocations"
    conn.request("POST", path, b'{"rows": []}', {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error_code"] == "BAD_REQUEST"
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert (response.status, response.headers["Allow"]) == (405, "POST")
    for other in (
        "/serving-endpoints//invocations",
        f"/serving-endpoints/{ENDPOINT}/x/invocations",
    ):
        conn.request("POST", other, b"{}", {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 404, other
    conn.close()


def test_a_server_without_an_endpoint_name_answers_no_databricks_path(server) -> None:
    with pytest.raises(client.ServingError) as raised:
        client.predict(f"{server.url}/serving-endpoints/{ENDPOINT}", {"dataframe_records": ROWS})
    assert raised.value.status == 404
