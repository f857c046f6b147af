"""The local target's executor: Dagster's default one, with the run's warm worker started first.

A run's steps start in processes of their own (the multiprocess executor's), which take about a
second each to import Dagster and the definitions before a step starts; the warm worker that
forks the Pipes steps used to be started only then, by the step process, and the score step
then imported scikit-learn and skops to load its model on its critical path. Here the run's
orchestrator starts the worker as the run starts, importing what the run's steps need while
their processes start (``resources.warm_steps.start_run_worker``). Everything else is
``multi_or_in_process_executor``: the same config (``execution: config: multiprocess: ...``),
the same processes and the same events; a step still runs in a process of its own that cannot
take the orchestrator with it.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.executor_definition import (
    ExecutorDefinition,
    multi_or_in_process_executor,
)

from iris_assets.resources.warm_steps import start_run_worker

# The Pipes step each asset runs (``step_runner.run(context, <step>, ...)``); an asset not named
# here still runs, its worker's imports just wait for its first step.
ASSET_STEPS = {
    "iris_features": "ingest",
    "challenger_model": "train",
    "evaluation_report": "evaluate",
    "inference_table": "score",
    "model_performance": "performance",
}


def run_step_modules(job: dg.JobDefinition) -> list[str]:
    """The step modules of the assets ``job`` (a run's job, subset to its selection) runs."""
    nodes = job.graph.nodes_in_topological_order
    steps = [ASSET_STEPS[node.name] for node in nodes if node.name in ASSET_STEPS]
    return [f"iris_assets.steps.{step}" for step in dict.fromkeys(steps)]


def _create(init_context: dg.InitExecutorContext) -> dg.Executor:
    try:
        start_run_worker(run_step_modules(init_context.job.get_definition()))
    except Exception as error:  # a worker started late costs time, never the run
        dg.get_dagster_logger().warning(
            f"warm step worker not started ahead ({type(error).__name__}: {error}); each step "
            "process starts its own, or runs its step cold"
        )
    return multi_or_in_process_executor.executor_creation_fn(init_context)


warm_run_executor = ExecutorDefinition(
    name="warm_multi_or_in_process_executor",
    config_schema=multi_or_in_process_executor.config_schema,
    requirements=multi_or_in_process_executor.get_requirements,
    executor_creation_fn=_create,
    description=multi_or_in_process_executor.description,
)
