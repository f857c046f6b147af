"""A stdlib-only client for MLflow scoring servers: this project's local server or any other.

Owns the wire side used by the CLI, the serving asset and its check: ``predict``, ``health``,
``version`` and the local server's ``swap_model`` admin call. Every ``url`` may be the server's
base URL or its scoring URL ending in ``/invocations``. Plain ``urllib`` so that importing it
costs nothing; loopback URLs bypass any configured HTTP proxy.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MODEL_VERSION_HEADER = "X-Model-Version"
ADMIN_TOKEN_HEADER = "X-Iris-Admin-Token"

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


class ServingError(RuntimeError):
    """The server refused a request (``status`` set) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None):
        super().__init__(f"HTTP {status}: {message}" if status is not None else message)
        self.message = message
        self.status = status
        self.error_code = error_code


def predict(
    url: str,
    payload: Mapping[str, Any] | list[Mapping[str, Any]],
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Score ``payload`` at ``{url}/invocations`` (``url`` may already end in ``/invocations``).

    A list of dicts is sent as ``dataframe_records``; a dict holding one of the protocol keys is
    sent as it is; any other dict is one record. Returns the server's JSON (``predictions``) plus
    ``model_version`` when the server says which version answered.
    """
    if isinstance(payload, list):
        document: Mapping[str, Any] = {"dataframe_records": payload}
    elif isinstance(payload, Mapping) and any(key in payload for key in INPUT_KEYS):
        document = payload
    elif isinstance(payload, Mapping):
        document = {"dataframe_records": [payload]}
    else:
        raise TypeError("payload must be a dict or a list of dicts")
    status, body, response_headers = _call(
        "POST",
        _endpoint(url, "/invocations"),
        json.dumps(document).encode(),
        {"Content-Type": "application/json", **(headers or {})},
        timeout,
    )
    result = _json_object(body)
    if result is None or "predictions" not in result:
        raise ServingError(f"{url} answered without predictions", status=status)
    served = response_headers.get(MODEL_VERSION_HEADER)
    if served is not None:
        result.setdefault("model_version", served)
    return result


def health(
    url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The server's health document if it answers 200 (a model is loaded), else None."""
    try:
        _, body, _ = _call("GET", _endpoint(url, "/health"), None, dict(headers or {}), timeout)
    except ServingError:
        return None
    # mlflow's own server answers a bare newline.
    return _json_object(body) or {"status": "ok"}


def version(
    url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The server's ``/version`` document, or None if it does not answer."""
    try:
        _, body, _ = _call("GET", _endpoint(url, "/version"), None, dict(headers or {}), timeout)
    except ServingError:
        return None
    # mlflow's own server answers its version as plain text.
    return _json_object(body) or {"server_version": body.decode("utf-8", "replace").strip()}


def swap_model(url: str, model_version: str, token: str, timeout: float = 120.0) -> dict[str, Any]:
    """Ask this project's local server to load ``model_version`` and switch to it."""
    _, body, _ = _call(
        "POST",
        _endpoint(url, "/admin/model"),
        json.dumps({"version": str(model_version)}).encode(),
        {"Content-Type": "application/json", ADMIN_TOKEN_HEADER: token},
        timeout,
    )
    return _json_object(body) or {}


def _endpoint(url: str, path: str) -> str:
    # Accept the server's base URL or its scoring URL (Databricks hands out ``.../invocations``).
    base = url.rstrip("/")
    base = base.removesuffix("/invocations")
    return base + path


def _call(
    method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float
) -> tuple[int, bytes, Mapping[str, str]]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = _DIRECT if _is_loopback(url) else _DEFAULT
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        body = exc.read()
        document = _json_object(body) or {}
        message = document.get("message") or body.decode("utf-8", "replace").strip()[:300]
        raise ServingError(
            message or str(exc.reason),
            status=exc.code,
            error_code=document.get("error_code"),
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServingError(f"cannot reach {url}: {reason}") from None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
