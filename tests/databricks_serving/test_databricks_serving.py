"""DatabricksServingBackend against a fake of the SDK's serving_endpoints API (no network).

The fake takes and returns databricks-sdk's real dataclasses and records what the SDK would send,
so these tests hold the request bodies, the waiting, the errors and the secrecy of credentials.
"""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import dagster as dg
import pytest
from databricks.sdk.service.serving import (
    EndpointCoreConfigInput,
    ServedEntityInput,
    ServingEndpointsAPI,
)

from iris_assets.assets.serving import endpoint_round_trip, serving_endpoint
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.resources import ModelRegistryResource, SettingsResource
from iris_assets.resources.databricks_serving import (
    DatabricksServingBackend,
    DatabricksServingError,
    auth_headers_for_url,
)
from iris_assets.serving.client import ServingError
from iris_assets.settings import load_settings
from tests.databricks_serving.fake_serving_endpoints import NEVER, FakeServingEndpoints

HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
TOKEN = "dapi-THIS-IS-A-SECRET-TOKEN"
CLIENT_SECRET = "dose-THIS-IS-A-SECRET-OAUTH"
SECRETS = (TOKEN, CLIENT_SECRET)


class FakeConfig:
    host = HOST

    def authenticate(self) -> dict[str, str]:
        return {"Authorization": "Bearer minted-oauth-token"}


def settings_resource(env: str, tmp_path) -> SettingsResource:
    settings = load_settings(
        {"IRIS_ENV": env, "IRIS_TARGET": "databricks", "IRIS_HOME": str(tmp_path / "home")}
    )
    return SettingsResource.from_settings(settings)


def make_backend(fake: FakeServingEndpoints, tmp_path, env: str = "dev", **fields):
    """A backend whose only difference from production is the workspace client it builds."""

    class FakeWorkspaceBackend(DatabricksServingBackend):
        def workspace_client(self):
            return SimpleNamespace(serving_endpoints=fake, config=FakeConfig())

    fields.setdefault("poll_interval_seconds", 0.0)
    fields.setdefault("ready_timeout_seconds", 5.0)
    return FakeWorkspaceBackend(settings=settings_resource(env, tmp_path), **fields)


def served_entity(model: str, version: str, scale_to_zero: bool) -> dict:
    return {
        "name": f"iris_model-{version}",
        "entity_name": model,
        "entity_version": version,
        "workload_size": "Small",
        "scale_to_zero_enabled": scale_to_zero,
    }


def inference_table(catalog: str, schema: str = "ml") -> dict:
    return {
        "catalog_name": catalog,
        "schema_name": schema,
        "table_name_prefix": "iris_serving_log",
        "enabled": True,
    }


def routes_to(version: str) -> dict:
    return {"routes": [{"served_entity_name": f"iris_model-{version}", "traffic_percentage": 100}]}


# --- the fake is faithful to the SDK --------------------------------------------------------------
@pytest.mark.parametrize("method", ["create", "update_config", "get", "query", "put_ai_gateway"])
def test_fake_has_the_sdk_signatures(method):
    def shape(function):
        parameters = list(inspect.signature(function).parameters.values())[1:]  # without self
        return [(p.name, p.kind, p.default) for p in parameters]

    assert shape(getattr(FakeServingEndpoints, method)) == shape(
        getattr(ServingEndpointsAPI, method)
    )


# --- deploy ---------------------------------------------------------------------------------------
def test_first_deploy_creates_the_endpoint_pinned_to_the_version_and_waits(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=3)
    backend = make_backend(fake, tmp_path, env="dev")

    deployment = backend.deploy("iris_dev.ml.iris_model", "1")

    assert fake.calls("create") == [
        {
            "name": "iris-dev",
            "config": {
                "served_entities": [served_entity("iris_dev.ml.iris_model", "1", True)],
                "traffic_config": routes_to("1"),
            },
            "ai_gateway": {"inference_table_config": inference_table("iris_dev")},
        }
    ]
    assert fake.calls("update_config") == []
    assert fake.calls("put_ai_gateway") == []  # set at creation already
    # NOT_READY for three reads, then READY: deploy returned only after it saw READY.
    assert fake.get_calls >= 4
    assert deployment.version == "1"
    assert deployment.url == f"{HOST}/serving-endpoints/iris-dev/invocations"
    assert deployment.detail["action"] == "created"
    assert backend.served_version() == "1"
    # The smoke test sent one flower with the feature columns, after the endpoint was ready.
    assert fake.requests[-1][0] == "query"
    (smoke,) = fake.calls("query")
    assert [list(record) for record in smoke["dataframe_records"]] == [list(FEATURE_COLUMNS)]


def test_prod_endpoint_never_scales_to_zero(tmp_path):
    fake = FakeServingEndpoints()
    make_backend(fake, tmp_path, env="prod").deploy("iris_prod.ml.iris_model", "4")

    (create,) = fake.calls("create")
    assert create["name"] == "iris-prod"
    assert create["config"]["served_entities"] == [
        served_entity("iris_prod.ml.iris_model", "4", False)
    ]


def test_second_deploy_updates_the_config_to_the_new_version(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=2)
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "1")

    deployment = backend.deploy("iris_dev.ml.iris_model", "2")

    assert len(fake.calls("create")) == 1
    assert fake.calls("update_config") == [
        {
            "served_entities": [served_entity("iris_dev.ml.iris_model", "2", True)],
            "traffic_config": routes_to("2"),
        }
    ]
    # During the update the endpoint stays READY on version 1; deploy waited for version 2.
    assert deployment.detail["action"] == "updated"
    assert backend.served_version() == "2"


def test_deploying_the_version_already_served_changes_nothing(tmp_path):
    fake = FakeServingEndpoints()
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "1")

    deployment = backend.deploy("iris_dev.ml.iris_model", "1")

    assert deployment.detail["action"] == "unchanged"
    assert fake.calls("update_config") == []
    assert len(fake.calls("create")) == 1


def test_deploy_waits_for_an_update_in_progress_before_changing_the_config(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=2)
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "1")
    someone_else = EndpointCoreConfigInput(
        served_entities=[
            ServedEntityInput(
                name="iris_model-1",
                entity_name="iris_dev.ml.iris_model",
                entity_version="1",
                workload_size="Small",
            )
        ]
    )
    fake.start_update_in_progress("iris-dev", someone_else)

    backend.deploy("iris_dev.ml.iris_model", "2")  # the fake raises ResourceConflict otherwise

    assert backend.served_version() == "2"


def test_an_endpoint_that_never_gets_ready_times_out_naming_it_and_its_state(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=NEVER)
    backend = make_backend(fake, tmp_path, ready_timeout_seconds=0.05, poll_interval_seconds=0.01)

    with pytest.raises(DatabricksServingError) as raised:
        backend.deploy("iris_dev.ml.iris_model", "1")

    message = str(raised.value)
    assert "serving endpoint iris-dev was not ready after 0.05 s" in message
    assert "ready=NOT_READY config_update=IN_PROGRESS" in message
    assert fake.calls("query") == []


def test_a_failed_update_says_so_and_keeps_the_old_version(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=1, fail_updates=True)
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "1")

    with pytest.raises(DatabricksServingError, match="iris-dev did not take the new config"):
        backend.deploy("iris_dev.ml.iris_model", "2")

    assert backend.served_version() == "1"


def test_deploy_goes_ahead_after_someone_elses_update_failed(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=1)
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "1")
    fake.fail_updates = True
    with pytest.raises(DatabricksServingError):
        backend.deploy("iris_dev.ml.iris_model", "2")
    fake.fail_updates = False

    deployment = backend.deploy("iris_dev.ml.iris_model", "3")

    assert deployment.detail["action"] == "updated"
    assert backend.served_version() == "3"


def test_a_failing_smoke_query_names_the_endpoint(tmp_path):
    from databricks.sdk.errors import BadRequest

    def refuse(record):
        raise BadRequest("Model is missing inputs ['sepal_length_cm']")

    backend = make_backend(FakeServingEndpoints(predict=refuse), tmp_path)
    with pytest.raises(DatabricksServingError, match="iris-dev is ready but one flower failed"):
        backend.deploy("iris_dev.ml.iris_model", "1")


# --- served_version, url, predict -----------------------------------------------------------------
def test_served_version_is_none_without_an_endpoint_or_before_it_is_ready(tmp_path):
    fake = FakeServingEndpoints(polls_until_ready=NEVER)
    backend = make_backend(fake, tmp_path)
    assert backend.served_version() is None

    fake.create("iris-dev", config=EndpointCoreConfigInput(served_entities=[]))
    assert backend.served_version() is None


def test_url_is_the_workspace_scoring_url(tmp_path):
    backend = make_backend(FakeServingEndpoints(), tmp_path, env="prod")
    assert backend.url() == f"{HOST}/serving-endpoints/iris-prod/invocations"
    bare = make_backend(FakeServingEndpoints(), tmp_path, host="adb-1.azuredatabricks.net/")
    assert bare.url() == "https://adb-1.azuredatabricks.net/serving-endpoints/iris-dev/invocations"


def test_predict_goes_through_serving_endpoints_query(tmp_path):
    fake = FakeServingEndpoints()
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "3")
    records = [dict.fromkeys(FEATURE_COLUMNS, 1.0), dict.fromkeys(FEATURE_COLUMNS, 2.0)]

    answer = backend.predict(records)

    assert answer == {"predictions": [0, 0], "model_version": "3"}
    assert fake.calls("query")[-1] == {"dataframe_records": records}


def test_predict_errors_become_serving_errors_naming_the_endpoint(tmp_path):
    backend = make_backend(FakeServingEndpoints(), tmp_path)
    with pytest.raises(ServingError, match="serving endpoint iris-dev: Endpoint with name"):
        backend.predict([dict.fromkeys(FEATURE_COLUMNS, 1.0)])


def test_auth_headers_come_from_the_workspace_client(tmp_path):
    backend = make_backend(FakeServingEndpoints(), tmp_path)
    assert backend.auth_headers() == {"Authorization": "Bearer minted-oauth-token"}


# --- credentials ----------------------------------------------------------------------------------
def test_from_env_wires_only_the_variables_that_are_set_as_env_vars(tmp_path):
    environ = {"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_CLIENT_ID": ""}
    backend = DatabricksServingBackend.from_env(settings_resource("dev", tmp_path), environ)

    wired = {
        name: value.env_var_name
        for name, value in backend.__dict__.items()
        if isinstance(value, dg.EnvVar)
    }
    assert wired == {"host": "DATABRICKS_HOST", "token": "DATABRICKS_TOKEN"}
    assert backend.client_id is None and backend.client_secret is None
    assert TOKEN not in repr(backend)


def test_the_real_workspace_client_gets_the_token_and_never_shows_it(tmp_path):
    backend = DatabricksServingBackend(
        settings=settings_resource("dev", tmp_path), host=HOST, token=TOKEN
    )
    client = backend.workspace_client()
    assert client.config.auth_type == "pat"
    assert client.config.host == HOST
    assert TOKEN not in repr(client.config)
    # With a token and a client id/secret, the token is used (as the step runner does).
    both = backend.model_copy(update={"client_id": "app-id", "client_secret": CLIENT_SECRET})
    assert both.workspace_client().config.auth_type == "pat"


def test_no_secret_in_repr_metadata_logs_or_errors(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeServingEndpoints()
    backend = make_backend(
        fake, tmp_path, token=TOKEN, client_id="app-id", client_secret=CLIENT_SECRET
    )
    deployment = backend.deploy("iris_dev.ml.iris_model", "1")
    never = make_backend(
        FakeServingEndpoints(polls_until_ready=NEVER),
        tmp_path,
        token=TOKEN,
        client_secret=CLIENT_SECRET,
        ready_timeout_seconds=0.01,
    )
    with pytest.raises(DatabricksServingError) as raised:
        never.deploy("iris_dev.ml.iris_model", "1")

    shown = [
        repr(backend),
        str(backend),
        json.dumps(deployment.detail, default=str),
        deployment.url,
        str(raised.value),
        caplog.text,
        json.dumps(fake.requests, default=str),
    ]
    assert "iris-dev" in caplog.text  # the logs were captured
    for text in shown:
        for secret in SECRETS:
            assert secret not in text


class ChampionRegistry(ModelRegistryResource):
    """The registry as the serving asset sees it: a name and a champion version."""

    def get(self):
        champion = SimpleNamespace(version="7")
        return SimpleNamespace(name="iris_dev.ml.iris_model", champion=lambda: champion)


def test_the_serving_asset_and_its_check_run_on_databricks_without_leaking(tmp_path, monkeypatch):
    """The real asset and check with credentials from the environment through dg.EnvVar."""
    monkeypatch.setenv("DATABRICKS_HOST", HOST)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)

    def species(record: dict) -> int:  # a rule that is right on the three smoke flowers
        petal = record["petal_length_cm"]
        return 0 if petal < 2.5 else 1 if petal < 4.8 else 2

    fake = FakeServingEndpoints(polls_until_ready=1, predict=species)

    class FakeWorkspaceBackend(DatabricksServingBackend):
        def workspace_client(self):
            assert self.token == TOKEN  # resolved from the environment inside the run
            return SimpleNamespace(serving_endpoints=fake, config=FakeConfig())

    settings = settings_resource("dev", tmp_path)
    serving = FakeWorkspaceBackend.from_env(settings, poll_interval_seconds=0.0)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [serving_endpoint, endpoint_round_trip],
        resources={"serving": serving, "registry": ChampionRegistry(settings=settings)},
        instance=instance,
        raise_on_error=False,
    )

    assert result.success
    (materialization,) = result.asset_materializations_for_node("serving_endpoint")
    assert materialization.metadata["version"].value == "7"
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    assert check.metadata["served_version"].value == "7"
    # The whole event log of the run: log lines, metadata, check results, resource config.
    everything = dg.serialize_value(instance.all_logs(result.run_id))
    assert "serving endpoint iris-dev: ready=READY" in everything  # the backend's log lines
    assert TOKEN not in everything


def test_auth_headers_for_url_sends_the_token_only_to_the_workspace():
    environ = {"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": TOKEN}
    url = f"{HOST}/serving-endpoints/iris-dev/invocations"

    assert auth_headers_for_url(url, environ) == {"Authorization": f"Bearer {TOKEN}"}
    assert auth_headers_for_url("https://elsewhere.example.com/invocations", environ) == {}
    assert auth_headers_for_url("http://127.0.0.1:5115/invocations", environ) == {}
    assert auth_headers_for_url(url.replace("https", "http"), environ) == {}
    assert auth_headers_for_url(url, {"DATABRICKS_TOKEN": TOKEN}) == {}


def test_auth_headers_for_url_mints_an_oauth_token_for_a_service_principal(monkeypatch):
    import databricks.sdk

    built = {}

    class StubClient:
        def __init__(self, **kwargs):
            built.update(kwargs)
            self.config = FakeConfig()

    monkeypatch.setattr(databricks.sdk, "WorkspaceClient", StubClient)
    environ = {
        "DATABRICKS_HOST": HOST,
        "DATABRICKS_CLIENT_ID": "app-id",
        "DATABRICKS_CLIENT_SECRET": CLIENT_SECRET,
    }
    url = f"{HOST}/serving-endpoints/iris-dev/invocations"

    assert auth_headers_for_url(url, environ) == {"Authorization": "Bearer minted-oauth-token"}
    assert built["auth_type"] == "oauth-m2m" and built["client_id"] == "app-id"
    # A token, when set, wins (as in the step runner and the backend).
    with_token = {**environ, "DATABRICKS_TOKEN": TOKEN}
    assert auth_headers_for_url(url, with_token) == {"Authorization": f"Bearer {TOKEN}"}


def test_importing_the_backend_does_not_load_the_sdk():
    code = (
        "import sys, iris_assets.resources.databricks_serving; "
        "print([m for m in sys.modules if m.startswith('databricks')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- the AI Gateway inference table -------------------------------------------------------------
def test_an_endpoint_without_an_inference_table_gets_one_in_this_schema(tmp_path):
    fake = FakeServingEndpoints()
    entity = ServedEntityInput(
        name="iris_model-1", entity_name="iris_prod.ml.iris_model", entity_version="1"
    )
    fake.create("iris-prod", config=EndpointCoreConfigInput(served_entities=[entity]))
    backend = make_backend(fake, tmp_path, env="prod")

    deployment = backend.deploy("iris_prod.ml.iris_model", "2")

    assert fake.calls("put_ai_gateway") == [
        {"inference_table_config": inference_table("iris_prod")}
    ]
    assert deployment.detail["inference_table"] == "iris_prod.ml.iris_serving_log_payload"
    gateway = fake.get("iris-prod").ai_gateway
    assert gateway.inference_table_config.enabled is True
    # Deploying again finds the table in place and leaves the gateway alone.
    backend.deploy("iris_prod.ml.iris_model", "3")
    assert len(fake.calls("put_ai_gateway")) == 1


def test_an_inference_table_logging_elsewhere_is_disabled_moved_and_other_settings_kept(tmp_path):
    from databricks.sdk.service.serving import (
        AiGatewayConfig,
        AiGatewayInferenceTableConfig,
        AiGatewayRateLimit,
        AiGatewayRateLimitKey,
        AiGatewayRateLimitRenewalPeriod,
    )

    fake = FakeServingEndpoints()
    limit = AiGatewayRateLimit(
        calls=100,
        key=AiGatewayRateLimitKey.USER,
        renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
    )
    elsewhere = AiGatewayInferenceTableConfig(
        catalog_name="someone", schema_name="else", table_name_prefix="old", enabled=True
    )
    fake.create(
        "iris-dev",
        ai_gateway=AiGatewayConfig(inference_table_config=elsewhere, rate_limits=[limit]),
        config=EndpointCoreConfigInput(
            served_entities=[
                ServedEntityInput(
                    name="iris_model-1", entity_name="iris_dev.ml.iris_model", entity_version="1"
                )
            ]
        ),
    )
    backend = make_backend(fake, tmp_path)

    backend.deploy("iris_dev.ml.iris_model", "2")

    disabled, enabled = fake.calls("put_ai_gateway")
    assert disabled["inference_table_config"] == {
        "catalog_name": "someone",
        "schema_name": "else",
        "table_name_prefix": "old",
        "enabled": False,
    }
    assert enabled["inference_table_config"] == inference_table("iris_dev")
    # A PUT replaces the whole gateway: the rate limit someone set is sent again, not lost.
    assert enabled["rate_limits"] == disabled["rate_limits"] == [limit.as_dict()]
    assert fake.get("iris-dev").ai_gateway.rate_limits == [limit]


def test_the_fake_refuses_what_databricks_refuses_for_inference_tables():
    from databricks.sdk.errors import InvalidParameterValue
    from databricks.sdk.service.serving import AiGatewayInferenceTableConfig, AutoCaptureConfigInput

    fake = FakeServingEndpoints()
    legacy = AutoCaptureConfigInput(catalog_name="c", schema_name="s", enabled=True)
    entity = ServedEntityInput(name="m-1", entity_name="c.s.m", entity_version="1")
    with pytest.raises(InvalidParameterValue, match="auto_capture_config"):
        fake.create(
            "e",
            config=EndpointCoreConfigInput(served_entities=[entity], auto_capture_config=legacy),
        )
    fake.create("e", config=EndpointCoreConfigInput(served_entities=[entity]))
    with pytest.raises(InvalidParameterValue, match="auto_capture_config"):
        fake.update_config("e", served_entities=[entity], auto_capture_config=legacy)
    with pytest.raises(InvalidParameterValue, match="catalog_name and schema_name"):
        fake.put_ai_gateway("e", inference_table_config=AiGatewayInferenceTableConfig(enabled=True))
    table = AiGatewayInferenceTableConfig(catalog_name="c", schema_name="s", enabled=True)
    answer = fake.put_ai_gateway("e", inference_table_config=table)
    assert answer.inference_table_config == table  # parsed back by the SDK's from_dict
    moved = AiGatewayInferenceTableConfig(catalog_name="c", schema_name="other", enabled=True)
    with pytest.raises(InvalidParameterValue, match="disable the inference table first"):
        fake.put_ai_gateway("e", inference_table_config=moved)


def test_the_backend_never_sends_the_legacy_auto_capture_config(tmp_path):
    fake = FakeServingEndpoints()
    backend = make_backend(fake, tmp_path)
    backend.deploy("iris_dev.ml.iris_model", "1")
    backend.deploy("iris_dev.ml.iris_model", "2")
    assert "auto_capture" not in json.dumps(fake.requests)
