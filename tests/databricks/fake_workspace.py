"""A Databricks workspace faked at the SDK's HTTP boundary, for the offline proof of the runner.

``FakeWorkspace.connect`` takes a real ``databricks.sdk.WorkspaceClient`` and routes its
transport (``ApiClient.do``) here, so everything above it runs unmodified: the SDK's Jobs and Files
services, and dagster-databricks' serverless client, context injector and message reader. It serves
the endpoints they call:

- Files API (``/api/2.0/fs/files``, ``/api/2.0/fs/directories``) on Unity Catalog volumes, kept in
  the local folder ``<root>/Volumes``;
- Jobs API: ``runs/submit`` validates a serverless submission like the service does and runs its
  ``spark_python_task`` as a local process (``task_process.py``: the step file with its parameters,
  ``DATABRICKS_RUNTIME_VERSION`` set, ``/Volumes`` mapped to the same local folder for ``open``,
  ``os.stat`` and Parquet reads and writes, refusing a path in no volume of the workspace and
  answering EACCES in a denied one, as the mount does), forked from a warm zygote of the task
  venv that imported the third-party libraries once per test worker, or cold when a fork could
  differ from that process (``task_launcher.py``);
  ``runs/get``, ``runs/get-output`` and ``runs/cancel`` follow that process;
- ``scim/v2/Me``, for the bundle's default root folder.

A bundle deployment is ``deploy_bundle``: the synced files map to a local folder, and the wheel
is a real wheel file (built from this checkout) at its artifact path.

Each task runs in a venv built from the environment it was submitted with, never this test's
interpreter: environment N's Python and preinstalled packages, then the submitted
``dependencies`` installed by pip (tests/databricks/serverless_env.py; cached per machine, keyed by
the spec). The deployed wheel's code goes first on the task's path, unpacked as pip would install
it. Where Databricks would serve Unity Catalog (Delta tables, the model registry), the task venv
adds stand-ins the platform provides, apart from the submitted list: deltalake for UC tables,
sqlalchemy and alembic for the sqlite MLflow registry (``PLATFORM_STAND_INS``); the steps run with
the test's IRIS_TARGET=local settings. ``FakeRun.resolved`` is what the submitted list alone
installed.

What the platform refuses, the fake refuses too: an ``environment_version`` it does not have (400),
and a run fails at library installation when a dependency does not resolve on the environment,
when its dependencies (parsed as pip parses them, under any spelling, extras included), or what
they or the deployed wheel require in turn, include pyspark (or pyspark-client, pyspark-connect,
delta-spark) or databricks-connect ("Do not install PySpark or any library that installs
PySpark": it stops the session), when the deployed wheel is one itself (its Name, its modules),
when a pin replaces a package outside what the environment's Databricks Connect needs
(``pandas==3`` on environment 5, whose Connect needs pandas < 3), when the synced code uses
``input_file_name`` (not available on Unity Catalog), and, once pip has installed the
environment, when what it resolved holds a forbidden distribution or module or a version
Connect does not accept (``resolved_error``: ``pandas>=3`` passes as text, not as pandas 3.0).
Stricter than the platform, it also refuses the orchestrator's Dagster, and lines whose content
it cannot check: pip options (``-r file``, ``-e``, ``--index-url``) and URL or VCS requirements,
which serverless would install (shared/databricks/SERVERLESS.md §3) whatever they hold.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    BadRequest,
    InvalidParameterValue,
    NotFound,
    PermissionDenied,
    ResourceConflict,
    Unauthenticated,
)
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from iris_assets.resources import SettingsResource
from iris_assets.resources.databricks_runner import DatabricksStepRunner
from iris_assets.settings import Settings
from tests.databricks import serverless_env, task_launcher

TASK_PROCESS = Path(__file__).with_name("task_process.py")
HOST = "https://fake-workspace.cloud.databricks.com"
TOKEN = "dapi-fake-0123456789abcdef"
USER = "dagster@example.com"
CLUSTER_FIELDS = ("new_cluster", "existing_cluster_id", "job_cluster_key", "libraries")
FS_FILES, FS_DIRECTORIES = "/api/2.0/fs/files", "/api/2.0/fs/directories"
JOBS = "/api/2.2/jobs/runs"
# Serverless environment versions the service knows (shared/databricks/SERVERLESS.md §1).
ENVIRONMENT_VERSIONS = ("1", "2", "3", "4", "5")
# Installing these into a serverless environment breaks its Spark Connect session.
SPARK_PACKAGES = (
    "pyspark",
    "pyspark-client",  # Spark 4's Connect client: the pyspark modules without the JVM
    "pyspark-connect",
    "databricks-connect",
    "delta-spark",  # requires pyspark
)
# Importable packages that are Spark, the orchestrator or its table library, whatever the
# distribution that brings them is called (a wheel named "iris-assets" holding pyspark/ too).
FORBIDDEN_MODULES = ("pyspark", "delta", "databricks.connect", "dagster", "deltalake")
# The orchestrator's: a step task that installs Dagster installs a second, unrelated Dagster.
ORCHESTRATOR_PACKAGES = ("dagster",)
# What each environment's own Databricks Connect requires of packages a task could replace: a
# dependency pinned outside these breaks the session (issue 11: Connect 18 needs pandas < 3).
CONNECT_REQUIRES = {"5": ("pandas<3",)}
INPUT_FILE_NAME = "input_file_name"  # Spark SQL names are case-insensitive

# Fake workspaces by key, so a runner (a Dagster resource, built from plain config) can find one.
WORKSPACES: dict[str, FakeWorkspace] = {}
# The venvs built (or found in the cache) by this process, by interpreter and environment spec.
INSTALLED: dict[tuple, tuple[Path, Path]] = {}


@dataclass
class FakeRun:
    run_id: int
    task_run_id: int
    body: dict[str, Any]
    log: Path
    process: subprocess.Popen | task_launcher.ForkedTask | None = None
    error: str | None = None  # a failure before the step file ran (e.g. library installation)
    observed: int = 0
    cancelled: bool = False
    result_state: str | None = None
    task_python: Path | None = None  # the venv the task ran in (environment plus stand-ins)
    resolved: dict[str, str] = field(default_factory=dict)  # what the submitted list installed

    @property
    def task(self) -> dict[str, Any]:
        return self.body["tasks"][0]

    @property
    def parameters(self) -> list[str]:
        return self.task["spark_python_task"].get("parameters", [])

    @property
    def environment(self) -> dict[str, Any]:
        [spec] = [
            e["spec"]
            for e in self.body["environments"]
            if e["environment_key"] == self.task["environment_key"]
        ]
        return spec


@dataclass
class FakeWorkspace:
    root: Path
    host: str
    token: str
    user: str
    volumes: Iterable[str]
    key: str = "default"
    cancel_grace_seconds: float = 5.0
    runs: dict[int, FakeRun] = field(default_factory=dict)
    workspace_files: dict[str, Path] = field(default_factory=dict)
    # Wheels uploaded by a deploy: workspace path -> local file.
    artifacts: dict[str, Path] = field(default_factory=dict)
    # The Python of the environment versions (3.12 for environment 5); without it a run fails at
    # library installation, as a task cannot run on another interpreter than its environment's.
    python: Path | None = None
    # Volumes these credentials may not use (no READ VOLUME / WRITE VOLUME): the Files API
    # answers 403 PERMISSION_DENIED for any path in them, as Unity Catalog does.
    denied: Iterable[str] = ()

    def __post_init__(self):
        self.volumes = tuple(self.volumes)
        self.local_volumes = self.root / "Volumes"
        self.denied = tuple(self.denied)
        for volume in self.volumes:
            (self.local_volumes / volume.removeprefix("/Volumes/")).mkdir(
                parents=True, exist_ok=True
            )
        self._lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._tokens: dict[str, int] = {}

    # --- set-up ----------------------------------------------------------------------------------
    def deploy_bundle(
        self, bundle_root: str, repo: Path, wheel: Path, requires: list[str] | None = None
    ) -> None:
        """What `databricks bundle deploy` leaves: synced files and the uploaded wheel (with its
        ``Requires-Dist`` replaced by ``requires`` when given, as an older build declared it)."""
        self.workspace_files[f"{bundle_root}/files/"] = repo
        if requires is not None:
            wheel = forge_requires(wheel, requires, self.root / "forged")
        self.artifacts[f"{bundle_root}/artifacts/.internal/{wheel.name}"] = wheel

    def add_volume(self, volume: str) -> None:
        """A volume created after the workspace (the bundle's landing volume, for a test)."""
        self.volumes = (*self.volumes, volume)
        (self.local_volumes / volume.removeprefix("/Volumes/")).mkdir(parents=True, exist_ok=True)

    def connect(self, client: WorkspaceClient) -> WorkspaceClient:
        client.api_client.do = self.handler(client)
        return client

    def client(self) -> WorkspaceClient:
        return self.connect(WorkspaceClient(host=self.host, token=self.token, auth_type="pat"))

    def close(self) -> None:
        for run in self.runs.values():
            if run.process and run.process.poll() is None:
                run.process.kill()
                run.process.wait()

    # --- transport -------------------------------------------------------------------------------
    def handler(self, client: WorkspaceClient):
        def do(method: str, path: str | None = None, **kwargs: Any) -> Any:
            if client.config.host != self.host:
                raise ConnectionError(f"{client.config.host} is not the fake workspace")
            if client.config.authenticate().get("Authorization") != f"Bearer {self.token}":
                raise Unauthenticated("invalid access token")
            path = urllib.parse.unquote(path or "")
            with self._lock:
                return self.route(method, path, **kwargs)

        return do

    def route(self, method: str, path: str, query=None, body=None, data=None, **_: Any) -> Any:
        if path.startswith(FS_FILES):
            return self.files(method, path[len(FS_FILES) :], data)
        if path.startswith(FS_DIRECTORIES):
            return self.directories(method, path[len(FS_DIRECTORIES) :])
        if (method, path) == ("POST", f"{JOBS}/submit"):
            return self.submit(body)
        if (method, path) == ("GET", f"{JOBS}/get"):
            return self.run_json(self.find_run(query["run_id"]))
        if (method, path) == ("GET", f"{JOBS}/get-output"):
            return self.run_output(int(query["run_id"]))
        if (method, path) == ("POST", f"{JOBS}/cancel"):
            self.cancel(self.find_run(body["run_id"]))
            return {}
        if (method, path) == ("GET", "/api/2.0/preview/scim/v2/Me"):
            return {"userName": self.user, "id": "7"}
        raise NotImplementedError(f"the fake workspace does not serve {method} {path}")

    # --- Unity Catalog volumes (Files API) -------------------------------------------------------
    def local(self, volume_path: str) -> Path:
        # A path that starts with "//" (an absolute path joined to a prefix ending in "/") is a
        # 400 BAD_REQUEST "Invalid path": databricks/databricks-sdk-go#713 quotes the service
        # answering `PUT /api/2.0/fs/files//Volumes/main/x/y/z` so. No source found says what it
        # does with "//" or "." segments further in, so those are not refused here.
        if volume_path.startswith("//"):
            raise BadRequest("Invalid path", error_code="BAD_REQUEST")
        # The Files API refuses a path with ".." segments (400 INVALID_PARAMETER_VALUE) before it
        # looks at volumes or grants: without this, "<volume>/../<other>" would leave the volume.
        if ".." in volume_path.split("/"):
            raise InvalidParameterValue(
                f"Invalid path {volume_path}: a path must be absolute and normalized, without "
                "'..' segments",
                error_code="INVALID_PARAMETER_VALUE",
            )
        if not any(volume_path == v or volume_path.startswith(v + "/") for v in self.volumes):
            raise NotFound(f"{volume_path} is not in a volume of this workspace: {self.volumes}")
        for volume in self.denied:
            if volume_path == volume or volume_path.startswith(volume + "/"):
                name = ".".join(volume.removeprefix("/Volumes/").split("/"))
                raise PermissionDenied(
                    f"User does not have READ VOLUME on Volume '{name}'.",
                    error_code="PERMISSION_DENIED",
                )
        return self.local_volumes / volume_path.removeprefix("/Volumes/")

    def files(self, method: str, path: str, data) -> Any:
        local = self.local(path)
        if method == "PUT":
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data.read())
            return {}
        if not local.is_file():
            raise NotFound(f"file {path} does not exist")
        if method == "GET":
            content = local.read_bytes()
            return {"contents": io.BytesIO(content), "content-length": str(len(content))}
        if method == "HEAD":
            return {"content-length": str(local.stat().st_size)}
        if method == "DELETE":
            local.unlink()
            return {}
        raise NotImplementedError(f"{method} {FS_FILES}")

    def directories(self, method: str, path: str) -> Any:
        local = self.local(path)
        if method == "PUT":
            local.mkdir(parents=True, exist_ok=True)
            return {}
        if not local.is_dir():
            raise NotFound(f"directory {path} does not exist")
        if method == "GET":
            return {
                "contents": [
                    {
                        "path": f"{path}/{entry.name}",
                        "name": entry.name,
                        "is_directory": entry.is_dir(),
                        # As the service lists a file: its size and modification time (epoch ms).
                        **(
                            {}
                            if entry.is_dir()
                            else {
                                "file_size": entry.stat().st_size,
                                "last_modified": entry.stat().st_mtime_ns // 1_000_000,
                            }
                        ),
                    }
                    for entry in sorted(local.iterdir())
                ]
            }
        if method == "HEAD":
            return {}
        if method == "DELETE":
            if any(local.iterdir()):
                raise ResourceConflict(f"directory {path} is not empty")
            local.rmdir()
            return {}
        raise NotImplementedError(f"{method} {FS_DIRECTORIES}")

    def volume_entries(self, volume: str) -> list[str]:
        """Everything left in a volume, as paths relative to it."""
        folder = self.local(volume)
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    # --- Jobs: one-time serverless runs ----------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> dict[str, int]:
        validate_serverless_submission(body)
        token = body.get("idempotency_token")
        if token in self._tokens:  # Databricks launches exactly one run per token
            return {"run_id": self._tokens[token]}
        run_id = next(self._ids)
        run = FakeRun(run_id, next(self._ids), body, log=self.root / "runs" / f"{run_id}.log")
        self.runs[run_id] = run
        if token:
            self._tokens[token] = run_id
        run.error = self.installation_error(run)
        if run.error is None:
            run.process = self.launch(run)
        return {"run_id": run_id}

    def installation_error(self, run: FakeRun) -> str | None:
        """Why the task cannot start: a dependency it must not or cannot install, a python_file
        that does not exist, synced code Unity Catalog refuses. Else install the environment."""
        dependencies = run.environment["dependencies"]
        try:
            requirements = [self.requirement(dependency) for dependency in dependencies]
        except ValueError as error:
            return f"Library installation failed: {error}"
        if bad := forbidden_packages(dependencies, requirements):
            return (
                f"Library installation failed: {bad} installs PySpark, Databricks Connect or "
                "Dagster; PySpark stops the session: do not install PySpark or any library that "
                "installs it on serverless"
            )
        if conflicts := connect_conflicts(run.environment["environment_version"], requirements):
            return (
                f"Library installation failed: {conflicts} replace what the environment's "
                "Databricks Connect needs, which breaks the session"
            )
        python_file = run.task["spark_python_task"]["python_file"]
        local = self.local_file(python_file)
        if local is None:
            return f"FileNotFoundError: {python_file} does not exist in the workspace"
        if calls := input_file_name_calls(local):
            return (
                "[UC_COMMAND_NOT_SUPPORTED] input_file_name is not supported in Unity Catalog; "
                f"use the _metadata.file_path column ({', '.join(calls)})"
            )
        try:
            run.task_python, run.resolved, modules = self.install(run.environment)
        except RuntimeError as error:
            return f"Library installation failed: {error}"
        return resolved_error(run.environment["environment_version"], run.resolved, modules)

    def requirement(self, dependency: str) -> Requirement | Path:
        """A dependency as pip reads it: a deployed wheel, or a requirement from the index."""
        line = dependency.strip()
        if line.startswith("/"):
            if line not in self.artifacts:
                raise ValueError(f"{dependency} does not exist")
            return self.artifacts[line]
        if line.startswith("-"):
            raise ValueError(f"{dependency!r}: the fake installs no pip options (-r, -e, ...)")
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise ValueError(f"{dependency!r} is not a valid requirement: {error}") from None
        if requirement.url:
            raise ValueError(f"{dependency!r}: the fake installs from the package index only")
        return requirement

    def install(self, spec: dict[str, Any]) -> tuple[Path, dict[str, str], dict[str, list[str]]]:
        """The venv of the environment version with the dependencies installed (pip), plus the
        platform's stand-ins. Returns its python, what the dependencies alone resolved to and the
        top-level modules of each distribution they installed."""
        if self.python is None:
            raise RuntimeError(
                f"no Python for environment {spec['environment_version']} on this machine"
            )
        wheels = [d for d in spec["dependencies"] if d.startswith("/")]
        if len(wheels) != 1:
            raise RuntimeError(f"the fake installs one deployed wheel per environment: {wheels}")
        [wheel_path] = wheels
        key = (self.python, spec["environment_version"], *spec["dependencies"])
        if key not in INSTALLED:  # building is minutes cold; checking the cache, a second
            env_python = serverless_env.serverless_venv(
                spec["dependencies"],
                self.artifacts[wheel_path],
                self.python,
                spec["environment_version"],
            )
            INSTALLED[key] = (
                serverless_env.task_venv(env_python),
                env_python,
                serverless_env.top_level_modules(env_python),
            )
        task_python, env_python, modules = INSTALLED[key]
        return task_python, serverless_env.resolved(env_python), modules

    def local_file(self, workspace_path: str) -> Path | None:
        for prefix, folder in self.workspace_files.items():
            if workspace_path.startswith(prefix):
                local = folder / workspace_path[len(prefix) :]
                return local if local.is_file() else None
        return None

    def launch(self, run: FakeRun) -> subprocess.Popen | task_launcher.ForkedTask:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("IRIS_", "MLFLOW_", "DAGSTER_", "DATABRICKS_", "PYTHON"))
        }
        env["DATABRICKS_RUNTIME_VERSION"] = f"client.{run.environment['environment_version']}.0"
        # What the task's /Volumes mount holds and refuses, as the Files API here does.
        env["FAKE_WORKSPACE_VOLUMES"] = json.dumps(list(self.volumes))
        env["FAKE_WORKSPACE_DENIED"] = json.dumps(list(self.denied))
        [wheel_path] = [d for d in run.environment["dependencies"] if d.startswith("/")]
        env["PYTHONPATH"] = str(
            serverless_env.wheel_overlay(self.artifacts[wheel_path], self.root / "installed")
        )
        workdir = self.root / "runs" / str(run.run_id)
        workdir.mkdir(parents=True)
        python_file = self.local_file(run.task["spark_python_task"]["python_file"])
        args = [
            str(run.task_python),
            str(TASK_PROCESS),
            str(self.local_volumes),
            str(python_file),
            *run.parameters,
        ]
        with open(run.log, "wb") as log:
            return task_launcher.launch(args, workdir, env, log)

    def find_run(self, run_id) -> FakeRun:
        run = self.runs.get(int(run_id))
        if run is None:
            raise InvalidParameterValue(f"Run {run_id} does not exist.")
        return run

    def state(self, run: FakeRun) -> dict[str, str]:
        if run.observed == 0 and run.result_state is None:
            return {"life_cycle_state": "PENDING", "state_message": "Waiting for resources"}
        returncode = run.process.poll() if run.process else 1
        if returncode is None:
            if run.cancelled:
                return {"life_cycle_state": "TERMINATING", "state_message": "Cancelling"}
            return {"life_cycle_state": "RUNNING", "state_message": ""}
        if run.result_state is None:
            run.result_state = (
                "CANCELED" if run.cancelled else "SUCCESS" if returncode == 0 else "FAILED"
            )
        message = {
            "SUCCESS": "",
            "CANCELED": "Run cancelled.",
            "FAILED": "Workload failed, see run output for details",
        }[run.result_state]
        return {
            "life_cycle_state": "TERMINATED",
            "result_state": run.result_state,
            "state_message": message,
        }

    def run_page_url(self, run: FakeRun) -> str:
        return f"{self.host}/?o=1234567890#job/{run.run_id + 500}/run/{run.run_id}"

    def run_json(self, run: FakeRun) -> dict[str, Any]:
        state = self.state(run)
        run.observed += 1
        return {
            "run_id": run.run_id,
            "job_id": run.run_id + 500,
            "run_name": run.body.get("run_name"),
            "run_page_url": self.run_page_url(run),
            "state": state,
            "tasks": [
                {"run_id": run.task_run_id, "task_key": run.task["task_key"], "state": state}
            ],
        }

    def run_output(self, task_run_id: int) -> dict[str, Any]:
        [run] = [r for r in self.runs.values() if task_run_id in (r.run_id, r.task_run_id)]
        if task_run_id == run.run_id:
            raise InvalidParameterValue(
                "Retrieving the output of runs with multiple tasks is not supported: "
                "get the output of each task run"
            )
        if run.error:
            return {"error": run.error}
        if run.result_state != "FAILED":
            return {}
        lines = [line for line in self.log_text(run).splitlines() if line.strip()]
        return {"error": lines[-1] if lines else "", "error_trace": "\n".join(lines[-30:])}

    def log_text(self, run: FakeRun) -> str:
        return run.log.read_text(errors="replace") if run.log.exists() else ""

    def cancel(self, run: FakeRun) -> None:
        """Interrupt the task process (KeyboardInterrupt); kill it if it outlives a grace period."""
        run.cancelled = True
        process = run.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)

        def kill_late():
            try:
                process.wait(timeout=self.cancel_grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()

        threading.Thread(target=kill_late, daemon=True).start()

    def wait_until_running(self, polled: int = 0, timeout: float = 30.0) -> FakeRun:
        """The first run whose task process runs and whose state was read more than ``polled``
        times (for tests that stop a run midway)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for run in self.runs.values():
                    alive = run.process is not None and run.process.poll() is None
                    if alive and run.observed > polled:
                        return run
            time.sleep(0.02)
        raise TimeoutError(f"no Databricks run was running within {timeout} s")


def forbidden_packages(dependencies: list[str], requirements: list[Requirement | Path]) -> list:
    """The dependencies that bring PySpark, Databricks Connect or Dagster: named, or required
    (transitively, extras included) by one, judged by the metadata of the distributions installed
    here (a deployed wheel's by its own)."""
    found = []
    for dependency, requirement in zip(dependencies, requirements, strict=True):
        if isinstance(requirement, Path):
            metadata = serverless_env.wheel_metadata(requirement)
            own = canonicalize_name(metadata["Name"])
            modules = set(serverless_env.wheel_top_level_modules(requirement))
            if own in SPARK_PACKAGES + ORCHESTRATOR_PACKAGES or modules & set(FORBIDDEN_MODULES):
                found.append(dependency)  # the wheel itself is one, whatever its file is called
                continue
            todo = [(r, ()) for r in requirement_lines(metadata)]
        else:
            todo = [(str(requirement), ())]
        seen: set[tuple[str, frozenset]] = set()
        while todo:
            line, parent_extras = todo.pop()
            parsed = Requirement(line)
            if parsed.marker and not any(
                parsed.marker.evaluate({"extra": extra}) for extra in (*parent_extras, "")
            ):
                continue
            name = canonicalize_name(parsed.name)
            if (name, frozenset(parsed.extras)) in seen:
                continue
            seen.add((name, frozenset(parsed.extras)))
            if name in SPARK_PACKAGES + ORCHESTRATOR_PACKAGES:
                found.append(dependency)
                break
            todo.extend((r, tuple(parsed.extras)) for r in installed_requires(name))
    return found


@functools.cache  # what is installed here does not change during a session
def installed_requires(name: str) -> tuple[str, ...]:
    """The requirements of the distribution installed here as ``name`` (none if it is not)."""
    try:
        return tuple(distribution(name).requires or ())
    except PackageNotFoundError:
        return ()


def connect_conflicts(
    environment_version: str, requirements: list[Requirement | Path]
) -> list[str]:
    """The index requirements that admit no version Databricks Connect of the environment
    accepts (``pandas==3.0.0`` against its ``pandas<3``), with what it needs."""
    needs = {
        canonicalize_name(r.name): r.specifier
        for r in map(Requirement, CONNECT_REQUIRES.get(environment_version, ()))
    }
    conflicts = []
    for requirement in requirements:
        if isinstance(requirement, Path):
            continue
        needed = needs.get(canonicalize_name(requirement.name))
        pinned = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        if needed is not None and pinned and not any(needed.contains(v) for v in pinned):
            conflicts.append(
                f"{requirement} (Databricks Connect: {canonicalize_name(requirement.name)}{needed})"
            )
    return conflicts


def resolved_error(
    environment_version: str, resolved: dict[str, str], modules: dict[str, list[str]]
) -> str | None:
    """Why what pip actually installed for the submitted list breaks the task, judged after the
    fact (the submitted text can hide it: ``pandas>=3``, a package whose metadata is not here):
    a Spark, Databricks Connect, Dagster or deltalake distribution or module, or a version that
    the environment's Databricks Connect does not accept."""
    # dagster-pipes is the steps' protocol, not the orchestrator: only dagster itself is refused.
    forbidden = {*SPARK_PACKAGES, *ORCHESTRATOR_PACKAGES, "deltalake"}
    bad = sorted(
        {f"{name}=={version}" for name, version in resolved.items() if name in forbidden}
        | {
            f"{dist} (module {module})"
            for dist, names in modules.items()
            for module in names
            if module in FORBIDDEN_MODULES
        }
    )
    if bad:
        return (
            f"Library installation failed: the environment resolved {', '.join(bad)}: PySpark "
            "stops the session, Databricks Connect is the environment's own, and Dagster and "
            "deltalake are the orchestrator's: do not install them on serverless"
        )
    needs = [Requirement(r) for r in CONNECT_REQUIRES.get(environment_version, ())]
    broken = [
        f"{need.name} {resolved[need.name]} (Databricks Connect: {need})"
        for need in needs
        if need.name in resolved and not need.specifier.contains(resolved[need.name], True)
    ]
    if broken:
        return (
            f"Library installation failed: the environment resolved {', '.join(broken)}, "
            "which replaces what the environment's Databricks Connect needs and breaks the session"
        )
    return None


def requirement_lines(metadata) -> list[str]:
    return metadata.get_all("Requires-Dist") or []


def forge_requires(wheel: Path, requires: list[str], folder: Path) -> Path:
    """A copy of the wheel whose METADATA declares ``requires`` instead of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    forged = folder / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(forged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".dist-info/METADATA"):
                lines = [
                    line
                    for line in data.decode().splitlines()
                    if not line.startswith("Requires-Dist:")
                ]
                at = next(i for i, line in enumerate(lines) if line.startswith("Version:")) + 1
                lines[at:at] = [f"Requires-Dist: {r}" for r in requires]
                data = ("\n".join(lines) + "\n").encode()
            target.writestr(item, data)
    return forged


def input_file_name_calls(python_file: Path) -> list[str]:
    """Where the step file or the synced iris_assets package uses input_file_name: by attribute
    (``F.input_file_name()``, also inside ``F.concat_ws("#", ...)``), imported by name, or named
    in a string (``F.call_function("input_file_name")``, ``getattr(F, "input_file_name")``,
    ``F.expr("input_file_name()")``, SQL). Read with ``ast``, so comments and docstrings never
    count and a ``#`` inside a string hides nothing. A file that does not parse is refused too:
    the platform would not run it either."""
    package = next((p for p in python_file.parents if p.name == "iris_assets"), python_file.parent)
    calls = []
    for path in sorted({python_file, *package.rglob("*.py")}):
        lines, unparsable = _input_file_name_lines(path.read_bytes())
        if unparsable is not None:
            calls.append(f"{path.name}:{unparsable} (does not parse)")
            continue
        calls += [f"{path.name}:{line}" for line in lines]
    return sorted(set(calls), key=calls.index)


# Every submission reads the whole synced package again, which is the same few dozen files
# run after run: each is parsed once per content (0.7 CPU s a submission before).
_lines_by_content: dict[bytes, tuple[tuple[int, ...], int | None]] = {}


def _input_file_name_lines(source: bytes) -> tuple[tuple[int, ...], int | None]:
    """The lines of ``source`` that use input_file_name, and the line of its syntax error."""
    key = hashlib.sha256(source).digest()
    if key not in _lines_by_content:
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            _lines_by_content[key] = (), error.lineno or 0
        else:
            docstrings = {
                id(node.value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            }
            lines = (n.lineno for n in ast.walk(tree) if _names_input_file_name(n, docstrings))
            _lines_by_content[key] = tuple(lines), None
    return _lines_by_content[key]


def _names_input_file_name(node: ast.AST, docstrings: set[int]) -> bool:
    return (
        (isinstance(node, ast.Attribute) and node.attr.lower() == INPUT_FILE_NAME)
        or (isinstance(node, ast.Name) and node.id.lower() == INPUT_FILE_NAME)
        or (isinstance(node, ast.alias) and node.name.lower() == INPUT_FILE_NAME)
        or (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and INPUT_FILE_NAME in node.value.lower()
        )
    )


def validate_serverless_submission(body: dict[str, Any]) -> None:
    """What the Jobs service rejects in a one-time serverless run (as HTTP 400)."""
    tasks = body.get("tasks") or []
    if len(tasks) != 1:
        raise InvalidParameterValue(f"the fake runs one task per run, got {len(tasks)}")
    [task] = tasks
    if not task.get("task_key"):
        raise InvalidParameterValue("Task key must be specified")
    if present := [f for f in CLUSTER_FIELDS if f in task]:
        raise InvalidParameterValue(f"{present} are not supported on serverless compute")
    if "spark_python_task" not in task:
        raise NotImplementedError(f"the fake runs spark_python_task only, got {sorted(task)}")
    environments = {e["environment_key"]: e.get("spec", {}) for e in body.get("environments", [])}
    if task.get("environment_key") not in environments:
        raise InvalidParameterValue(
            f"Task {task['task_key']} needs an environment_key defined in environments"
        )
    spec = environments[task["environment_key"]]
    if not spec.get("environment_version"):
        raise InvalidParameterValue("environment_version is required")
    if spec["environment_version"] not in ENVIRONMENT_VERSIONS:
        raise InvalidParameterValue(
            f"Invalid environment version {spec['environment_version']!r}: supported versions are "
            f"{', '.join(ENVIRONMENT_VERSIONS)}"
        )
    if len(body.get("idempotency_token") or "") > 64:
        raise InvalidParameterValue("idempotency_token must have at most 64 characters")


class FakeWorkspaceRunner(DatabricksStepRunner):
    """The Databricks runner with its (real) workspace client connected to a fake workspace."""

    workspace_key: str

    def workspace_client(self) -> WorkspaceClient:
        return WORKSPACES[self.workspace_key].connect(super().workspace_client())

    @classmethod
    def for_workspace(
        cls, settings: Settings, workspace: FakeWorkspace, **fields: Any
    ) -> FakeWorkspaceRunner:
        """The runner as the definitions build it (``from_env``), polling fast for tests."""
        return cls.from_env(
            SettingsResource.from_settings(settings),
            workspace_key=workspace.key,
            poll_interval_seconds=0.2,
            message_interval_seconds=0.2,
            **fields,
        )
