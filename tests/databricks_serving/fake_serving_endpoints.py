"""A fake of databricks-sdk's ``ServingEndpointsAPI``: the four methods the backend calls.

The methods have the SDK's own signatures (a test compares them with ``inspect``), take and return
the SDK's real dataclasses from ``databricks.sdk.service.serving``, and record each request body
through the dataclasses' ``as_dict()``, exactly what the SDK would send. So a wrong field name
fails here as it would against Databricks.

It behaves like Model Serving in the ways the backend depends on:
- ``create`` on an existing name -> ``ResourceAlreadyExists``; ``get`` of a missing one ->
  ``ResourceDoesNotExist``; ``update_config`` during an update in progress -> ``ResourceConflict``.
- a new endpoint is NOT_READY / IN_PROGRESS, with the config under ``pending_config`` and no live
  ``config``, for ``polls_until_ready`` ``get`` calls, then READY / NOT_UPDATING.
- an update keeps the old config live and READY while the new one is pending (IN_PROGRESS), then
  swaps it in. ``fail_updates`` makes the update end UPDATE_FAILED with the old config kept.
- ``query`` answers ``predict(record)`` (class 0 by default) for each record from the live served
  entity, and refuses when the endpoint is not ready.
- the AI Gateway: ``create(ai_gateway=...)`` and ``put_ai_gateway`` set it, ``get`` returns it.
  ``put_ai_gateway`` runs the SDK's own ``ServingEndpointsAPI.put_ai_gateway`` against a fake REST
  client (``_GatewayRest``), so the path, the JSON body and the parsing of the answer are the
  SDK's. As Databricks documents: enabling an inference table needs ``catalog_name`` and
  ``schema_name``; its catalog, schema or prefix change only while it is disabled; and the legacy
  ``auto_capture_config`` is refused on new and existing endpoints (since February 20, 2026).
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from typing import Any

from databricks.sdk.errors import (
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
)
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayGuardrails,
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayUsageTrackingConfig,
    AutoCaptureConfigInput,
    ChatMessage,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    EndpointCoreConfigOutput,
    EndpointPendingConfig,
    EndpointState,
    EndpointStateConfigUpdate,
    EndpointStateReady,
    EndpointTag,
    FallbackConfig,
    PutAiGatewayResponse,
    QueryEndpointResponse,
    RateLimit,
    ServedEntityInput,
    ServedEntityOutput,
    ServedModelInput,
    ServedModelState,
    ServedModelStateDeployment,
    ServingEndpointDetailed,
    ServingEndpointsAPI,
    TrafficConfig,
)

NEVER = None
LEGACY_INFERENCE_TABLES = (
    "Legacy inference tables (auto_capture_config) can no longer be enabled on serving "
    "endpoints. Use AI Gateway inference tables (ai_gateway.inference_table_config) instead."
)


class FakeServingEndpoints:
    """In-memory Model Serving. ``polls_until_ready=NEVER`` keeps a change pending forever."""

    def __init__(
        self,
        polls_until_ready: int | None = 2,
        fail_updates: bool = False,
        predict: Callable[[dict[str, Any]], Any] = lambda record: 0,
    ):
        self.polls_until_ready = polls_until_ready
        self.fail_updates = fail_updates
        self.predict = predict
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (method, name, body)
        self.get_calls = 0
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._config_versions = itertools.count(1)

    # --- the SDK's methods ---------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        ai_gateway: AiGatewayConfig | None = None,
        budget_policy_id: str | None = None,
        config: EndpointCoreConfigInput | None = None,
        description: str | None = None,
        rate_limits: list[RateLimit] | None = None,
        route_optimized: bool | None = None,
        tags: list[EndpointTag] | None = None,
    ):
        body = {"name": name, "config": config.as_dict() if config else None}
        if ai_gateway is not None:
            body["ai_gateway"] = ai_gateway.as_dict()
        self.requests.append(("create", name, body))
        if config is not None and config.auto_capture_config is not None:
            raise InvalidParameterValue(LEGACY_INFERENCE_TABLES)
        if name in self._endpoints:
            raise ResourceAlreadyExists(f"Endpoint with name '{name}' already exists.")
        gateway = AiGatewayConfig.from_dict(ai_gateway.as_dict()) if ai_gateway else None
        if gateway is not None:
            _check_inference_table(gateway.inference_table_config, None)
        self._endpoints[name] = {
            "live": None,
            "pending": config,
            "pending_version": next(self._config_versions),
            "countdown": self._countdown(),
            "ai_gateway": gateway,
        }
        return _Submitted(name)

    def update_config(
        self,
        name: str,
        *,
        auto_capture_config: AutoCaptureConfigInput | None = None,
        served_entities: list[ServedEntityInput] | None = None,
        served_models: list[ServedModelInput] | None = None,
        traffic_config: TrafficConfig | None = None,
    ):
        body = EndpointCoreConfigInput(
            served_entities=served_entities, traffic_config=traffic_config
        ).as_dict()
        if auto_capture_config is not None:
            body["auto_capture_config"] = auto_capture_config.as_dict()
        self.requests.append(("update_config", name, body))
        if auto_capture_config is not None:
            raise InvalidParameterValue(LEGACY_INFERENCE_TABLES)
        endpoint = self._existing(name)
        if endpoint["pending"] is not None:
            raise ResourceConflict(f"Endpoint {name} is currently updating.")
        endpoint["pending"] = EndpointCoreConfigInput(
            served_entities=served_entities, traffic_config=traffic_config
        )
        endpoint["pending_version"] = next(self._config_versions)
        endpoint["countdown"] = self._countdown()
        endpoint["failed"] = False
        return _Submitted(name)

    def put_ai_gateway(
        self,
        name: str,
        *,
        fallback_config: FallbackConfig | None = None,
        guardrails: AiGatewayGuardrails | None = None,
        inference_table_config: AiGatewayInferenceTableConfig | None = None,
        rate_limits: list[AiGatewayRateLimit] | None = None,
        usage_tracking_config: AiGatewayUsageTrackingConfig | None = None,
    ) -> PutAiGatewayResponse:
        return ServingEndpointsAPI(_GatewayRest(self)).put_ai_gateway(
            name,
            fallback_config=fallback_config,
            guardrails=guardrails,
            inference_table_config=inference_table_config,
            rate_limits=rate_limits,
            usage_tracking_config=usage_tracking_config,
        )

    def _put_ai_gateway(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT /api/2.0/serving-endpoints/{name}/ai-gateway``: the whole gateway, replaced."""
        self.requests.append(("put_ai_gateway", name, body))
        endpoint = self._existing(name)
        gateway = AiGatewayConfig.from_dict(body)
        current = endpoint["ai_gateway"].inference_table_config if endpoint["ai_gateway"] else None
        _check_inference_table(gateway.inference_table_config, current)
        endpoint["ai_gateway"] = gateway
        return gateway.as_dict()

    def get(self, name: str) -> ServingEndpointDetailed:
        self.get_calls += 1
        endpoint = self._existing(name)
        if endpoint["pending"] is not None and endpoint["countdown"] is not None:
            if endpoint["countdown"] <= 0:
                if self.fail_updates and endpoint["live"] is not None:
                    endpoint["failed"] = True
                else:
                    endpoint["live"] = (endpoint["pending"], endpoint["pending_version"])
                endpoint["pending"] = None
            else:
                endpoint["countdown"] -= 1
        return self._detailed(name, endpoint)

    def query(
        self,
        name: str,
        *,
        dataframe_records: list[Any] | None = None,
        dataframe_split: DataframeSplitInput | None = None,
        extra_params: dict[str, str] | None = None,
        input: Any | None = None,
        inputs: Any | None = None,
        instances: list[Any] | None = None,
        max_tokens: int | None = None,
        messages: list[ChatMessage] | None = None,
        n: int | None = None,
        prompt: Any | None = None,
        stop: list[str] | None = None,
        stream: bool | None = None,
        temperature: float | None = None,
    ) -> QueryEndpointResponse:
        self.requests.append(("query", name, {"dataframe_records": list(dataframe_records)}))
        endpoint = self._existing(name)
        if endpoint["live"] is None:
            raise ResourceConflict(f"Endpoint {name} is not ready.")
        config, _ = endpoint["live"]
        return QueryEndpointResponse.from_dict(
            {
                "predictions": [self.predict(record) for record in dataframe_records],
                "served-model-name": config.served_entities[0].name,
            }
        )

    # --- helpers for tests ---------------------------------------------------------------------
    def calls(self, method: str) -> list[dict[str, Any]]:
        return [body for called, _, body in self.requests if called == method]

    def start_update_in_progress(self, name: str, config: EndpointCoreConfigInput) -> None:
        """Put an endpoint in the middle of someone else's config change."""
        endpoint = self._existing(name)
        endpoint["pending"] = config
        endpoint["pending_version"] = next(self._config_versions)
        endpoint["countdown"] = self._countdown()

    def _countdown(self) -> int | None:
        return self.polls_until_ready

    def _existing(self, name: str) -> dict[str, Any]:
        if name not in self._endpoints:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return self._endpoints[name]

    def _detailed(self, name: str, endpoint: dict[str, Any]) -> ServingEndpointDetailed:
        live, pending = endpoint["live"], endpoint["pending"]
        ready = EndpointStateReady.READY if live is not None else EndpointStateReady.NOT_READY
        if pending is not None:
            update = EndpointStateConfigUpdate.IN_PROGRESS
        elif endpoint.get("failed"):
            update = EndpointStateConfigUpdate.UPDATE_FAILED
        else:
            update = EndpointStateConfigUpdate.NOT_UPDATING
        return ServingEndpointDetailed(
            name=name,
            ai_gateway=endpoint["ai_gateway"],
            state=EndpointState(ready=ready, config_update=update),
            config=_output(*live) if live is not None else None,
            pending_config=(
                EndpointPendingConfig(
                    config_version=endpoint["pending_version"],
                    served_entities=_entities(pending, ServedModelStateDeployment.CREATING),
                    traffic_config=pending.traffic_config,
                    start_time=int(datetime.datetime.now().timestamp() * 1000),
                )
                if pending is not None
                else None
            ),
        )


class _GatewayRest:
    """The REST side of the AI Gateway route, under the SDK's ``ApiClient.do`` signature."""

    def __init__(self, fake: FakeServingEndpoints):
        self.fake = fake

    def do(self, method: str, url: str, query=None, headers=None, body=None, **kwargs):
        prefix, suffix = "/api/2.0/serving-endpoints/", "/ai-gateway"
        if method != "PUT" or not (url.startswith(prefix) and url.endswith(suffix)):
            raise AssertionError(f"the fake does not serve {method} {url}")
        return self.fake._put_ai_gateway(url[len(prefix) : -len(suffix)], body or {})


def _check_inference_table(
    wanted: AiGatewayInferenceTableConfig | None, current: AiGatewayInferenceTableConfig | None
) -> None:
    if wanted is None or not wanted.enabled:
        return
    if not wanted.catalog_name or not wanted.schema_name:
        raise InvalidParameterValue(
            "catalog_name and schema_name are required when enabling inference tables."
        )
    if current is not None and current.enabled:
        moved = [
            field
            for field in ("catalog_name", "schema_name", "table_name_prefix")
            if getattr(current, field) != getattr(wanted, field)
        ]
        if moved:
            raise InvalidParameterValue(
                f"Cannot change {', '.join(moved)} of an enabled inference table; disable the "
                "inference table first."
            )


class _Submitted:
    """Stands in for the SDK's ``Wait``; the backend polls ``get`` itself and ignores it."""

    def __init__(self, name: str):
        self.name = name

    def result(self, *args, **kwargs):
        raise AssertionError("the backend must poll get() with its own timeout, not Wait.result()")


def _entities(
    config: EndpointCoreConfigInput, deployment: ServedModelStateDeployment
) -> list[ServedEntityOutput]:
    return [
        ServedEntityOutput(
            name=entity.name,
            entity_name=entity.entity_name,
            entity_version=entity.entity_version,
            workload_size=entity.workload_size,
            scale_to_zero_enabled=entity.scale_to_zero_enabled,
            state=ServedModelState(deployment=deployment),
        )
        for entity in config.served_entities or []
    ]


def _output(config: EndpointCoreConfigInput, version: int) -> EndpointCoreConfigOutput:
    return EndpointCoreConfigOutput(
        config_version=version,
        served_entities=_entities(config, ServedModelStateDeployment.READY),
        traffic_config=config.traffic_config,
    )
