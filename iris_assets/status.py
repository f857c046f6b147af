"""Status: one read-only snapshot of an environment (tables, registry, endpoint) for people.

Read-only means it: a home with no registry yet is reported as such, never created (opening an
MLflow client on a missing sqlite file would create and migrate it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iris_assets.settings import Settings


def collect_status(settings: Settings) -> dict[str, Any]:
    from iris_assets.core.registry import ModelRegistry
    from iris_assets.serving.client import health, version
    from iris_assets.steps.stores import table_store

    store = table_store(settings)
    has_registry = settings.mlflow_db.exists()
    models = champion = challenger = None
    if has_registry:
        models = ModelRegistry(settings)
        champion, challenger = models.champion(), models.challenger()
    served = version(settings.serving_url)
    other = served is not None and not serves_this_home(settings, served)
    if other:  # another home's server (or not ours at all) on this port says nothing about ours
        served = None
    served_health = health(settings.serving_url) if served is not None else None
    served_version = str(served["version"]) if served and "version" in served else None
    inference_rows, partitions = 0, []
    if store.exists(settings.inference_table):
        inference_rows = store.count(settings.inference_table)
        partitions = store.distinct(settings.inference_table, "observed_date")
    return {
        "env": settings.env,
        "target": settings.target,
        "home": str(settings.env_home),
        "feature_table": {
            "name": settings.feature_table,
            "rows": store.count(settings.feature_table)
            if store.exists(settings.feature_table)
            else 0,
        },
        "model": {
            "name": settings.model_name,
            "registry": str(settings.mlflow_db) if has_registry else None,
            "champion": champion.version if champion else None,
            "challenger": challenger.version if challenger else None,
            "challenger_approval": challenger.approval if challenger else None,
            "challenger_evaluation": challenger.evaluation if challenger else None,
            "champion_rejected": champion_rejection(champion),
            "promotion": promotion_state(settings, store, models, challenger, champion),
        },
        "serving": {
            "url": settings.serving_url + "/invocations",
            "version": served_version,
            "healthy": served_health is not None,
            "health": (served_health or {}).get("status"),
            "request_log": request_log_summary(served_health),
            "other_server": other,
            "matches_champion": champion is not None and served_version == champion.version,
        },
        "inference_table": {
            "name": settings.inference_table,
            "rows": inference_rows,
            "partitions": partitions,
        },
        "monitoring": monitoring_state(settings, store, models),
    }


def monitoring_state(settings: Settings, store, models) -> dict[str, Any]:
    """Live accuracy of the latest labelled day, label and request-log counts, why the last
    automatic retraining ran, and the latest notifications (what the webhook was sent)."""
    from iris_assets.core.notify import recent

    live_accuracy = live_day = None
    if store.exists(settings.performance_table):
        rows = store.read(
            settings.performance_table, ["observed_date", "labelled_rows", "accuracy"]
        )
        rows = rows[rows["labelled_rows"] > 0]
        if not rows.empty:
            live_day = max(rows["observed_date"])
            day = rows[rows["observed_date"] == live_day]
            correct = (day["accuracy"] * day["labelled_rows"]).sum()
            live_accuracy = round(float(correct / day["labelled_rows"].sum()), 4)
    reason = None
    if models is not None:
        from iris_assets.core.registry import RETRAIN_REASON_TAG

        retrained = [v for v in models.versions() if RETRAIN_REASON_TAG in v.tags]
        if retrained:
            latest = max(retrained, key=lambda v: int(v.version))
            reason = f"v{latest.version}: {latest.tags[RETRAIN_REASON_TAG]}"

    def rows_of(table: str) -> int:
        return store.count(table) if store.exists(table) else 0

    return {
        "live_accuracy": live_accuracy,
        "live_accuracy_day": live_day,
        "labelled_rows": rows_of(settings.labels_table),
        "serving_log_rows": rows_of(settings.serving_log_table),
        "last_retrain_reason": reason,
        "notifications": recent(settings.env_home, limit=3),
    }


def champion_rejection(champion) -> str | None:
    """What to do about a champion that was rejected after promotion; None when it was not."""
    from iris_assets.core.registry import REJECTED, REJECTION_REASON_TAG

    if champion is None or champion.approval != REJECTED:
        return None
    return f"REJECTED ({champion.tags.get(REJECTION_REASON_TAG, 'no reason given')})"


def promotion_state(settings: Settings, store, models, challenger, champion) -> str:
    """What stands between the challenger and the champion alias (the gate, read-only)."""
    from iris_assets.core.gate import decide
    from iris_assets.core.tables import current_version
    from iris_assets.settings import separate_duties

    if challenger is None:
        return "no challenger"
    if champion is not None and champion.version == challenger.version:
        return "the challenger is champion"
    decision = decide(
        models,
        challenger,
        champion,
        current_version(store, settings.feature_table),
        separate_duties(settings),
    )
    if decision.may_promote:
        return f"version {challenger.version} may be promoted: champion_approval_sensor will"
    return decision.reason


def request_log_summary(health_document: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the running server's /health says of its request log (None: no server, no log)."""
    log = (health_document or {}).get("request_log")
    if not isinstance(log, dict) or not log.get("enabled"):
        return None
    keys = ("writer_running", "recorded", "committed", "dropped", "lost", "writer_restarts")
    return {key: log.get(key) for key in keys}


def request_log_line(summary: dict[str, Any]) -> str:
    state = "writing" if summary["writer_running"] else "DOWN (requests are not being logged)"
    return (
        f"request log    {state}: {summary['committed']} committed, {summary['dropped']} "
        f"dropped, {summary['lost']} lost, writer restarted {summary['writer_restarts']} times"
    )


def serves_this_home(settings: Settings, served: dict[str, Any]) -> bool:
    """True when the process answering on the serving port was started for this home.

    Both ways of starting it (``ServingProcess`` and ``iris serve``) give the server this home's
    ``--state-dir``; its ``/version`` says its pid, whose command line (Linux) or ``server.json``
    (recorded by ``ServingProcess``) must agree.
    """
    from iris_assets.serving.process import STATE_FILE

    pid = served.get("pid")
    if not isinstance(pid, int):
        return False  # not this project's server (mlflow's own answers plain text)
    try:
        recorded = json.loads((settings.serving_dir / STATE_FILE).read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded == pid:
        return True
    try:
        arguments = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = settings.serving_dir.resolve()
    return any(
        flag == b"--state-dir" and Path(value.decode(errors="replace")).resolve() == wanted
        for flag, value in zip(arguments, arguments[1:], strict=False)
    )


def status_lines(status: dict[str, Any]) -> list[str]:
    model, serving, inference = status["model"], status["serving"], status["inference_table"]
    served = f"v{serving['version']}" if serving["version"] else "not running"
    if serving.get("other_server"):
        port = serving["url"].rsplit(":", 1)[1].split("/", 1)[0]
        served = (
            f"not running; another server answers on port {port} (another IRIS_HOME's, or "
            "not iris): stop it, or set IRIS_SERVING_PORT"
        )
    if model["champion"] and not serving["matches_champion"]:
        served += (
            f"  MISMATCH: the champion is v{model['champion']} (champion_approval_sensor "
            "re-points it; or materialize serving_endpoint)"
        )
    champion = model["champion"] or "-"
    if model.get("champion_rejected"):
        champion += (
            f" {model['champion_rejected']}: champion_approval_sensor rolls back to the previous "
            "champion; with none, approve a new challenger (`iris approve N --by NAME`)"
        )
    if model["challenger"]:
        challenger = (
            f"challenger {model['challenger']} "
            f"(approval {model['challenger_approval'] or 'pending'}, "
            f"evaluation {model['challenger_evaluation'] or 'pending'})"
        )
    else:
        challenger = "no challenger"
    lines = [
        f"env {status['env']} ({status['target']}) at {status['home']}",
        f"feature table  {status['feature_table']['name']}: {status['feature_table']['rows']} rows",
        f"model          {model['name']}: champion {champion}, {challenger}",
        f"promotion      {model['promotion']}",
        f"serving        {serving['url']}: {served}",
        *([request_log_line(serving["request_log"])] if serving.get("request_log") else []),
        f"inference      {inference['name']}: {inference['rows']} rows in "
        f"{len(inference['partitions'])} partitions",
    ]
    monitoring = status["monitoring"]
    accuracy = (
        f"live accuracy {monitoring['live_accuracy']:.3f} on {monitoring['live_accuracy_day']}"
        if monitoring["live_accuracy"] is not None
        else "no live accuracy yet (no labels: `iris simulate --labels` or `iris label`)"
    )
    lines.append(
        f"monitoring     {accuracy}; {monitoring['labelled_rows']} labelled rows, "
        f"{monitoring['serving_log_rows']} logged requests"
    )
    if monitoring["last_retrain_reason"]:
        lines.append(f"retraining     last: {monitoring['last_retrain_reason']}")
    for note in monitoring["notifications"]:
        lines.append(f"notified       {note['at']} ({note['delivery']}): {note['message']['text']}")
    if model["registry"] is None and not status["feature_table"]["rows"]:
        lines.append(
            "nothing here yet: `iris demo` (or `make demo`) runs the whole lifecycle; "
            "`iris dev` opens the Dagster UI to materialize the assets yourself"
        )
    return lines
