"""The fake's warm task launcher keeps every promise of a cold task process (task_launcher.py).

Each test submits a probe file as a ``spark_python_task`` through the fake's Jobs API, with the
environment the runner submits, so it runs as a step's task runs: forked from the worker's
zygote when that is faithful, else cold. The probe reports what it sees as JSON on its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from databricks.sdk.service import compute, jobs

from iris_assets import databricks_env
from tests.databricks import task_launcher
from tests.databricks.fake_workspace import INSTALLED
from tests.databricks.task_launcher import ForkedTask

PROBE = """
import json, os, sys
before = sorted(m for m in sys.modules if m.split(".")[0] == "iris_assets")
leaked = os.environ.get("LEFT_BY_AN_EARLIER_TASK")
os.environ["LEFT_BY_AN_EARLIER_TASK"] = "yes"
import numpy
import iris_assets
print(json.dumps({
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "cwd": os.getcwd(),
    "argv": sys.argv,
    "path": sys.path[:2],
    "prefix": sys.prefix,
    "env": {k: os.environ.get(k) for k in ("DATABRICKS_RUNTIME_VERSION", "PYTHONPATH", "EXTRA")},
    "leaked": leaked,
    "project_before": before,
    "iris_assets": iris_assets.__file__,
    "random": numpy.random.random(),
}))
"""


def submit(workspace, folder: Path, name: str, parameters=()) -> object:
    """Run ``folder/name`` as a one-time task with the runner's environment; its FakeRun."""
    workspace.workspace_files["/Workspace/probes/"] = folder
    [wheel] = [path for path in workspace.artifacts]
    spec = databricks_env.environment_spec(wheel)
    response = (
        workspace.client()
        .jobs.submit(
            run_name="probe",
            environments=[
                jobs.JobEnvironment(
                    environment_key="e",
                    spec=compute.Environment(
                        environment_version=spec["environment_version"],
                        dependencies=spec["dependencies"],
                    ),
                )
            ],
            tasks=[
                jobs.SubmitTask(
                    task_key="probe",
                    environment_key="e",
                    spark_python_task=jobs.SparkPythonTask(
                        python_file=f"/Workspace/probes/{name}", parameters=list(parameters)
                    ),
                )
            ],
        )
        .response
    )
    run = workspace.runs[response.run_id]
    assert run.error is None, run.error
    return run


def report(workspace, run) -> dict:
    assert run.process.wait(timeout=180) == 0, workspace.log_text(run)
    return json.loads(workspace.log_text(run).splitlines()[-1])


@pytest.fixture
def probes(tmp_path) -> Path:
    folder = tmp_path / "probes"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE)
    return folder


def test_each_task_is_a_fresh_fork_with_its_own_cwd_environment_and_the_deployed_wheel(
    workspace, probes
):
    first = submit(workspace, probes, "probe.py", ["--one"])
    seen_first = report(workspace, first)
    second = submit(workspace, probes, "probe.py", ["--two"])
    seen_second = report(workspace, second)

    assert isinstance(first.process, ForkedTask) and isinstance(second.process, ForkedTask)
    overlay = seen_first["env"]["PYTHONPATH"]
    for run, seen, flag in ((first, seen_first, "--one"), (second, seen_second, "--two")):
        assert seen["pid"] == run.process.pid == seen["pgid"], "a process and group of its own"
        assert seen["cwd"] == str(workspace.root / "runs" / str(run.run_id))
        assert seen["argv"] == [str(probes / "probe.py"), flag]
        assert seen["path"] == [str(probes), overlay], "the step's folder, then the wheel"
        assert seen["prefix"] == str(run.task_python.parents[1])
        assert seen["env"]["DATABRICKS_RUNTIME_VERSION"] == "client.5.0"
        assert seen["project_before"] == [], "nothing of the project is imported before the task"
        assert seen["iris_assets"].startswith(overlay), "the deployed wheel's code"
        assert seen["leaked"] is None, "no task sees what an earlier one did"
    assert seen_first["pid"] != seen_second["pid"]
    assert seen_first["random"] != seen_second["random"], "numpy is seeded anew, as when cold"


def test_a_task_whose_path_brings_its_own_copy_of_a_library_runs_cold_and_imports_it(
    workspace, probes
):
    (probes / "skops").mkdir()
    (probes / "skops" / "__init__.py").write_text("__version__ = '0.0+the-task-s-own'\n")
    (probes / "which.py").write_text("import skops\nprint(skops.__version__)\n")
    run = submit(workspace, probes, "which.py")

    assert run.process.wait(timeout=180) == 0, workspace.log_text(run)
    assert workspace.log_text(run).splitlines()[-1] == "0.0+the-task-s-own"
    assert isinstance(run.process, subprocess.Popen)
    assert "brings its own ['skops']" in task_launcher.last_cold_reason


def test_a_task_in_another_venv_runs_cold_in_that_venv(workspace, probes, monkeypatch):
    warm = submit(workspace, probes, "probe.py")
    report(workspace, warm)  # the zygote runs in the task venv
    # The environment venv without the platform's stand-ins: another venv, as other pins make.
    [(_, other, modules)] = [v for v in INSTALLED.values() if v[0] == warm.task_python]
    monkeypatch.setattr(workspace, "install", lambda spec: (other, warm.resolved, modules))
    run = submit(workspace, probes, "probe.py")

    assert report(workspace, run)["prefix"] == str(other.parents[1])
    assert isinstance(run.process, subprocess.Popen)
    assert "the zygote in" in task_launcher.last_cold_reason


def test_a_task_with_other_environment_variables_runs_cold_and_sees_them(
    workspace, probes, monkeypatch
):
    report(workspace, submit(workspace, probes, "probe.py"))  # the zygote has this worker's env
    monkeypatch.setenv("EXTRA", "set after the zygote started")
    run = submit(workspace, probes, "probe.py")

    assert report(workspace, run)["env"]["EXTRA"] == "set after the zygote started"
    assert isinstance(run.process, subprocess.Popen)
    assert "['EXTRA']" in task_launcher.last_cold_reason


def test_when_the_zygote_cannot_be_reached_the_task_runs_cold(workspace, probes):
    report(workspace, submit(workspace, probes, "probe.py"))
    zygote = task_launcher._zygote
    zygote.process.kill()
    zygote.process.wait()
    run = submit(workspace, probes, "probe.py")

    assert report(workspace, run)["iris_assets"].startswith(str(workspace.root / "installed"))
    assert isinstance(run.process, subprocess.Popen)
    assert "the zygote exited" in task_launcher.last_cold_reason
    assert isinstance(submit(workspace, probes, "probe.py").process, ForkedTask), "a new one"


STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a task that ignores the cancel's interrupt
child = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(str(child.pid))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_cancelled_task_that_ignores_the_interrupt_is_killed_with_what_it_started(
    workspace, probes
):
    workspace.cancel_grace_seconds = 0.5
    (probes / "stubborn.py").write_text(textwrap.dedent(STUBBORN))
    started = probes / "grandchild.pid"
    run = submit(workspace, probes, "stubborn.py", [str(started)])
    assert isinstance(run.process, ForkedTask)
    deadline = time.monotonic() + 180
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(started.read_text())
    assert alive(grandchild)

    workspace.client().jobs.cancel_run(run.run_id)
    returncode = run.process.wait(timeout=60)

    assert returncode == -signal.SIGKILL
    workspace.run_json(run)  # the runner's first poll sees it pending
    assert workspace.state(run)["result_state"] == "CANCELED"
    deadline = time.monotonic() + 30
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), "its process group was killed with it"
    with pytest.raises(ProcessLookupError):
        os.kill(run.process.pid, 0)
