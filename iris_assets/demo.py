"""The demo: the whole local lifecycle through the real Dagster graph, narrated.

It plays the human approver openly (tag ``approval=approved`` as user ``demo``); the promotion
itself goes through ``champion_approval_sensor``'s decision, exactly as under ``dagster dev``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from iris_assets.settings import Settings

DEMO_APPROVER = "demo"


class DemoError(RuntimeError):
    """A lifecycle stage failed; the message names the stage and what went wrong."""


# The demo narrates each stage itself; Dagster's event log stays in the UI (`make dev`).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance `dagster dev` uses for this env, so demo runs show up in the UI."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return dg.DagsterInstance.get()


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    run_config: dict | None = None,
    **kwargs: Any,
):
    result = defs.resolve_job_def(name).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={**(run_config or {}), **QUIET_RUN_CONFIG},
        **kwargs,
    )
    if not result.success:
        failures = [
            event.event_specific_data.error.message.strip()
            for event in result.all_events
            if event.is_step_failure and event.event_specific_data.error
        ]
        raise DemoError(f"{name} failed (run {result.run_id}): " + " | ".join(failures))
    return result


def run_demo(settings: Settings, rows: int = 200, say: Callable[[str], None] = print) -> dict:
    from iris_assets.assets.promotion_sensor import champion_approval_sensor
    from iris_assets.core.landing import LandingArea, simulate_flowers
    from iris_assets.core.registry import ModelRegistry
    from iris_assets.core.schema import FEATURE_COLUMNS
    from iris_assets.definitions import build_definitions
    from iris_assets.serving.client import predict
    from iris_assets.status import collect_status

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    defs = build_definitions(settings)
    instance = dagster_instance(settings)
    day = datetime.now(UTC).date().isoformat()

    say(f"1/6 collecting flowers: {rows} unlabelled flowers observed on {day} -> new_flowers")
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(rows, day), day)

    say("2/6 training: iris_features -> challenger_model -> evaluation_report")
    run_job(defs, instance, "training_job")
    models = ModelRegistry(settings)
    challenger = models.challenger()
    say(
        f"    challenger is version {challenger.version}: "
        f"evaluation {challenger.tags.get('evaluation_reason')}"
    )

    say(
        f"3/6 approval: the demo approves version {challenger.version} as user "
        f"'{DEMO_APPROVER}' (a person would: `iris approve {challenger.version} --by NAME`)"
    )
    models.approve(challenger.version, by=DEMO_APPROVER)

    say("4/6 promotion: champion_approval_sensor decides; its run promotes and serves")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        decision = champion_approval_sensor(context)
    if isinstance(decision, dg.RunRequest):
        run_job(defs, instance, "promotion_job", run_config=decision.run_config, tags=decision.tags)
    else:
        say(f"    sensor skipped: {decision.skip_message}")

    say(f"5/6 batch inference: inference_table partition {day}")
    run_job(defs, instance, "inference_job", partition_key=day)

    say(f"6/6 monitoring: labels arrive for {day}'s flowers -> model_performance")
    land_demo_labels(settings, day)
    performance = run_job(defs, instance, "performance_job", partition_key=day)

    status = collect_status(settings)
    status["metrics"] = {
        v.version: {k[len("test_") :]: v.tags[k] for k in ("test_accuracy", "test_f1_macro")}
        for v in filter(None, (models.challenger(), models.champion()))
    }
    status["partition"] = {"date": day, "rows": partition_rows(settings, day)}
    status["performance"] = performance_summary(performance)
    example = dict(zip(FEATURE_COLUMNS, (6.1, 2.8, 4.7, 1.2), strict=True))
    status["live_prediction"] = {
        "input": example,
        "output": predict(status["serving"]["url"], [example]),
    }
    return status


def land_demo_labels(settings: Settings, day: str) -> None:
    """Collectors learn the species of half of the day's scored flowers (``iris simulate
    --labels`` does the same), in one new batch each time the demo runs."""
    from iris_assets.core.labels import labelled_ids, simulate_labels
    from iris_assets.core.landing import LandingArea
    from iris_assets.core.schema import FEATURE_COLUMNS, PRIMARY_KEY
    from iris_assets.steps.stores import table_store

    scored = table_store(settings).read(
        settings.inference_table,
        [PRIMARY_KEY, *FEATURE_COLUMNS, "prediction"],
        predicate=f"observed_date = '{day}'",
    )
    skip = labelled_ids(settings.labels_landing_dir, day)
    labels = simulate_labels(scored, rows=max(1, len(scored) // 2), skip=skip)
    if len(labels):
        LandingArea(settings.labels_landing_dir).write_batch(labels, day)


def performance_summary(result) -> dict[str, Any]:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "model_performance"
    ]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "live_accuracy"]
    return {
        "labelled_rows": metadata["labelled_rows"],
        "scored_rows": metadata["scored_rows"],
        "coverage": metadata["coverage"],
        "accuracy": metadata["accuracy"],
        "live_accuracy_check": "passed" if check.passed else "WARN: decayed",
    }


def partition_rows(settings: Settings, day: str) -> int:
    from iris_assets.steps.stores import table_store

    return table_store(settings).count(
        settings.inference_table, predicate=f"observed_date = '{day}'"
    )


def _metrics_text(metrics: dict[str, str] | None) -> str:
    if not metrics:
        return ""
    return "held-out " + ", ".join(f"{name} {float(value):.3f}" for name, value in metrics.items())


def performance_text(performance: dict) -> str:
    accuracy = performance["accuracy"]
    return (
        f"{performance['labelled_rows']} of {performance['scored_rows']} flowers labelled "
        f"(coverage {performance['coverage']:.2f}), live accuracy "
        f"{'-' if accuracy is None else f'{accuracy:.3f}'}, check "
        f"{performance['live_accuracy_check']}"
    )


def prediction_text(output: dict) -> str:
    """The model's raw answer with the species names it stands for: ``[1] (versicolor)``."""
    from iris_assets.core.schema import SPECIES_NAMES

    predictions = output.get("predictions")
    if not isinstance(predictions, list):
        return str(output)
    names = [
        SPECIES_NAMES[p] if type(p) is int and 0 <= p < len(SPECIES_NAMES) else "?"
        for p in predictions
    ]
    return f"{predictions} ({', '.join(names)})"


def summary_table(status: dict) -> str:
    model, serving, metrics = status["model"], status["serving"], status["metrics"]
    rows = [
        (
            "feature table",
            f"{status['feature_table']['name']}: {status['feature_table']['rows']} rows",
        ),
        (
            "challenger",
            f"v{model['challenger']}  {_metrics_text(metrics.get(model['challenger']))}",
        ),
        ("champion", f"v{model['champion']}  {_metrics_text(metrics.get(model['champion']))}"),
        ("serving", f"{serving['url']} serves v{serving['version']}"),
        (
            "live prediction",
            f"{status['live_prediction']['input']} -> "
            f"{prediction_text(status['live_prediction']['output'])}",
        ),
        (
            "inference",
            f"{status['inference_table']['name']} partition {status['partition']['date']}: "
            f"{status['partition']['rows']} rows",
        ),
        ("performance", performance_text(status["performance"])),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
