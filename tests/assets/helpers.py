"""Running the real graph in-process against a test's settings and Dagster instance."""

from __future__ import annotations

import dagster as dg

from iris_assets.assets.promotion_sensor import champion_approval_sensor


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, **kwargs):
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance, raise_on_error=False, **kwargs
    )


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def materialization_metadata(result, asset: str) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def step_failure_messages(result) -> str:
    return " | ".join(
        e.event_specific_data.error.message
        for e in result.all_events
        if e.is_step_failure and e.event_specific_data.error
    )


def sensor_decision(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None):
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
    ) as context:
        return champion_approval_sensor(context), context.cursor


def sensor_ticker(graph, sensor):
    """A function running one tick of ``sensor`` on ``graph``'s definitions and instance:
    ``tick(cursor) -> (result, new cursor)``."""
    defs, instance = graph

    def tick(cursor):
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
        ) as context:
            return sensor(context), context.cursor

    return tick


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance, *assets: str, **kwargs):
    """Materialize just ``assets`` (and their checks) from the real definitions."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        asset_selection=[dg.AssetKey(a) for a in assets],
        **kwargs,
    )
