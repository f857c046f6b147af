"""Notifications: a short JSON message to a webhook, and a local record of every attempt.

The webhook URL comes from the environment only (``IRIS_NOTIFY_URL``, read through Dagster's
``EnvVar`` by the sensor) and is never written anywhere: not in the message body, not in the log
line, not in the outbox. A webhook URL is often the secret itself (Slack, Teams), so a failure is
described by its exception class only, never its text (which quotes the URL). Delivery never
raises and never outlasts its deadline (``TIMEOUT_SECONDS`` for the whole request): a dead or
stalling webhook is recorded as ``failed``, in the outbox (``<env home>/notifications.jsonl``,
what ``iris status`` shows) and in the caller's log, and the pipeline carries on.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.parse
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
    outbox_error: str | None = None  # the outbox could not be written (exception class)


def outbox_path(env_home: Path) -> Path:
    return env_home / OUTBOX


def _describe(error: BaseException) -> str:
    """What went wrong, by exception class only: the texts of ``InvalidURL``, ``URLError`` and
    friends quote the URL (path tokens, query strings, userinfo), so no message text is kept."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return f"{type(error).__name__} ({type(reason).__name__})"
    return type(error).__name__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Answers a redirect with its HTTPError: urllib follows 301/302/303 as a GET without the
    body, so a webhook that moved would count as delivered while the message went nowhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(request: urllib.request.Request, timeout: float, outcome: list[Delivery]) -> None:
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            outcome.append(Delivery("delivered", f"HTTP {answer.status}"))
    except TimeoutError:  # a socket operation overran: the same outcome as the whole deadline
        outcome.append(Delivery("failed", f"timed out: no answer within {timeout:g} s"))
    except Exception as error:  # a webhook must never fail the pipeline
        if isinstance(getattr(error, "reason", None), TimeoutError):
            outcome.append(Delivery("failed", f"timed out: no answer within {timeout:g} s"))
        else:
            outcome.append(Delivery("failed", _describe(error)))


def post_json(url: str, message: dict[str, Any], timeout: float | None = None) -> Delivery:
    """POST ``message`` as JSON to ``url`` within ``timeout`` seconds in all; a Delivery, never
    an exception.

    urllib's timeout bounds each socket operation, not the request: a server that trickles a
    header line every few seconds would hold it forever. So the request runs in a daemon
    thread joined with the whole deadline; one that overruns is abandoned (the thread dies on
    its socket timeout or with the process) and reported as timed out.
    """
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    outcome: list[Delivery] = []
    try:
        # urllib also opens file:, data: and ftp: URLs and answers them without a status: a
        # mistyped variable would read as delivered while nobody was told.
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            shown = f"its scheme is {scheme}:" if scheme else "it has no scheme"
            return Delivery(
                "failed", f"{NOTIFY_URL_ENV} must be an http:// or https:// URL; {shown}"
            )
        body = json.dumps(message, sort_keys=True).encode()
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
    except Exception as error:  # an unparseable URL: its text is the URL
        return Delivery("failed", _describe(error))
    worker = threading.Thread(
        target=_post, args=(request, timeout, outcome), name="webhook-post", daemon=True
    )
    worker.start()
    worker.join(timeout)
    if not outcome:
        return Delivery("failed", f"timed out: no answer within {timeout:g} s")
    return outcome[0]


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
        "detail": delivery.detail,
        "message": message,
    }
    # The post has gone out: a full disk or a read-only home must not raise here, or the
    # sensor's tick is thrown away with its cursor and the message is posted again every tick.
    try:
        env_home.mkdir(parents=True, exist_ok=True)
        with open(outbox_path(env_home), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as error:
        return dataclasses.replace(delivery, outbox_error=type(error).__name__)
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


def retrain_failed_message(
    *,
    model: str,
    version: str,
    verdict: str,
    reason: str,
    links: dict[str, str],
    run_url: str | None,
) -> dict[str, Any]:
    return {
        "event": "retrained_challenger_failed_evaluation",
        "text": f"{model} v{version}, retrained automatically ({reason}), failed evaluation "
        f"({verdict}): it cannot be approved and blocks nothing; the champion keeps serving and "
        "the next evidence trains again (see the evaluation report; `iris reject "
        f"{version} --by NAME --reason ...` to record a decision)",
        "model": model,
        "version": version,
        "verdict": verdict,
        "retrain_reason": reason,
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
