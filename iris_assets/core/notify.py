"""Notifications: a short JSON message to a webhook, and a local record of every attempt.

The webhook URL comes from the environment only (``IRIS_NOTIFY_URL``, read through Dagster's
``EnvVar`` by the sensor) and is never written anywhere: not in the message body, not in the log
line, not in the outbox. A webhook URL is often the secret itself (Slack, Teams), so error texts
are scrubbed of it too. Delivery never raises: a dead webhook is recorded as ``failed`` with its
error, in the outbox (``<env home>/notifications.jsonl``, what ``iris status`` shows) and in the
caller's log, and the pipeline carries on.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NOTIFY_URL_ENV = "IRIS_NOTIFY_URL"
TIMEOUT_SECONDS = 5.0
OUTBOX = "notifications.jsonl"


@dataclass(frozen=True)
class Delivery:
    status: str  # "delivered", "failed" or "not configured"
    detail: str


def outbox_path(env_home: Path) -> Path:
    return env_home / OUTBOX


def post_json(url: str, message: dict[str, Any], timeout: float = TIMEOUT_SECONDS) -> Delivery:
    """POST ``message`` as JSON to ``url``; a Delivery, never an exception."""
    body = json.dumps(message, sort_keys=True).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Delivery("delivered", f"HTTP {answer.status}")
    except urllib.error.HTTPError as error:
        return Delivery("failed", f"HTTP {error.code} {error.reason}")
    except Exception as error:  # a webhook must never fail the pipeline
        reason = getattr(error, "reason", error)
        return Delivery("failed", f"{type(error).__name__}: {reason}".replace(url, "<webhook>"))


def notify(message: dict[str, Any], url: str | None, env_home: Path) -> Delivery:
    """Send ``message`` to ``url`` (when configured) and append the attempt to the outbox."""
    delivery = (
        post_json(url, message)
        if url
        else Delivery(
            "not configured", f"{NOTIFY_URL_ENV} is not set: written to the Dagster log and outbox"
        )
    )
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "delivery": delivery.status,
        "detail": delivery.detail.replace(url, "<webhook>") if url else delivery.detail,
        "message": message,
    }
    env_home.mkdir(parents=True, exist_ok=True)
    with open(outbox_path(env_home), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    return delivery


def recent(env_home: Path, limit: int = 5) -> list[dict[str, Any]]:
    """The last ``limit`` attempts, newest last; unreadable lines are skipped, not fatal."""
    path = outbox_path(env_home)
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines()[-limit:]:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def approval_message(
    *, model: str, version: str, verdict: str, links: dict[str, str], run_url: str | None
) -> dict[str, Any]:
    return {
        "event": "challenger_waiting_for_approval",
        "text": f"{model} v{version} passed evaluation and waits for a person's approval: "
        f"`iris approve {version} --by NAME` (or `iris reject {version} --by NAME --reason ...`)",
        "model": model,
        "version": version,
        "verdict": verdict,
        "approve": f"iris approve {version} --by NAME",
        "links": {**links, **({"dagster_run": run_url} if run_url else {})},
    }


def check_failed_message(
    *, check: str, asset: str, partition: str | None, summary: str, links: dict[str, str]
) -> dict[str, Any]:
    where = f"{asset}[{partition}]" if partition else asset
    return {
        "event": "monitoring_check_failed",
        "text": f"{check} failed on {where}: {summary}",
        "check": check,
        "asset": asset,
        "partition": partition,
        "summary": summary,
        "links": links,
    }
