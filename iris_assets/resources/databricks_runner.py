"""Runs a Pipes step as a Databricks serverless task (IRIS_TARGET=databricks).

The task is a ``spark_python_task`` that runs the step's file as the bundle synced it
(``<bundle_root>/files/iris_assets/steps/<step>.py``) in the serverless environment of
``iris_assets.databricks_env``: this commit's wheel and the pins of what the environment lacks.
Pipes context and messages travel through the Unity Catalog volume ``settings.pipes_volume``; the
Pipes bootstrap parameters reach the step as ``--dagster-pipes-*`` command-line arguments (see
``steps.bootstrap``).

dagster_databricks and databricks.sdk are imported inside the methods: importing the definitions
must stay light.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from iris_assets import databricks_env
from iris_assets.resources.settings import SettingsResource
from iris_assets.resources.step_runner import STEPS, StepRunner, step_error

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs

ENVIRONMENT_KEY = databricks_env.ENVIRONMENT_KEY
# dagster-databricks attaches these to every result; the runner names them like the rest.
LIBRARY_RUN_KEYS = ("Databricks Job Run ID", "Databricks Job Run URL")


class DatabricksStepRunner(StepRunner):
    """Runs steps as Databricks serverless tasks through ``PipesDatabricksServerlessClient``.

    Credentials come from the environment only: build it with ``from_env`` (or pass
    ``dg.EnvVar``s), so Dagster stores and shows the variable names, never the values.
    """

    host: str = Field(
        default=dg.EnvVar("DATABRICKS_HOST"), description="Workspace URL, e.g. https://…"
    )
    token: str | None = Field(default=None, description="Personal access token (an EnvVar).")
    client_id: str | None = Field(default=None, description="OAuth M2M client id (an EnvVar).")
    client_secret: str | None = Field(
        default=None, description="OAuth M2M client secret (an EnvVar)."
    )
    bundle_root: str = Field(
        default="",
        description=(
            "Workspace folder of the deployed bundle (`workspace.root_path`). Empty: the bundle's "
            "default, /Workspace/Users/<current user>/.bundle/iris-assets/<IRIS_ENV>."
        ),
    )
    wheel_path: str = Field(
        default="",
        description=(
            "The project's wheel as the bundle uploaded it. Empty: this commit's "
            "<bundle_root>/artifacts/.internal/iris_assets-0.1.0+g<commit>-py3-none-any.whl."
        ),
    )
    environment_version: str = Field(
        default=databricks_env.ENVIRONMENT_VERSION,
        description="Serverless environment version (5: Python 3.12, see databricks_env).",
    )
    timeout_seconds: int = Field(default=3600, description="Databricks stops the run after this.")
    poll_interval_seconds: float = Field(default=5.0, description="How often the run is polled.")
    message_interval_seconds: float = Field(
        default=5.0, description="How often the volume is read for new Pipes messages."
    )
    forward_stdio: bool = Field(
        default=False,
        description=(
            "Also forward the task's stdout/stderr to Dagster (costs the step ~6 s at exit). Step "
            "logs, errors and tracebacks reach Dagster either way; stdio is on the run page."
        ),
    )

    @classmethod
    def from_env(
        cls,
        settings: SettingsResource,
        environ: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> DatabricksStepRunner:
        """The runner with credentials bound by name: a token, else an OAuth client id/secret."""
        environ = os.environ if environ is None else environ
        if environ.get("DATABRICKS_CLIENT_ID") and not environ.get("DATABRICKS_TOKEN"):
            credentials = {
                "client_id": dg.EnvVar("DATABRICKS_CLIENT_ID"),
                "client_secret": dg.EnvVar("DATABRICKS_CLIENT_SECRET"),
            }
        else:
            credentials = {"token": dg.EnvVar("DATABRICKS_TOKEN")}
        return cls(settings=settings, **credentials, **fields)

    def workspace_client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient

        if self.token:
            return WorkspaceClient(host=self.host, token=self.token, auth_type="pat")
        if self.client_id and self.client_secret:
            return WorkspaceClient(
                host=self.host,
                client_id=self.client_id,
                client_secret=self.client_secret,
                auth_type="oauth-m2m",
            )
        raise dg.Failure(
            "no Databricks credentials: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and "
            "DATABRICKS_CLIENT_SECRET"
        )

    # --- what is submitted -----------------------------------------------------------------------
    def resolved_bundle_root(self, workspace: WorkspaceClient) -> str:
        if self.bundle_root:
            return self.bundle_root.rstrip("/")
        user = workspace.current_user.me().user_name
        return databricks_env.default_bundle_root(user, self.settings.get().env)

    def task(self, step: str, bundle_root: str) -> jobs.SubmitTask:
        from databricks.sdk.service import jobs

        return jobs.SubmitTask(
            task_key=f"iris_{step}",
            environment_key=ENVIRONMENT_KEY,
            spark_python_task=jobs.SparkPythonTask(
                python_file=f"{bundle_root}/files/iris_assets/steps/{step}.py",
                source=jobs.Source.WORKSPACE,
            ),
        )

    def environment_spec(self, bundle_root: str) -> dict[str, Any]:
        """What the tasks' environment installs (``iris databricks env`` prints the same)."""
        wheel = self.wheel_path or databricks_env.bundle_wheel_path(bundle_root)
        return databricks_env.environment_spec(wheel, self.environment_version)

    def submit_args(
        self, context: dg.AssetExecutionContext, step: str, bundle_root: str
    ) -> dict[str, Any]:
        from databricks.sdk.service import compute, jobs

        run_name = f"iris-{self.settings.get().env}-{step}-{context.run_id[:8]}"
        if context.has_partition_key:
            run_name += f"-{context.partition_key}"
        if context.retry_number:
            run_name += f"-retry{context.retry_number}"
        return {
            "run_name": run_name,
            # At most 64 characters: 5 + 36 (run id) + 1 + 8 (longest step) + 1 + the retry number.
            "idempotency_token": f"iris-{context.run_id}-{step}-{context.retry_number}",
            "timeout_seconds": self.timeout_seconds,
            "environments": [
                jobs.JobEnvironment(
                    environment_key=ENVIRONMENT_KEY,
                    spec=compute.Environment.from_dict(self.environment_spec(bundle_root)),
                )
            ],
        }

    # --- running it ------------------------------------------------------------------------------
    def run(self, context, step, config):
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
        from databricks.sdk.errors import DatabricksError

        workspace = self.workspace_client()
        bundle_root = self.resolved_bundle_root(workspace)

        def announce(run_id: int) -> None:
            url = run_url(workspace, workspace.jobs.get_run(run_id))
            context.log.info(f"step {step} runs on Databricks as run {run_id}: {url}")

        # A fresh client, injector and reader per run: a reader reused across runs loses messages.
        client = self.pipes_client(workspace, on_submitted=announce)
        try:
            invocation = client.run(
                context=context,
                extras=self.extras(config),
                task=self.task(step, bundle_root),
                submit_args=self.submit_args(context, step, bundle_root),
            )
        except DatabricksError as error:
            where = f" (run {client.run_id})" if client.run_id else ""
            raise dg.Failure(
                description=f"step {step} could not run on Databricks{where}: {error}",
                metadata={"step": step},
            ) from error

        # The end state decides, not the client: it reports an interrupted run as a success.
        run = workspace.jobs.get_run(client.run_id)
        url = run_url(workspace, run)
        run_metadata = {
            "databricks_run_id": client.run_id,
            "databricks_run_url": dg.MetadataValue.url(url),
        }
        ended = end_state(run)
        if client.interrupted or ended != "TERMINATED/SUCCESS":
            reason = step_error(invocation.get_custom_messages())
            if reason is None and client.interrupted:
                reason = "interrupted; the Databricks run was cancelled"
            elif reason is None and ended.endswith("/CANCELED"):
                reason = "the Databricks run was cancelled"
            elif reason is None:
                reason = task_error(workspace, run) or f"the run ended {ended}"
            raise dg.Failure(
                description=f"step {step} failed on Databricks: {reason} (run {url})",
                metadata={"step": step, **run_metadata, "databricks_state": ended},
            )
        return [with_run_metadata(result, run_metadata) for result in invocation.get_results()]

    def pipes_client(self, workspace: WorkspaceClient, on_submitted: Callable[[int], None]):
        from dagster_databricks.pipes import (
            PipesUnityCatalogVolumesContextInjector,
            PipesUnityCatalogVolumesMessageReader,
        )

        volume = self.settings.get().pipes_volume
        return _step_client_class()(
            client=workspace,
            volume_path=volume,
            context_injector=PipesUnityCatalogVolumesContextInjector(
                client=workspace, volume_path=volume
            ),
            message_reader=PipesUnityCatalogVolumesMessageReader(
                client=workspace,
                volume_path=volume,
                interval=self.message_interval_seconds,
                include_stdio_in_messages=self.forward_stdio,
            ),
            poll_interval_seconds=self.poll_interval_seconds,
            on_submitted=on_submitted,
        )


def run_url(workspace: WorkspaceClient, run: jobs.Run) -> str:
    if run.run_page_url:
        return run.run_page_url
    return f"{workspace.config.host.rstrip('/')}/#job/{run.job_id}/run/{run.run_id}"


def with_run_metadata(result, run_metadata: Mapping[str, Any]):
    """The result with the run's id and URL, named like the project's other metadata keys."""
    kept = {k: v for k, v in (result.metadata or {}).items() if k not in LIBRARY_RUN_KEYS}
    return result._replace(metadata={**kept, **run_metadata})


def end_state(run: jobs.Run) -> str:
    state = run.state
    life_cycle = state.life_cycle_state.value if state and state.life_cycle_state else None
    result = state.result_state.value if state and state.result_state else None
    return f"{life_cycle}/{result}"


def task_error(workspace: WorkspaceClient, run: jobs.Run) -> str | None:
    """The error Databricks recorded for the task, for a step that failed before Pipes opened."""
    from databricks.sdk.errors import DatabricksError

    for task in run.tasks or []:
        if task.run_id is None:
            continue
        try:
            output = workspace.jobs.get_run_output(task.run_id)
        except DatabricksError:
            return None
        if output.error:
            return output.error
    return None


@functools.cache
def _step_client_class():
    from dagster._core.errors import DagsterPipesExecutionError
    from dagster_databricks.pipes import PipesDatabricksServerlessClient

    class StepClient(PipesDatabricksServerlessClient):
        """The serverless client for one run, leaving the verdict on the run to the runner.

        In dagster-databricks 0.29.27 ``run()`` raises on a failed run from inside the Pipes
        session, so the step's own error message is lost, and it swallows an interruption after
        cancelling the run, so the step would "succeed". This client records the run id and any
        interruption and lets a failed run end the session normally; the runner then reads the
        terminal state and fails the step with the step's error and the run's URL.
        """

        def __init__(self, *, on_submitted: Callable[[int], None], **kwargs: Any):
            super().__init__(**kwargs)
            self.on_submitted = on_submitted
            self.run_id: int | None = None
            self.interrupted = False

        def _poll_til_success(self, context, run_id):
            self.run_id = run_id
            try:
                self.on_submitted(run_id)
                super()._poll_til_success(context, run_id)
            except dg.DagsterExecutionInterruptedError:
                self.interrupted = True
                raise
            except DagsterPipesExecutionError:
                pass  # the run failed or was cancelled: the runner reports it with its reason

    return StepClient
