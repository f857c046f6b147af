"""The stdlib client against the real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving import client

if TYPE_CHECKING:
    from conftest import Registry, RunningServer

SETOSA = dict(zip(FEATURE_COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))
VIRGINICA = dict(zip(FEATURE_COLUMNS, [7.7, 3.0, 6.1, 2.3], strict=True))


def test_predict_records_and_single_record(server: RunningServer) -> None:
    result = client.predict(server.url, [SETOSA, VIRGINICA])
    assert result == {"predictions": [0, 2], "model_version": "1"}
    assert client.predict(server.url + "/", SETOSA)["predictions"] == [0]
    assert client.predict(server.url + "/invocations", SETOSA)["predictions"] == [0]


def test_predict_passes_protocol_payloads_through(server: RunningServer) -> None:
    payload = {"dataframe_split": {"columns": list(FEATURE_COLUMNS), "data": [[7.7, 3, 6.1, 2.3]]}}
    assert client.predict(server.url, payload)["predictions"] == [2]


def test_a_refused_request_raises_with_the_server_message(server: RunningServer) -> None:
    with pytest.raises(client.ServingError) as raised:
        client.predict(server.url, [{"sepal_length_cm": 5.0}])
    assert raised.value.status == 400
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"  # MLflow's code for it
    assert raised.value.message == "missing column 'sepal_width_cm'"


def test_health_and_version(server: RunningServer, registry: Registry) -> None:
    assert client.health(server.url)["version"] == "1"
    assert client.health(server.url + "/invocations")["version"] == "1"
    info = client.version(server.url)
    assert (info["model_name"], info["version"]) == (registry.model_name, "1")


def test_an_unreachable_server(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}"
    assert client.health(url) is None
    assert client.version(url) is None
    with pytest.raises(client.ServingError) as raised:
        client.predict(url, [SETOSA])
    assert raised.value.status is None
    assert "cannot reach" in str(raised.value)


def test_swap_model_needs_the_token(server: RunningServer) -> None:
    with pytest.raises(client.ServingError) as raised:
        client.swap_model(server.url, "2", token="not-the-token")
    assert raised.value.status == 403
    assert client.health(server.url)["version"] == "1"
