"""Step runners: run a Pipes step (``iris_assets.steps.<name>``) for an asset and collect results.

``LocalStepRunner`` runs it as a separate local process (``resources.warm_steps``); a Databricks
runner submits the same module as a serverless task. A failed step fails the asset with the
step's own message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from iris_assets.resources.settings import SettingsResource
from iris_assets.resources.warm_steps import launch_step

STEPS = ("ingest", "train", "evaluate", "score", "performance")


def step_error(custom_messages: Sequence[Any]) -> str | None:
    """The error a step reported through Pipes before exiting (``steps.bootstrap.open_step``)."""
    for message in reversed(custom_messages):
        if isinstance(message, Mapping) and message.get("error"):
            return f"{message.get('error_type', 'Error')}: {message['error']}"
    return None


class StepRunner(dg.ConfigurableResource, ABC):
    settings: SettingsResource

    @abstractmethod
    def run(
        self, context: dg.AssetExecutionContext, step: str, config: Mapping[str, Any]
    ) -> Sequence[dg.MaterializeResult | dg.AssetCheckResult]:
        """Run ``step`` for the asset in ``context``; return what the step reported."""

    def extras(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"settings": self.settings.get().step_env(), "config": dict(config)}


class LocalStepRunner(StepRunner):
    """Runs steps as local processes (the default target): forked from the warm worker, so the
    heavy imports are paid once per orchestrator process, or cold with ``IRIS_WARM_STEPS=0``."""

    python: str = sys.executable
    termination_timeout_seconds: float = 30.0

    def run(self, context, step, config):
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
        settings = self.settings.get()
        # A fresh reader per run: a reader reused across runs loses messages.
        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesTempFileContextInjector(),
            message_reader=dg.PipesTempFileMessageReader(),
            extras=self.extras(config),
        ) as session:
            process = launch_step(
                self.python,
                f"iris_assets.steps.{step}",
                {**os.environ, **settings.step_env(), **session.get_bootstrap_env_vars()},
            )
            try:
                returncode = process.wait()
            except BaseException:  # interrupted: the step must not outlive the run
                process.terminate()
                try:
                    process.wait(timeout=self.termination_timeout_seconds)
                except subprocess.TimeoutExpired:
                    process.kill()
                raise
        if returncode != 0:
            ending = (
                f"was killed by signal {-returncode}"
                if returncode < 0
                else f"exited with code {returncode}"
            )
            reason = step_error(session.get_custom_messages()) or ending
            raise dg.Failure(
                description=f"step {step} failed: {reason}",
                metadata={"step": step, "exit_code": returncode},
            )
        return session.get_results()
