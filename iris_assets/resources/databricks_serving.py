"""Databricks Model Serving as the serving backend: one endpoint per env serving one UC version.

``deploy`` creates the endpoint ``settings.endpoint_name`` or updates its config, pins it to the
requested version of the Unity Catalog model with all traffic on it, waits until the endpoint is
ready and serves that version, and sends one flower through it.

Every request the endpoint answers is logged by its **AI Gateway inference table**
(``ai_gateway.inference_table_config``) into ``{catalog}.{schema}.iris_serving_log_payload``, the
schema the pipeline's tables live in: set at creation, and put with ``put_ai_gateway`` on an
endpoint whose gateway logs elsewhere or not at all (other gateway settings are kept). The legacy
``auto_capture_config`` is never sent: Databricks refuses it on new and existing endpoints since
February 2026. Everything goes through
``databricks-sdk``'s ``serving_endpoints`` API on the client that ``workspace_client()`` builds
(tests override only that method).

Credentials come from the environment only: ``from_env`` wires the ``DATABRICKS_*`` variables that
are set as ``dg.EnvVar``s (Dagster shows the variable's name, never its value), and fields left
unset fall back to the SDK's own configuration chain. No credential is ever put in metadata, a log
line, an error message or the resource's repr. ``databricks.sdk`` is imported inside the methods,
so importing this module (and ``iris_assets.definitions``) stays light.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr

from iris_assets.resources.serving import Deployment, ServingBackend
from iris_assets.resources.settings import SettingsResource

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ServingEndpointDetailed

# Resource field -> environment variable. Secrets are marked repr=False on the fields below.
CREDENTIAL_ENV_VARS = {
    "host": "DATABRICKS_HOST",
    "token": "DATABRICKS_TOKEN",
    "client_id": "DATABRICKS_CLIENT_ID",
    "client_secret": "DATABRICKS_CLIENT_SECRET",
}

_log = dg.get_dagster_logger("iris.databricks_serving")


class DatabricksServingError(RuntimeError):
    """The endpoint could not be made to serve the version (names the endpoint and its state)."""


class DatabricksServingBackend(ServingBackend):
    """The Model Serving endpoint ``settings.endpoint_name`` (``iris-{env}``) on Databricks.

    Build it with ``DatabricksServingBackend.from_env(settings_resource)``. A personal access
    token (``token``) is used when set, else OAuth M2M (``client_id`` + ``client_secret``, a
    service principal), as the step runner does; with neither, the SDK's default chain
    (environment, config profile, notebook identity) decides.
    """

    host: str | None = Field(
        default=None, description="Workspace URL; wire as dg.EnvVar('DATABRICKS_HOST')."
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="Personal access token; wire as dg.EnvVar('DATABRICKS_TOKEN'), never as text.",
    )
    client_id: str | None = Field(
        default=None,
        description="Service principal application id; wire as dg.EnvVar('DATABRICKS_CLIENT_ID').",
    )
    client_secret: str | None = Field(
        default=None,
        repr=False,
        description="OAuth secret of the principal; wire as dg.EnvVar('DATABRICKS_CLIENT_SECRET').",
    )
    workload_size: str = Field(default="Small", description="Small, Medium or Large.")
    scale_to_zero_enabled: bool | None = Field(
        default=None, description="Scale to zero when idle; default: True in dev, False in prod."
    )
    ready_timeout_seconds: float = Field(
        default=1800.0, description="How long deploy waits for the endpoint to be ready."
    )
    poll_interval_seconds: float = Field(
        default=15.0, description="Seconds between two state reads while waiting."
    )

    _client: Any = PrivateAttr(default=None)

    @classmethod
    def from_env(
        cls,
        settings: SettingsResource,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> DatabricksServingBackend:
        """The backend with every ``DATABRICKS_*`` credential that is set wired as a ``dg.EnvVar``.

        Only variables that are set are wired: an ``EnvVar`` whose variable is unset fails every
        run, and a run authenticates with either a token or a client id/secret, not both.
        """
        environ = os.environ if environ is None else environ
        credentials = {
            field: dg.EnvVar(variable)
            for field, variable in CREDENTIAL_ENV_VARS.items()
            if environ.get(variable)
        }
        return cls(settings=settings, **credentials, **overrides)

    # --- the SDK client (tests override only this) ---------------------------------------------
    def workspace_client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient

        kwargs: dict[str, Any] = {}
        if self.host:
            kwargs["host"] = self.host
        # The same choice as the step runner's: a token when there is one, else OAuth M2M.
        if self.token:
            kwargs.update(token=self.token, auth_type="pat")
        elif self.client_id and self.client_secret:
            kwargs.update(
                client_id=self.client_id, client_secret=self.client_secret, auth_type="oauth-m2m"
            )
        return WorkspaceClient(**kwargs, product="iris-assets", product_version="0.1.0")

    def _workspace(self) -> WorkspaceClient:
        # One client per resource instance: with OAuth M2M, building one costs a network call.
        if self._client is None:
            self._client = self.workspace_client()
        return self._client

    # --- ServingBackend ------------------------------------------------------------------------
    def deploy(self, model_name: str, version: str) -> Deployment:
        from databricks.sdk.service.serving import (
            AiGatewayConfig,
            EndpointCoreConfigInput,
            Route,
            ServedEntityInput,
            TrafficConfig,
        )

        name = self._endpoint_name()
        version = str(version)
        api = self._workspace().serving_endpoints
        served_name = served_entity_name(model_name, version)
        entity = ServedEntityInput(
            name=served_name,
            entity_name=model_name,
            entity_version=version,
            workload_size=self.workload_size,
            scale_to_zero_enabled=self._scale_to_zero(),
        )
        traffic = TrafficConfig(
            routes=[Route(served_entity_name=served_name, traffic_percentage=100)]
        )

        existing = _get_or_none(api, name)
        if existing is None:
            _log.info(f"creating serving endpoint {name} for {model_name} version {version}")
            api.create(
                name,
                ai_gateway=AiGatewayConfig(inference_table_config=self.inference_table_config()),
                config=EndpointCoreConfigInput(served_entities=[entity], traffic_config=traffic),
            )
            action = "created"
        elif _is_settled(existing) and _served(existing) == (model_name, version):
            _log.info(f"serving endpoint {name} already serves {model_name} version {version}")
            action = "unchanged"
        else:
            if _update_state(existing) == "IN_PROGRESS":
                # Databricks refuses a config change while another one is in progress.
                _log.info(f"serving endpoint {name} is updating; waiting before changing it")
                self._wait(api, name, until_not_updating=True)
            _log.info(f"updating serving endpoint {name} to {model_name} version {version}")
            api.update_config(name, served_entities=[entity], traffic_config=traffic)
            action = "updated"

        endpoint = self._wait(api, name, expect=(model_name, version))
        inference_table = self._ensure_inference_table(api, endpoint)
        self._smoke_test(api, name)
        return Deployment(
            url=self.url(),
            version=version,
            detail={
                "endpoint": name,
                "action": action,
                "served_entity": served_name,
                "config_version": getattr(endpoint.config, "config_version", None),
                "scale_to_zero_enabled": self._scale_to_zero(),
                "workload_size": self.workload_size,
                "inference_table": inference_table,
            },
        )

    def inference_table_config(self):
        """The endpoint's AI Gateway inference table: this env's catalog and schema."""
        from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

        from iris_assets.core.serving_log import inference_table_prefix

        settings = self.settings.get()
        return AiGatewayInferenceTableConfig(
            catalog_name=settings.catalog,
            schema_name=settings.schema,
            table_name_prefix=inference_table_prefix(settings),
            enabled=True,
        )

    def url(self) -> str:
        host = self.host or self._workspace().config.host
        if "://" not in host:
            host = f"https://{host}"
        return f"{host.rstrip('/')}/serving-endpoints/{self._endpoint_name()}/invocations"

    def served_version(self) -> str | None:
        endpoint = _get_or_none(self._workspace().serving_endpoints, self._endpoint_name())
        if endpoint is None or _ready_state(endpoint) != "READY":
            return None
        served = _served(endpoint)
        return served[1] if served else None

    def predict(self, records: list[dict[str, float]]) -> dict[str, Any]:
        from databricks.sdk.errors import DatabricksError

        from iris_assets.serving.client import ServingError

        name = self._endpoint_name()
        try:
            response = self._workspace().serving_endpoints.query(
                name, dataframe_records=list(records)
            )
        except DatabricksError as error:
            raise ServingError(
                f"serving endpoint {name}: {error}", error_code=getattr(error, "error_code", None)
            ) from None
        result: dict[str, Any] = {"predictions": list(response.predictions or [])}
        version = _version_of(response.served_model_name)
        if version is not None:
            result["model_version"] = version
        return result

    def auth_headers(self) -> dict[str, str]:
        """Fresh ``Authorization`` headers for plain HTTP calls to the scoring URL."""
        return dict(self._workspace().config.authenticate())

    # --- internals -----------------------------------------------------------------------------
    def _endpoint_name(self) -> str:
        return self.settings.get().endpoint_name

    def _scale_to_zero(self) -> bool:
        if self.scale_to_zero_enabled is not None:
            return self.scale_to_zero_enabled
        return self.settings.get().env != "prod"

    def _wait(
        self,
        api: Any,
        name: str,
        expect: tuple[str, str] | None = None,
        until_not_updating: bool = False,
    ) -> ServingEndpointDetailed:
        """Poll ``get`` until the endpoint is settled (ready, not updating, serving ``expect``)."""
        deadline = time.monotonic() + self.ready_timeout_seconds
        last = None
        while True:
            endpoint = api.get(name)
            state = _describe(endpoint)
            if state != last:
                _log.info(f"serving endpoint {name}: {state}")
                last = state
            update = _update_state(endpoint)
            if until_not_updating and update != "IN_PROGRESS":
                return endpoint  # whoever changed it is done, successfully or not
            if update in ("UPDATE_FAILED", "UPDATE_CANCELED"):
                raise DatabricksServingError(
                    f"serving endpoint {name} did not take the new config: {state}"
                    f"{_entity_messages(endpoint)}"
                )
            failed = _failed_entities(endpoint)
            if failed and update == "NOT_UPDATING":
                raise DatabricksServingError(
                    f"serving endpoint {name} failed to deploy {', '.join(failed)}: {state}"
                    f"{_entity_messages(endpoint)}"
                )
            if _is_settled(endpoint):
                if expect is not None and _served(endpoint) != expect:
                    model, version = expect
                    raise DatabricksServingError(
                        f"serving endpoint {name} is ready but serves {_served(endpoint)}, "
                        f"not {model} version {version}: {state}{_entity_messages(endpoint)}"
                    )
                return endpoint
            if time.monotonic() >= deadline:
                raise DatabricksServingError(
                    f"serving endpoint {name} was not ready after "
                    f"{self.ready_timeout_seconds:g} s: {state}{_entity_messages(endpoint)}"
                )
            time.sleep(self.poll_interval_seconds)

    def _ensure_inference_table(self, api: Any, endpoint: ServingEndpointDetailed) -> str:
        """Make the endpoint's AI Gateway log into our table; returns the table's name."""
        from dataclasses import replace

        from databricks.sdk.service.serving import AiGatewayConfig

        from iris_assets.core.serving_log import served_table

        table = served_table(self.settings.get())
        wanted = self.inference_table_config()
        gateway = endpoint.ai_gateway or AiGatewayConfig()
        current = gateway.inference_table_config
        if current is None or current.as_dict() != wanted.as_dict():
            name = endpoint.name or self._endpoint_name()
            kept = {
                "fallback_config": gateway.fallback_config,
                "guardrails": gateway.guardrails,
                "rate_limits": gateway.rate_limits,
                "usage_tracking_config": gateway.usage_tracking_config,
            }
            if current is not None and current.enabled:
                # Databricks changes the catalog, schema or prefix only of a disabled table.
                _log.info(f"serving endpoint {name}: disabling its inference table to move it")
                api.put_ai_gateway(
                    name, inference_table_config=replace(current, enabled=False), **kept
                )
            _log.info(f"serving endpoint {name}: AI Gateway inference table -> {table}")
            api.put_ai_gateway(name, inference_table_config=wanted, **kept)
        return table

    def _smoke_test(self, api: Any, name: str) -> None:
        from databricks.sdk.errors import DatabricksError

        from iris_assets.core.schema import FEATURE_COLUMNS

        record = dict(zip(FEATURE_COLUMNS, (5.1, 3.5, 1.4, 0.2), strict=True))
        try:
            response = api.query(name, dataframe_records=[record])
        except DatabricksError as error:
            raise DatabricksServingError(
                f"serving endpoint {name} is ready but one flower failed: {error}"
            ) from None
        if not response.predictions or len(response.predictions) != 1:
            raise DatabricksServingError(
                f"serving endpoint {name} is ready but answered one flower with "
                f"{response.predictions!r}"
            )


def served_entity_name(model_name: str, version: str) -> str:
    """The served entity's name: ``iris_model-3`` (letters, digits, '-' and '_' only)."""
    return f"{model_name.rsplit('.', 1)[-1]}-{version}"


def auth_headers_for_url(url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``Authorization`` headers for a scoring URL on this workspace (for ``iris predict --url``).

    Only a URL on the host of ``DATABRICKS_HOST`` gets a credential, so the token is never sent
    anywhere else. ``DATABRICKS_TOKEN`` is used as it is; without it, with ``DATABRICKS_CLIENT_ID``
    and ``DATABRICKS_CLIENT_SECRET`` an OAuth token is minted through the SDK. ``{}`` otherwise.
    """
    environ = os.environ if environ is None else environ
    host = environ.get("DATABRICKS_HOST", "")
    target = urlsplit(url)
    workspace = urlsplit(host if "://" in host else f"https://{host}")
    if not host or target.scheme != "https" or target.hostname != workspace.hostname:
        return {}
    if environ.get("DATABRICKS_TOKEN"):
        return {"Authorization": f"Bearer {environ['DATABRICKS_TOKEN']}"}
    if environ.get("DATABRICKS_CLIENT_ID") and environ.get("DATABRICKS_CLIENT_SECRET"):
        from databricks.sdk import WorkspaceClient

        client = WorkspaceClient(
            host=host,
            client_id=environ["DATABRICKS_CLIENT_ID"],
            client_secret=environ["DATABRICKS_CLIENT_SECRET"],
            auth_type="oauth-m2m",
        )
        return dict(client.config.authenticate())
    return {}


# --- reading the SDK's endpoint objects ---------------------------------------------------------
def _get_or_none(api: Any, name: str) -> ServingEndpointDetailed | None:
    from databricks.sdk.errors import NotFound

    try:
        return api.get(name)
    except NotFound:
        return None


def _enum_value(value: Any) -> str | None:
    return None if value is None else getattr(value, "value", str(value))


def _ready_state(endpoint: ServingEndpointDetailed) -> str | None:
    return _enum_value(endpoint.state.ready) if endpoint.state else None


def _update_state(endpoint: ServingEndpointDetailed) -> str | None:
    return _enum_value(endpoint.state.config_update) if endpoint.state else None


def _is_settled(endpoint: ServingEndpointDetailed) -> bool:
    return (
        _ready_state(endpoint) == "READY"
        and _update_state(endpoint) == "NOT_UPDATING"
        and endpoint.pending_config is None
    )


def _served(endpoint: ServingEndpointDetailed) -> tuple[str, str] | None:
    """(model, version) of the served entity taking the most traffic in the live config."""
    config = endpoint.config
    if config is None or not config.served_entities:
        return None
    entities = {entity.name: entity for entity in config.served_entities}
    routes = config.traffic_config.routes if config.traffic_config else None
    chosen = config.served_entities[0]
    if routes:
        top = max(routes, key=lambda route: route.traffic_percentage or 0)
        chosen = entities.get(top.served_entity_name, chosen)
    if chosen.entity_name is None or chosen.entity_version is None:
        return None
    return chosen.entity_name, str(chosen.entity_version)


def _describe(endpoint: ServingEndpointDetailed) -> str:
    served = _served(endpoint)
    serving = f"{served[0]} version {served[1]}" if served else "nothing yet"
    pending = " (a new config is pending)" if endpoint.pending_config is not None else ""
    return (
        f"ready={_ready_state(endpoint)} config_update={_update_state(endpoint)}, "
        f"serves {serving}{pending}"
    )


def _entity_messages(endpoint: ServingEndpointDetailed) -> str:
    """The served entities' own deployment messages (why a container did not start)."""
    messages = []
    for config in (endpoint.pending_config, endpoint.config):
        for entity in (config.served_entities or []) if config else []:
            state = entity.state
            if state is not None and state.deployment_state_message:
                deployment = _enum_value(state.deployment)
                messages.append(f"{entity.name}: {deployment}: {state.deployment_state_message}")
    return ("; " + "; ".join(messages)) if messages else ""


def _failed_entities(endpoint: ServingEndpointDetailed) -> list[str]:
    entities = endpoint.config.served_entities if endpoint.config else None
    return [
        entity.name or "?"
        for entity in entities or []
        if entity.state is not None
        and _enum_value(entity.state.deployment) in ("DEPLOYMENT_FAILED", "DEPLOYMENT_ABORTED")
    ]


def _version_of(served_model_name: str | None) -> str | None:
    if not served_model_name or "-" not in served_model_name:
        return None
    version = served_model_name.rsplit("-", 1)[1]
    return version if version.isdigit() else None
