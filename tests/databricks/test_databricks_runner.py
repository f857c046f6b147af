"""The Databricks runner, proven offline: the real serverless Pipes client over a fake workspace.

Each step runs as a local task process started by the fake's Jobs API, and talks to Dagster only
through the (fake) Unity Catalog volume, as on Databricks serverless.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from importlib.metadata import distributions, version

import dagster as dg
import pytest
from dagster_pipes import decode_param

from iris_assets import databricks_env
from iris_assets.assets.training import challenger_model, evaluation_report, iris_features
from iris_assets.resources import LocalStepRunner, ModelRegistryResource, SettingsResource
from iris_assets.resources.databricks_runner import DatabricksStepRunner
from iris_assets.version import SHA_VARIABLE, project_version
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    materialize,
    run_job,
    step_failure_messages,
)
from tests.databricks.conftest import DEPLOYED_SHA, ROOT
from tests.databricks.fake_workspace import TOKEN, USER, FakeWorkspaceRunner
from tests.databricks.serverless_env import PLATFORM_STAND_INS

TRAINING = ("iris_features", "challenger_model", "evaluation_report")
TRAINING_ASSETS = (iris_features, challenger_model, evaluation_report)


def in_background(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def failure_with_causes(result) -> str:
    """A step's failure message with the errors that caused it (a retried step's last error)."""
    texts = []
    for event in result.all_events:
        error = event.event_specific_data.error if event.is_step_failure else None
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return " | ".join(texts)


def test_heavy_assets_report_the_same_metadata_and_checks_on_databricks_as_locally(
    settings, workspace, databricks_defs, instance
):
    remote = materialize(databricks_defs, instance, *TRAINING)
    assert remote.success, step_failure_messages(remote)
    local_defs = dg.Definitions(
        assets=[iris_features, challenger_model, evaluation_report],
        resources={
            "step_runner": LocalStepRunner(settings=SettingsResource.from_settings(settings))
        },
    )
    local = materialize(local_defs, instance, *TRAINING)
    assert local.success, step_failure_messages(local)

    assert (
        check_results(remote)
        == check_results(local)
        == {
            "feature_table_valid": True,
            "source_rows_accepted": True,
            "evaluation_passed": True,
        }
    )
    runs = list(workspace.runs.values())
    assert [run.task["task_key"] for run in runs] == ["iris_ingest", "iris_train", "iris_evaluate"]
    for run in runs:
        assert_ran_in_the_submitted_environment(workspace, run)
    for asset, run in zip(TRAINING, runs, strict=True):
        on_databricks = materialization_metadata(remote, asset)
        assert set(on_databricks) == set(materialization_metadata(local, asset)) | {
            "databricks_run_id",
            "databricks_run_url",
        }
        assert on_databricks["databricks_run_url"] == workspace.run_page_url(run)
        assert workspace.state(run)["result_state"] == "SUCCESS"
    assert materialization_metadata(remote, "iris_features")["rows_inserted"] == 150
    assert workspace.volume_entries(settings.pipes_volume) == ["tmp"], "Pipes files cleaned up"


def assert_ran_in_the_submitted_environment(workspace, run) -> None:
    """The task process ran on the venv the fake built from the run's own environment spec
    (Python 3.12, the deployed wheel first on its path), and what the submitted dependencies
    installed holds no Spark, Dagster or deltalake: those reach a task only as the fake's
    platform stand-ins."""
    assert run.process.args[0] == str(run.task_python) != sys.executable
    assert run.task_python.parents[1].name.startswith("serverless-env-5-")
    started = workspace.log_text(run).splitlines()[0].split()
    assert started[:2] == ["task", "python"] and started[2].startswith("3.12."), started
    assert started[3] == str(run.task_python.parents[1])  # sys.prefix: that venv
    wheel = workspace.artifacts[run.environment["dependencies"][0]]
    assert started[4].startswith(str(workspace.root / "installed" / wheel.stem)), started
    assert {"dagster-pipes", "skops", "mlflow-skinny", "scikit-learn", "iris-assets"} <= set(
        run.resolved
    )
    forbidden = {*databricks_env.FORBIDDEN_PACKAGES, *PLATFORM_STAND_INS}
    assert forbidden & set(run.resolved) == set(), "only the stand-ins bring these"


def test_the_submitted_task_is_serverless_and_names_the_dagster_run_without_secrets(
    settings, workspace, databricks_defs, instance
):
    result = materialize(databricks_defs, instance, "iris_features")
    assert result.success, step_failure_messages(result)
    [run] = workspace.runs.values()
    body = run.body
    bundle = f"/Workspace/Users/{USER}/.bundle/iris-assets/{settings.env}"

    [task] = body["tasks"]
    assert task["task_key"] == "iris_ingest"
    assert task["environment_key"] == "iris_steps"
    assert not {"new_cluster", "existing_cluster_id", "job_cluster_key", "libraries"} & set(task)
    assert task["spark_python_task"]["python_file"] == f"{bundle}/files/iris_assets/steps/ingest.py"
    flags, values = run.parameters[0::2], run.parameters[1::2]
    assert flags == ["--dagster-pipes-context", "--dagster-pipes-messages"]
    context, messages = (decode_param(value) for value in values)
    assert context["path"].startswith(f"{settings.pipes_volume}/tmp/")
    assert messages["path"].startswith(f"{settings.pipes_volume}/tmp/")

    [environment] = body["environments"]
    assert environment["environment_key"] == "iris_steps"
    assert environment["spec"]["environment_version"] == "5"
    wheel, *packages = environment["spec"]["dependencies"]
    assert wheel == f"{bundle}/artifacts/.internal/iris_assets-{project_version()}-py3-none-any.whl"
    # Only what environment 5 lacks or has too old, pinned like the orchestrator (not matplotlib:
    # the environment's 3.10 is used as it is).
    assert packages == [
        f"dagster-pipes=={version('dagster-pipes')}",
        f"skops=={version('skops')}",
        f"mlflow-skinny=={version('mlflow-skinny')}",
    ]
    cli = subprocess.run(
        [sys.executable, "-m", "iris_assets.cli", "databricks", "env", "--json", "--user", USER],
        capture_output=True,
        text=True,
        env={**os.environ, "IRIS_ENV": settings.env},
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == environment["spec"], "iris databricks env shows what is sent"

    assert body["run_name"] == f"iris-{settings.env}-ingest-{result.run_id[:8]}"
    assert body["idempotency_token"] == f"iris-{result.run_id}-ingest-0"
    assert len(f"iris-{result.run_id}-evaluate-10") <= 64

    records = [str(record) for record in instance.all_logs(result.run_id)]
    assert TOKEN not in json.dumps(body) and not any(TOKEN in r for r in records)
    assert any(workspace.run_page_url(run) in r for r in records), "the run URL is logged"


def test_a_failing_step_fails_with_its_error_and_run_url_and_a_retry_is_a_new_run(
    settings, workspace, instance, tmp_path
):
    defs = dg.Definitions(
        assets=[iris_features],
        jobs=[
            dg.define_asset_job(
                "ingest_with_a_retry",
                selection=[iris_features],
                op_retry_policy=dg.RetryPolicy(max_retries=1),
            )
        ],
        resources={"step_runner": FakeWorkspaceRunner.for_workspace(settings, workspace)},
    )
    missing = tmp_path / "no-such-flowers.csv"
    config = {"ops": {"iris_features": {"config": {"source_path": str(missing)}}}}
    result = run_job(defs, instance, "ingest_with_a_retry", run_config=config)

    assert not result.success
    first, retry = workspace.runs.values()
    assert [run.body["idempotency_token"] for run in (first, retry)] == [
        f"iris-{result.run_id}-ingest-0",
        f"iris-{result.run_id}-ingest-1",
    ]
    assert retry.body["run_name"] == f"iris-{settings.env}-ingest-{result.run_id[:8]}-retry1"
    assert workspace.state(retry)["result_state"] == "FAILED"
    message = failure_with_causes(result)
    assert "Exceeded max_retries of 1" in message
    assert f"SourceError: source {missing} does not exist or is not a file" in message
    assert workspace.run_page_url(retry) in message
    assert result.get_asset_materialization_events() == []


def test_a_task_that_cannot_start_reports_what_databricks_said(settings, workspace, instance):
    not_deployed = "/Workspace/Shared/iris_assets-0.0.0-py3-none-any.whl"
    defs = dg.Definitions(
        assets=[iris_features],
        resources={
            "step_runner": FakeWorkspaceRunner.for_workspace(
                settings, workspace, wheel_path=not_deployed
            )
        },
    )
    result = materialize(defs, instance, "iris_features")

    assert not result.success
    [run] = workspace.runs.values()
    message = step_failure_messages(result)
    assert f"Library installation failed: {not_deployed} does not exist" in message
    assert workspace.run_page_url(run) in message


def test_a_run_cancelled_in_databricks_fails_the_step_and_records_nothing(
    workspace, databricks_defs, instance
):
    def cancel_once_running():
        workspace.client().jobs.cancel_run(workspace.wait_until_running().run_id)

    canceller = in_background(cancel_once_running)
    result = materialize(databricks_defs, instance, "iris_features")
    canceller.join(timeout=30)

    assert not result.success
    [run] = workspace.runs.values()
    assert run.process.poll() is not None and workspace.state(run)["result_state"] == "CANCELED"
    message = step_failure_messages(result)
    assert "the Databricks run was cancelled" in message
    assert workspace.run_page_url(run) in message
    assert result.get_asset_materialization_events() == []
    assert check_results(result) == {}


@pytest.fixture
def stray_interrupts_ignored():
    """Dagster turns SIGINT into an interruption while a step runs; ignore it at any other time.

    Dagster also points SIGTERM at the SIGINT handler it restores, so both are put back."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_interrupting_the_dagster_run_cancels_the_databricks_run_and_fails_the_step(
    workspace, databricks_defs, instance, stray_interrupts_ignored
):
    main_thread = threading.main_thread().ident

    def interrupt_while_polling():
        workspace.wait_until_running(polled=2)
        signal.pthread_kill(main_thread, signal.SIGINT)

    interrupter = in_background(interrupt_while_polling)
    result = materialize(databricks_defs, instance, "iris_features")
    interrupter.join(timeout=30)

    assert not result.success
    [run] = workspace.runs.values()
    assert run.cancelled, "Dagster cancelled the Databricks run"
    message = step_failure_messages(result)
    assert "interrupted; the Databricks run was cancelled" in message
    assert workspace.run_page_url(run) in message
    assert result.get_asset_materialization_events() == []


def test_credentials_are_bound_to_environment_variables_by_name(settings):
    settings_resource = SettingsResource.from_settings(settings)
    with_token = DatabricksStepRunner.from_env(settings_resource, {"DATABRICKS_TOKEN": "t"})
    assert (with_token.host, with_token.token, with_token.client_id) == (
        dg.EnvVar("DATABRICKS_HOST"),
        dg.EnvVar("DATABRICKS_TOKEN"),
        None,
    )
    oauth = {"DATABRICKS_CLIENT_ID": "id", "DATABRICKS_CLIENT_SECRET": "secret"}
    with_oauth = DatabricksStepRunner.from_env(settings_resource, oauth)
    assert (with_oauth.token, with_oauth.client_id, with_oauth.client_secret) == (
        None,
        dg.EnvVar("DATABRICKS_CLIENT_ID"),
        dg.EnvVar("DATABRICKS_CLIENT_SECRET"),
    )


def test_the_workspace_client_authenticates_with_the_token_or_says_what_is_missing(settings):
    settings_resource = SettingsResource.from_settings(settings)
    host = "https://dbc-0123.cloud.databricks.com"
    client = DatabricksStepRunner(
        settings=settings_resource, host=host, token="dapi-x"
    ).workspace_client()
    assert (client.config.host, client.config.auth_type) == (host, "pat")
    with pytest.raises(dg.Failure, match="set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID"):
        DatabricksStepRunner(settings=settings_resource, host=host).workspace_client()


def test_the_runner_module_imports_no_databricks_library():
    code = (
        "import sys, iris_assets.resources.databricks_runner; "
        "print([m for m in ('dagster_databricks', 'databricks.sdk') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_a_step_started_on_databricks_without_pipes_arguments_says_how_to_run_it(tmp_path):
    env = {**os.environ, "DATABRICKS_RUNTIME_VERSION": "client.2.0"}
    out = subprocess.run(
        [sys.executable, "-m", "iris_assets.steps.ingest"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "got no --dagster-pipes-context argument" in out.stderr


def test_a_day_of_inference_runs_through_the_serverless_client_too(settings, workspace, instance):
    from iris_assets.assets.inference import inference_job, inference_table, new_flowers
    from iris_assets.assets.promotion import champion_alias
    from iris_assets.core.landing import LandingArea, simulate_flowers
    from iris_assets.core.registry import ModelRegistry

    defs = dg.Definitions(
        assets=[*TRAINING_ASSETS, champion_alias, new_flowers, inference_table],
        jobs=[inference_job],
        resources={
            "step_runner": FakeWorkspaceRunner.for_workspace(settings, workspace),
            "registry": ModelRegistryResource(settings=SettingsResource.from_settings(settings)),
        },
    )
    assert materialize(defs, instance, "iris_features", "challenger_model").success
    ModelRegistry(settings).set_alias("champion", "1")
    day = "2026-11-20"
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(80, day, seed=3), day)

    result = run_job(defs, instance, "inference_job", partition_key=day)
    assert result.success, step_failure_messages(result)
    assert check_results(result) == {"inference_output_valid": True, "feature_drift": True}
    metadata = materialization_metadata(result, "inference_table")
    assert (metadata["rows_scored"], metadata["model_version"]) == (80, "1")
    assert metadata["databricks_run_url"].startswith("https://")
    run = list(workspace.runs.values())[-1]
    assert run.task["task_key"] == "iris_score" and day in run.body["run_name"]
    for run in workspace.runs.values():
        assert_ran_in_the_submitted_environment(workspace, run)


# --- what the platform refuses, the fake refuses -------------------------------------------------
BUNDLE_ROOT = f"/Workspace/Users/{USER}/.bundle/iris-assets"


def test_an_environment_version_databricks_does_not_have_is_refused(settings, workspace, instance):
    runner = FakeWorkspaceRunner.for_workspace(settings, workspace, environment_version="9")
    defs = dg.Definitions(assets=[iris_features], resources={"step_runner": runner})
    result = materialize(defs, instance, "iris_features")
    assert not result.success and workspace.runs == {}
    assert "Invalid environment version '9'" in step_failure_messages(result)


def test_a_runner_of_another_commit_than_the_deploy_finds_no_wheel(
    settings, workspace, databricks_defs, instance, monkeypatch
):
    """The deploy uploaded the wheel of DEPLOYED_SHA; a Dagster+ build that names another version
    (no IRIS_GIT_SHA in the bundle's CI step, a `.dirty` tree on one side) must not run: it asks
    for a wheel that is not there, and the run fails saying which."""
    other = "f" * 12 if DEPLOYED_SHA != "f" * 12 else "e" * 12
    monkeypatch.setenv(SHA_VARIABLE, other)
    asked = databricks_env.bundle_wheel_path(f"{BUNDLE_ROOT}/{settings.env}")
    assert f"+g{other}" in asked and asked not in workspace.artifacts
    result = materialize(databricks_defs, instance, "iris_features")
    assert not result.success
    assert f"Library installation failed: {asked} does not exist" in step_failure_messages(result)
    monkeypatch.setenv(SHA_VARIABLE, DEPLOYED_SHA)
    assert databricks_env.bundle_wheel_path(f"{BUNDLE_ROOT}/{settings.env}") in workspace.artifacts


def test_a_wheel_that_pulls_in_pyspark_fails_the_run_at_library_installation(
    settings, workspace, databricks_defs, instance, deployed_wheel
):
    """The first deploy's wheel required the orchestrator: dagster-databricks -> dagster-pyspark
    -> pyspark, which stops a serverless session."""
    workspace.deploy_bundle(
        f"{BUNDLE_ROOT}/{settings.env}",
        ROOT,
        deployed_wheel,
        requires=["dagster-databricks==0.29.27"],
    )
    result = materialize(databricks_defs, instance, "iris_features")
    assert not result.success
    message = step_failure_messages(result)
    assert "installs PySpark, Databricks Connect or Dagster" in message
    assert [run.process for run in workspace.runs.values()] == [None], "the step never started"


def submitted_error(workspace, dependencies: list[str]) -> str:
    """Submit a one-time run with these dependencies through the SDK; the task's error."""
    from databricks.sdk.service import compute, jobs

    client = workspace.client()
    run = client.jobs.submit(
        run_name="dependencies",
        environments=[
            jobs.JobEnvironment(
                environment_key="e",
                spec=compute.Environment(environment_version="5", dependencies=dependencies),
            )
        ],
        tasks=[
            jobs.SubmitTask(
                task_key="t",
                environment_key="e",
                spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/x.py"),
            )
        ],
    ).response
    [task] = client.jobs.get_run(run.run_id).tasks
    assert workspace.runs[run.run_id].process is None, "nothing was installed or started"
    return client.jobs.get_run_output(task.run_id).error


@pytest.mark.parametrize(
    "dependency",
    [
        "databricks-connect==18.0.0",
        "pyspark==4.0.0",
        "PySpark==4.0.0",  # pip's names are case-insensitive
        "databricks_connect>=18",  # and _ - . are one
        "Databricks.Connect",
        "pyspark[connect]",
        "pyspark ; python_version >= '3'",
        "dagster==1.13.27",
        "dagster-databricks",  # -> dagster-pyspark -> pyspark
        "pyspark-client==4.0.0",  # Spark 4's Connect client: the pyspark modules
        "pyspark_connect",
        "delta-spark==4.0.0",  # requires pyspark
    ],
)
def test_a_dependency_that_installs_spark_or_dagster_fails_the_run(workspace, dependency):
    error = submitted_error(workspace, [dependency])
    assert "installs PySpark, Databricks Connect or Dagster" in error, error
    assert dependency in error


@pytest.mark.parametrize("pin", ["pandas==3.0.0", "Pandas==3.0.1"])
def test_a_pin_that_replaces_what_databricks_connect_needs_fails_the_run(workspace, pin):
    """Environment 5's Databricks Connect needs pandas < 3: pinning pandas 3 breaks its session."""
    error = submitted_error(workspace, [pin])
    assert "replace what the environment's Databricks Connect needs" in error, error
    assert "pandas<3" in error
    assert "Databricks Connect needs" not in submitted_error(workspace, ["pandas==2.2.3"])


# Distributions with an extra that requires PySpark or Databricks Connect (any one installed here).
EXTRAS_WITH_SPARK = [("narwhals", "pyspark"), ("databricks-sdk", "dev")]


def test_an_extra_that_pulls_in_pyspark_fails_the_run(workspace):
    """A harmless name with an extra that requires PySpark (judged by its metadata here)."""
    extras = [
        (name, extra)
        for name, extra in EXTRAS_WITH_SPARK
        if name in {d.metadata["Name"].lower() for d in distributions()}
    ]
    assert extras, "no installed distribution here has an extra that requires pyspark"
    name, extra = extras[0]
    assert "installs PySpark" not in submitted_error(workspace, [name])
    assert "installs PySpark" in submitted_error(workspace, [f"{name}[{extra}]"])


@pytest.mark.parametrize(
    ("dependency", "why"),
    [
        ("-r /Workspace/Shared/requirements.txt", "installs no pip options"),
        ("--index-url https://example.com/simple", "installs no pip options"),
        ("-e git+https://github.com/apache/spark#egg=pyspark", "installs no pip options"),
        ("skops @ https://example.com/pyspark-4.0.0.tar.gz", "from the package index only"),
        ("skops @ git+https://github.com/apache/spark", "from the package index only"),
        ("https://example.com/pyspark-4.0.0.tar.gz", "is not a valid requirement"),
        ("skops===", "is not a valid requirement"),
    ],
)
def test_a_dependency_nothing_can_vouch_for_fails_the_run(workspace, dependency, why):
    error = submitted_error(workspace, [dependency])
    assert error.startswith("Library installation failed:") and why in error, error


def test_synced_code_that_calls_input_file_name_is_refused(
    settings, workspace, databricks_defs, instance, tmp_path, deployed_wheel
):
    synced = tmp_path / "synced"
    shutil.copytree(ROOT / "iris_assets", synced / "iris_assets")
    scoring = synced / "iris_assets" / "steps" / "spark_scoring.py"
    scoring.write_text(scoring.read_text() + "\n\ndef path(F):\n    return F.input_file_name()\n")
    workspace.deploy_bundle(f"{BUNDLE_ROOT}/{settings.env}", synced, deployed_wheel)
    result = materialize(databricks_defs, instance, "iris_features")
    assert not result.success
    message = step_failure_messages(result)
    assert "input_file_name is not supported in Unity Catalog" in message
    assert "spark_scoring.py" in message


def small_wheel(folder, name: str, version: str, modules: list[str]):
    """A wheel whose METADATA says ``name`` and that installs ``modules``."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name.replace('-', '_')}-{version}"
    wheel = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            f"{stem}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        for module in modules:
            archive.writestr(f"{module}/__init__.py", "")
    return wheel


@pytest.mark.parametrize(
    ("name", "modules"),
    [("pyspark", ["pyspark"]), ("iris-assets", ["iris_assets", "pyspark"])],
    ids=["named-pyspark", "holds-pyspark"],
)
def test_a_deployed_wheel_that_is_pyspark_fails_the_run(workspace, tmp_path, name, modules):
    """Judged by what the wheel is (its METADATA Name, the modules it installs), not by the
    workspace path it was uploaded to."""
    wheel = small_wheel(tmp_path / "w", name, "4.0.0", modules)
    path = "/Workspace/Shared/iris_assets-0.1.0-py3-none-any.whl"
    workspace.artifacts[path] = wheel
    error = submitted_error(workspace, [path])
    assert "installs PySpark, Databricks Connect or Dagster" in error, error


@pytest.mark.parametrize(
    ("pin", "resolved", "modules", "why"),
    [
        ("pandas>=3", {"pandas": "3.0.0"}, {}, "pandas 3.0.0 (Databricks Connect: pandas<3)"),
        ("pandas~=3.0", {"pandas": "3.0.1"}, {}, "pandas 3.0.1 (Databricks Connect: pandas<3)"),
        ("harmless", {"pyspark-client": "4.0.0"}, {}, "resolved pyspark-client==4.0.0"),
        ("harmless", {"deltalake": "1.1.4"}, {}, "resolved deltalake==1.1.4"),
        ("harmless", {}, {"harmless": ["harmless", "pyspark"]}, "harmless (module pyspark)"),
        ("harmless", {}, {"sparkish": ["databricks.connect"]}, "module databricks.connect"),
    ],
    ids=["pandas>=3", "pandas~=3.0", "pyspark-client", "deltalake", "module", "connect-module"],
)
def test_what_the_environment_resolved_is_judged_not_only_the_submitted_text(
    settings, workspace, databricks_defs, instance, monkeypatch, pin, resolved, modules, why
):
    """The submitted text can hide what pip installs (``pandas>=3`` over the environment's
    pandas 2, a package whose requirements are not known here): the fake judges the installed
    set. pip's resolution is stood in for here (a real one would download pandas 3 or pyspark);
    the real resolution of the real spec goes through the same check in every other run."""
    pins = databricks_env.pins
    monkeypatch.setattr(databricks_env, "pins", lambda: [*pins(), pin])
    installed = {"iris-assets": project_version(), "pandas": "2.2.3", **resolved}
    monkeypatch.setattr(workspace, "install", lambda spec: (sys.executable, installed, modules))
    result = materialize(databricks_defs, instance, "iris_features")
    assert not result.success
    message = step_failure_messages(result)
    assert "Library installation failed: the environment resolved" in message and why in message
    assert [run.process for run in workspace.runs.values()] == [None], "the step never started"
