"""A step forked from the warm worker behaves like `python -m` in a fresh process.

The probe module below stands in for a step: it reports what it sees (pid, env, cwd, a global
it may have been left by an earlier step) and can exit, raise, hang or be killed on request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from iris_assets.resources.warm_steps import WarmStep, WarmWorker, launch_step

PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    import pandas

    report = {
        "pid": os.getpid(),
        "env": os.environ.get("PROBE_VALUE"),
        "cwd": os.getcwd(),
        "leftover": getattr(pandas, "left_by_an_earlier_step", None),
        "main": __name__,
    }
    pandas.left_by_an_earlier_step = os.getpid()
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump(report, out)
    print("probe stdout line", flush=True)
    action = os.environ.get("PROBE_ACTION", "")
    if action == "raise":
        raise RuntimeError("probe failed on purpose")
    if action.startswith("exit"):
        sys.exit(int(action[4:]))
    if action == "hang":
        time.sleep(120)
    """
)


@pytest.fixture
def probe(tmp_path, monkeypatch):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)

    def run(action: str = "", value: str = "x", wait: bool = True):
        out = tmp_path / f"report-{time.monotonic_ns()}.json"
        env = {**os.environ, "PROBE_OUT": str(out), "PROBE_VALUE": value, "PROBE_ACTION": action}
        process = launch_step(sys.executable, "warm_probe", env)
        if not wait:
            return process, out
        returncode = process.wait(timeout=60)
        return returncode, json.loads(out.read_text())

    return run


@pytest.fixture
def own_workers(monkeypatch):
    """This test's workers, apart from the pytest worker's own: a test that kills or forgets
    its worker would otherwise leave every later step of this process a fresh worker that
    imports the steps' libraries again (about 3 CPU s)."""
    mine: dict = {}
    monkeypatch.setattr(WarmWorker, "_workers", mine)
    yield mine
    for worker in list(mine.values()):
        worker.stop()


def test_a_warm_step_runs_as_main_in_its_own_process_with_the_env_and_cwd_it_was_given(
    probe, tmp_path
):
    returncode, report = probe(value="first")
    assert returncode == 0
    assert report["pid"] != os.getpid()
    assert report["env"] == "first"
    assert report["cwd"] == str(tmp_path)
    assert report["main"] == "__main__"


def test_nothing_one_warm_step_leaves_behind_is_seen_by_the_next(probe):
    _, first = probe()
    _, second = probe()
    assert first["leftover"] is None and second["leftover"] is None
    assert first["pid"] != second["pid"]


def test_a_warm_step_writes_to_the_orchestrators_stdout(tmp_path, monkeypatch, capfd):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PROBE_OUT": str(tmp_path / "r.json")}
    assert launch_step(sys.executable, "warm_probe", env).wait(timeout=60) == 0
    assert "probe stdout line" in capfd.readouterr().out


@pytest.mark.parametrize(("action", "expected"), [("exit3", 3), ("raise", 1), ("exit0", 0)])
def test_a_warm_step_exits_with_the_code_a_cold_one_would(probe, action, expected):
    assert probe(action)[0] == expected


def test_a_killed_warm_step_fails_alone_and_the_worker_runs_the_next(probe):
    process, _ = probe("hang", wait=False)
    assert isinstance(process, WarmStep)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.2)
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert probe()[0] == 0


def test_terminating_a_warm_step_ends_it_with_sigterm(probe):
    process, out = probe("hang", wait=False)
    while not out.exists():  # started: the report is written before it hangs
        time.sleep(0.02)
    process.terminate()
    assert process.wait(timeout=30) == -signal.SIGTERM


def test_a_killed_worker_is_replaced_and_the_step_still_runs(probe, own_workers):
    probe()
    worker = WarmWorker.for_python(sys.executable)
    worker.process.kill()
    worker.process.wait()
    replacement = WarmWorker.for_python(sys.executable)  # itself, not through a retry
    assert replacement is not worker and replacement.process.poll() is None
    process, out = probe(value="after the worker died", wait=False)
    assert isinstance(process, WarmStep), "the step after the kill ran cold"
    assert process.wait(timeout=60) == 0
    assert json.loads(out.read_text())["env"] == "after the worker died"
    assert WarmWorker.for_python(sys.executable) is replacement


def test_warm_steps_can_be_turned_off(probe, monkeypatch):
    monkeypatch.setenv("IRIS_WARM_STEPS", "0")
    process, _ = probe(wait=False)
    assert isinstance(process, subprocess.Popen)
    assert process.wait(timeout=60) == 0


def test_garbage_sent_to_the_worker_is_refused_and_the_next_step_still_runs(probe):
    import socket

    probe()
    worker = WarmWorker.for_python(sys.executable)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(worker.address)
        conn.sendall(b"this is not json\n")
        assert conn.recv(100) == b""  # closed without starting anything
    assert probe(value="after garbage")[1]["env"] == "after garbage"
    assert worker.process.poll() is None


@pytest.mark.parametrize(
    "signals",
    [
        "[" * 5000 + "]" * 5000,  # past json's recursion limit
        '{"ignored": [true]}',
        '{"ignored": [1.0]}',
        '{"blocked": [99999]}',
        '{"ignored": "1"}',
        '{"other": []}',
        "null",
    ],
)
def test_a_request_with_garbled_signals_is_refused_and_the_worker_stays(probe, signals):
    import socket

    probe()
    worker = WarmWorker.for_python(sys.executable)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(worker.address)
            head = '{"module": "warm_probe", "env": {}, "cwd": "/", "signals": '
            request = head + signals + "}\n"
            socket.send_fds(conn, [request.encode()], [devnull] * 3)
            assert conn.recv(100) == b""  # closed without starting anything
    finally:
        os.close(devnull)
    assert probe(value="after garbled signals")[1]["env"] == "after garbled signals"
    assert worker.process.poll() is None


SIGNAL_PROBE = """
import json, os
fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Sig"))
with open(os.environ["PROBE_OUT"], "w") as out:
    json.dump({k: v.strip() for k, v in fields.items() if k in ("SigIgn", "SigBlk", "SigCgt")}, out)
"""


def test_a_warm_step_starts_with_the_signals_a_cold_one_would(tmp_path, monkeypatch):
    """Real-time signals too, and faulthandler's handlers when the step's env asks for them."""
    (tmp_path / "signal_probe.py").write_text(SIGNAL_PROBE)
    monkeypatch.chdir(tmp_path)
    realtime = signal.SIGRTMIN + 6
    previous = {n: signal.signal(n, signal.SIG_IGN) for n in (signal.SIGHUP, realtime)}
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        for extra in ({}, {"PYTHONFAULTHANDLER": "1"}):
            seen = []
            for cold in (False, True):
                out = tmp_path / f"signals-{cold}-{len(extra)}.json"
                env = {**os.environ, **extra, "PROBE_OUT": str(out)}
                if cold:
                    process = subprocess.Popen([sys.executable, "-m", "signal_probe"], env=env)
                else:
                    process = launch_step(sys.executable, "signal_probe", env)
                    assert isinstance(process, WarmStep)
                assert process.wait(timeout=60) == 0
                # Less glibc's own signals 32 and 33, which Python cannot set: a worker forked
                # from a process that started threads has a handler on 33 (docs/design.md).
                glibc = (1 << 31) | (1 << 32)
                fields = json.loads(out.read_text())
                seen.append({k: int(v, 16) & ~glibc for k, v in fields.items()})
            assert seen[0] == seen[1], extra
            assert seen[0]["SigIgn"] & (1 << (realtime - 1))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_forked_worker_reaped_behind_its_back_reads_as_ended(monkeypatch):
    """With SIGCHLD ignored the kernel reaps the worker: poll and wait say it ended (as Popen
    does), so a lost worker is replaced instead of failing the step."""
    from iris_assets.resources.warm_steps import _ForkedWorker

    def reaped(*_args):
        raise ChildProcessError(10, "No child processes")

    monkeypatch.setattr(os, "waitpid", reaped)
    assert _ForkedWorker(999_999).poll() == 0
    assert _ForkedWorker(999_999).wait() == 0


DETACHED_PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    with open("detached.json", "w") as out:
        json.dump({"pid": os.getpid(), "sid": os.getsid(0), "argv": sys.argv[1:],
                   "fds": fds}, out)
    print("to the log", flush=True)
    owner = int(open("owner-running").read())
    while os.path.exists(f"/proc/{owner}"):  # until the owner has exited and been reaped
        time.sleep(0.05)
    with open("after-owner.json", "w") as out:
        json.dump({"ppid": os.getppid()}, out)
    """
)


def test_a_prestarted_worker_forks_steps_like_cold_processes_and_detached_programs_outliving_it(
    tmp_path,
):
    """One owner (each preloads every step's libraries, about 5 CPU s) for both of what a
    prestarted worker does: steps forked like cold processes, then a detached program that
    outlives the owner in a session of its own, holding none of the owner's descriptors; the
    worker itself ends with its owner."""
    (tmp_path / "warm_probe.py").write_text(PROBE)
    (tmp_path / "detached_probe.py").write_text(DETACHED_PROBE)
    owner = textwrap.dedent(
        """
        import json, os, sys, time
        # Open before the worker is forked from here: it must not reach the detached program.
        read_end, write_end = os.pipe()
        os.dup2(read_end, 50)
        os.dup2(write_end, 51)
        with open("owner-running", "w") as running:
            running.write(str(os.getpid()))
        from iris_assets.resources import warm_steps

        warm_steps.prestart()
        worker = warm_steps.WarmWorker.for_python(sys.executable)
        reports = []
        for value in ("first", "second"):
            out = f"report-{value}.json"
            env = {**os.environ, "PROBE_OUT": out, "PROBE_VALUE": value}
            assert warm_steps.launch_step(sys.executable, "warm_probe", env).wait(60) == 0
            reports.append(json.load(open(out)))
        with open("program.log", "ab") as log:
            pid = warm_steps.launch_detached(
                sys.executable, "detached_probe", ["--flag", "value"], dict(os.environ),
                os.getcwd(), log.fileno())
        while not os.path.exists("detached.json"):
            time.sleep(0.05)
        print(json.dumps({"forked": type(worker.process).__name__, "worker": worker.process.pid,
                          "owner": os.getpid(), "reports": reports, "pid": pid,
                          "pipe": [50, 51]}))
        sys.stdout.flush()
        os._exit(0)  # no atexit hook stops the worker: it must notice its owner is gone itself
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", owner], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["forked"] == "_ForkedWorker"
    first, second = result["reports"]
    assert (first["env"], second["env"]) == ("first", "second")
    assert first["main"] == "__main__" and first["leftover"] is None and second["leftover"] is None
    assert len({first["pid"], second["pid"], result["worker"], result["owner"]}) == 4

    report = json.loads((tmp_path / "detached.json").read_text())
    assert report["pid"] == result["pid"] not in (result["owner"], result["worker"])
    assert report["pid"] not in (first["pid"], second["pid"])
    assert report["sid"] == report["pid"]  # its own session: the owner's Ctrl-C is not its
    assert report["argv"] == ["--flag", "value"]
    assert not set(result["pipe"]) & set(report["fds"])
    assert max(report["fds"]) == 3  # stdio and the listing's own descriptor
    deadline = time.monotonic() + 30
    while not (tmp_path / "after-owner.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = json.loads((tmp_path / "after-owner.json").read_text())
    assert after["ppid"] not in (result["owner"], result["worker"])
    assert (tmp_path / "program.log").read_text() == "to the log\n"

    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{result['worker']}") and time.monotonic() < deadline:
        time.sleep(0.1)  # the worker notices its owner is gone within a second
    assert not os.path.exists(f"/proc/{result['worker']}")


def test_without_a_warm_worker_nothing_is_launched_detached(tmp_path, monkeypatch, own_workers):
    from iris_assets.resources.warm_steps import launch_detached

    with open(tmp_path / "log", "ab") as log:
        assert (
            launch_detached(sys.executable, "json.tool", [], os.environ, ".", log.fileno()) is None
        )


GIT_PROBE = textwrap.dedent(
    """
    import json, os, sys
    inherited = sorted(m for m in ("mlflow", "sklearn", "deltalake", "git") if m in sys.modules)
    import git

    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump({"git": git.cmd.Git.GIT_PYTHON_GIT_EXECUTABLE, "inherited": inherited}, out)
    """
)


def test_a_step_forked_from_a_worker_with_every_library_finds_its_own_git(tmp_path):
    """GitPython reads GIT_PYTHON_GIT_EXECUTABLE and runs ``git version`` when it is imported,
    with the env of the process importing it; MLflow's ``start_run`` imports it for a run's git
    lineage. A worker that had imported it would hand every step its own git, not the step's."""
    fake_git = tmp_path / "fake-git"
    fake_git.write_text('#!/bin/sh\necho "$@" >> "$0.calls"\necho "git version 2.43.0"\n')
    fake_git.chmod(0o755)
    (tmp_path / "git_probe.py").write_text(GIT_PROBE)
    out = tmp_path / "report.json"
    # This process's worker (tests/conftest.py), which has also forked this process's steps;
    # one of its own if that one was replaced meanwhile by a worker without every library.
    shared = WarmWorker.for_python(sys.executable, preload_all=True)
    worker = shared if shared.preload_all else WarmWorker(sys.executable, preload_all=True)
    env = {**os.environ, "PROBE_OUT": str(out), "GIT_PYTHON_GIT_EXECUTABLE": str(fake_git)}
    try:
        assert worker.launch("git_probe", env, str(tmp_path)).wait(timeout=120) == 0
    finally:
        if worker is not shared:
            worker.stop()
    # Every library but GitPython was there before the step imported anything.
    assert json.loads(out.read_text()) == {
        "git": str(fake_git),
        "inherited": ["deltalake", "mlflow", "sklearn"],
    }
    assert "version" in (tmp_path / "fake-git.calls").read_text()


def test_every_module_the_worker_loads_ahead_is_installed_for_the_orchestrator():
    """A name that is not installed is skipped without a word (a step that needs it fails as
    it would cold): a module renamed by an upgrade would leave every fork importing it again."""
    import importlib.util

    from iris_assets.steps import warm_worker

    names = {*warm_worker.PRELOAD, *(n for ahead in warm_worker.AHEAD.values() for n in ahead)}
    missing = sorted(name for name in names if importlib.util.find_spec(name) is None)
    assert not missing, missing


def test_every_step_has_its_imports_loaded_ahead():
    """A step with no entry in ``STEP_IMPORTS`` gets nothing loaded for it, and each of its
    forks imports its libraries again, as a cold process would, without a word (the performance
    step did: about 0.1 s of scikit-learn and SciPy per run)."""
    from iris_assets.resources.step_runner import STEPS
    from iris_assets.steps import warm_worker

    for step in STEPS:
        module = f"iris_assets.steps.{step}"
        assert module in warm_worker.STEP_IMPORTS.get(module, ()), module


@pytest.fixture
def find_schema_head(monkeypatch):
    """MLflow's own way to find its schema head, put back in place for the test and after it
    (the worker's warm-ups, run here in the test's process, replace it)."""
    from mlflow.store.db import utils

    find = utils._get_latest_schema_revision
    find = getattr(find, "unpinned", find)
    monkeypatch.setattr(utils, "_get_latest_schema_revision", find)
    return find


def test_the_train_steps_forks_find_mlflows_map_of_installed_packages_made(
    monkeypatch, find_schema_head
):
    """The warm-up the worker does for the train step (``warm_worker.WARM_UPS``) takes effect:
    if MLflow moves the function it calls, every train step would pay it again, silently."""
    from mlflow.utils import requirements_utils

    from iris_assets.steps import warm_worker

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a new process
    monkeypatch.setenv("MPLBACKEND", "Agg")  # what preload sets, undone after this test
    warm_worker.prepare("iris_assets.steps.train")
    assert "scikit-learn" in requirements_utils._MODULES_TO_PACKAGES["sklearn"]


@pytest.mark.parametrize(
    "module",
    ["iris_assets.steps.train", "iris_assets.steps.evaluate", "iris_assets.serving.server"],
)
def test_the_mlflow_steps_forks_find_the_schema_head_and_still_check_each_database(
    module, monkeypatch, tmp_path, find_schema_head
):
    """The head revision the worker finds once (``pin_mlflow_schema_head``) is what parsing
    MLflow's migration scripts finds, it is found without parsing them again, and a database at
    another revision is still refused, as MLflow refuses it without the warm-up."""
    from alembic.script import ScriptDirectory
    from mlflow.exceptions import MlflowException
    from mlflow.store.db import utils
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from iris_assets.steps import warm_worker

    head = find_schema_head()
    monkeypatch.setenv("MPLBACKEND", "Agg")
    warm_worker.prepare(module)
    assert utils._get_latest_schema_revision is not find_schema_head, "no warm-up took effect"

    def parse(*_args, **_kwargs):
        raise AssertionError("the migration scripts were parsed again")

    with monkeypatch.context() as parsing:
        parsing.setattr(ScriptDirectory, "from_config", parse)
        assert utils._get_latest_schema_revision() == head
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    SqlAlchemyStore(uri, str(tmp_path / "artifacts"))  # created at the head
    engine = utils.create_sqlalchemy_engine_with_retry(uri)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'an-older-one'")
    engine.dispose()
    with pytest.raises(MlflowException, match="out-of-date database schema"):
        SqlAlchemyStore(uri, str(tmp_path / "artifacts"))


def test_a_stopped_worker_is_given_up_on_and_never_starts_the_step_later(probe, tmp_path):
    """Stopped (or stuck) past the wait, the worker is passed over; resumed, it finds no go
    and starts nothing: the step, started elsewhere meanwhile, never runs twice."""
    from iris_assets.resources import warm_steps

    probe()  # the probe module is on the path from here on
    worker = WarmWorker(sys.executable)
    out = tmp_path / "never.json"
    env = {**os.environ, "PROBE_OUT": str(out), "PROBE_VALUE": "late"}
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with (
            pytest.raises(warm_steps.WorkerUnavailable, match="unreachable"),
            pytest.MonkeyPatch.context() as patch,
        ):
            patch.setattr(warm_steps, "START_TIMEOUT_SECONDS", 1.0)
            worker.launch("warm_probe", env, str(tmp_path))
        assert time.monotonic() - started < 30
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    # Resumed: it reads the request, finds the connection closed, and forks nothing.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not out.exists():
        time.sleep(0.2)
    assert not out.exists(), "the step ran after its client had given up"
    returncode, report = probe(value="after the stop")
    assert returncode == 0 and report["env"] == "after the stop"
    assert worker.process.poll() is None
    worker.stop()


@pytest.mark.parametrize("reply", ["garbage", '{"nopid": 1}', "[1, 2]", '{"ready": "yes"}'])
def test_a_socket_that_is_not_a_worker_is_passed_over(tmp_path, monkeypatch, reply):
    import socket
    import threading

    from iris_assets.resources.warm_steps import RUN_WORKER_ENV

    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    address = str(tmp_path / "not-a-worker.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(4)

    def answer():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(reply.encode() + b"\n")
            conn.recv(100)

    threading.Thread(target=answer, daemon=True).start()
    named = json.dumps({"python": sys.executable, "address": address, "owner": os.getpid()})
    out = tmp_path / "report.json"
    env = {**os.environ, RUN_WORKER_ENV: named, "PROBE_OUT": str(out), "PROBE_VALUE": "v"}
    process = launch_step(sys.executable, "warm_probe", env)
    try:
        assert process.wait(timeout=60) == 0
        assert json.loads(out.read_text())["env"] == "v"
    finally:
        listener.close()


def test_when_no_worker_can_be_made_the_step_runs_cold(tmp_path, monkeypatch):
    """A socket path too long for AF_UNIX (a deep TMPDIR): the step still runs."""
    import tempfile

    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    monkeypatch.setattr(WarmWorker, "_workers", {})
    out = tmp_path / "report.json"
    env = {**os.environ, "PROBE_OUT": str(out), "PROBE_VALUE": "cold"}
    process = launch_step(sys.executable, "warm_probe", env)
    assert isinstance(process, subprocess.Popen)
    assert process.wait(timeout=60) == 0
    assert json.loads(out.read_text())["env"] == "cold"
