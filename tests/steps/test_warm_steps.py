"""A step forked from the warm worker behaves like `python -m` in a fresh process.

The probe module below stands in for a step: it reports what it sees (pid, env, cwd, a global
it may have been left by an earlier step) and can exit, raise, hang or be killed on request.
Each test gets a shared worker of its own (a unique import-time variable makes it another
version), killed when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from iris_assets.resources.warm_steps import SharedWorker, WarmStep, launch_step
from iris_assets.steps.warm_worker import code_digest

ROOT = Path(__file__).resolve().parents[2]

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


def kill(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        # A dead worker is nobody's child here (it is reparented), so /proc is the test.
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def own_worker(monkeypatch):
    """A shared-worker version of this test's own; its workers are killed afterwards."""
    monkeypatch.setenv("PYTHON_IRIS_WARM_TEST", uuid.uuid4().hex)
    workers: set[int] = set()
    yield workers
    for pid in workers:
        kill(pid)


@pytest.fixture
def probe(tmp_path, monkeypatch, own_worker):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)

    def run(action: str = "", value: str = "x", wait: bool = True):
        out = tmp_path / f"report-{time.monotonic_ns()}.json"
        env = {**os.environ, "PROBE_OUT": str(out), "PROBE_VALUE": value, "PROBE_ACTION": action}
        process = launch_step(sys.executable, "warm_probe", env)
        if isinstance(process, WarmStep):
            own_worker.add(process.worker_pid)
        if not wait:
            return process, out
        returncode = process.wait(timeout=60)
        return returncode, json.loads(out.read_text())

    return run


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


def test_a_warm_step_writes_to_the_orchestrators_stdout(tmp_path, monkeypatch, capfd, own_worker):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PROBE_OUT": str(tmp_path / "r.json")}
    process = launch_step(sys.executable, "warm_probe", env)
    own_worker.add(process.worker_pid)
    assert process.wait(timeout=60) == 0
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


def test_a_killed_worker_is_replaced_and_the_step_still_runs(probe):
    first, _ = probe(wait=False)
    assert first.wait(timeout=60) == 0
    kill(first.worker_pid)
    assert gone(first.worker_pid)
    second, out = probe(value="after the worker died", wait=False)
    assert second.wait(timeout=60) == 0
    assert json.loads(out.read_text())["env"] == "after the worker died"
    assert isinstance(second, WarmStep) and second.worker_pid != first.worker_pid


def test_warm_steps_can_be_turned_off(probe, monkeypatch):
    monkeypatch.setenv("IRIS_WARM_STEPS", "0")
    process, _ = probe(wait=False)
    assert isinstance(process, subprocess.Popen)
    assert process.wait(timeout=60) == 0


def test_garbage_sent_to_the_worker_is_refused_and_the_next_step_still_runs(probe):
    import socket

    process, _ = probe(wait=False)
    process.wait(timeout=60)
    address = SharedWorker.address(code_digest(sys.executable, os.environ))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(address)
        conn.sendall(b"this is not json\n")
        assert conn.recv(100) == b""  # closed without starting anything
    after, out = probe(value="after garbage", wait=False)
    assert after.wait(timeout=60) == 0 and json.loads(out.read_text())["env"] == "after garbage"
    assert after.worker_pid == process.worker_pid  # the same worker, still serving


def test_a_worker_forked_by_prestart_runs_steps_like_a_cold_process_and_ends_with_its_owner(
    tmp_path,
):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    owner = textwrap.dedent(
        """
        import json, os, sys
        from iris_assets.resources import warm_steps

        warm_steps.prestart()
        worker = warm_steps.WarmWorker.for_python(sys.executable)
        reports = []
        for value in ("first", "second"):
            out = f"report-{value}.json"
            env = {**os.environ, "PROBE_OUT": out, "PROBE_VALUE": value}
            assert warm_steps.launch_step(sys.executable, "warm_probe", env).wait(60) == 0
            reports.append(json.load(open(out)))
        print(json.dumps({"forked": type(worker.process).__name__, "worker": worker.process.pid,
                          "owner": os.getpid(), "reports": reports}))
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
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{result['worker']}") and time.monotonic() < deadline:
        time.sleep(0.1)  # the worker notices its owner is gone within a second
    assert not os.path.exists(f"/proc/{result['worker']}")


def orchestrator(tmp_path: Path, env: dict, value: str) -> dict:
    """A separate orchestrator process that runs one probe step and exits."""
    code = textwrap.dedent(
        f"""
        import json, os, sys
        from iris_assets.resources import warm_steps

        env = {{**os.environ, "PROBE_OUT": "report-{value}.json", "PROBE_VALUE": "{value}"}}
        step = warm_steps.launch_step(sys.executable, "warm_probe", env)
        assert step.wait(60) == 0
        report = json.load(open("report-{value}.json"))
        version = warm_steps.code_digest(sys.executable, env)
        address = warm_steps.SharedWorker.address(version)
        print(json.dumps({{"worker": step.worker_pid, "owner": os.getpid(), "address": address,
                          **report}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,  # ends although the worker lives on: it holds none of its output
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_shared_worker_outlives_its_orchestrator_and_serves_the_next(tmp_path, own_worker):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    env = {**os.environ}
    first = orchestrator(tmp_path, env, "first")
    own_worker.add(first["worker"])
    second = orchestrator(tmp_path, env, "second")
    assert first["worker"] == second["worker"]
    assert os.path.exists(f"/proc/{first['worker']}")
    assert (first["env"], second["env"]) == ("first", "second")
    assert first["leftover"] is None and second["leftover"] is None
    assert len({first["pid"], second["pid"], first["owner"], second["owner"]}) == 4


def test_a_worker_of_old_code_never_runs_a_step_and_exits(tmp_path, own_worker):
    """The project's files change under a running shared worker (an edit, a checkout): the
    next orchestrator gets a new worker with the new code, and the old one, even asked
    directly with the version it serves, starts nothing and exits."""
    package = tmp_path / "pkg"
    package.mkdir()
    subprocess.run(["cp", "-r", str(ROOT / "iris_assets"), str(package)], check=True)
    (tmp_path / "warm_probe.py").write_text(
        PROBE
        + "\nimport iris_assets\n"
        + "with open(os.environ['PROBE_OUT'] + '.marker', 'w') as out:\n"
        + "    out.write(str(getattr(iris_assets, 'MARKER', None)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(package)}
    old = orchestrator(tmp_path, env, "old")
    own_worker.add(old["worker"])
    old_address = old["address"]
    assert (tmp_path / "report-old.json.marker").read_text() == "None"

    with open(package / "iris_assets" / "__init__.py", "a") as init:
        init.write('\nMARKER = "new"\n')

    # Asked directly, with the version it was started for: it answers stale and forks nothing.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(old_address)
        request = {"module": "warm_probe", "env": env, "cwd": str(tmp_path)}
        request["version"] = Path(old_address).stem
        request["env"] = {**env, "PROBE_OUT": str(tmp_path / "never.json")}
        fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], fds)
        for fd in fds:
            os.close(fd)
        conn.settimeout(30)
        answer = json.loads(conn.makefile().readline())
    assert "stale" in answer and "pid" not in answer
    assert not (tmp_path / "never.json").exists()
    assert gone(old["worker"])

    fresh = orchestrator(tmp_path, env, "fresh")
    own_worker.add(fresh["worker"])
    assert fresh["worker"] != old["worker"] and fresh["address"] != old_address
    assert (tmp_path / "report-fresh.json.marker").read_text() == "new"


def test_a_shared_worker_exits_when_idle(tmp_path, own_worker):
    (tmp_path / "warm_probe.py").write_text(PROBE)
    env = {**os.environ, "IRIS_WARM_IDLE_SECONDS": "1"}
    first = orchestrator(tmp_path, env, "first")
    own_worker.add(first["worker"])
    assert gone(first["worker"], within=30)
    second = orchestrator(tmp_path, env, "second")  # a new one is started for the next step
    own_worker.add(second["worker"])
    assert second["worker"] != first["worker"] and second["env"] == "second"


def test_a_socket_directory_others_can_enter_is_refused_and_the_step_runs_cold(
    probe, tmp_path, monkeypatch
):
    """Another user who made the directory first (or loosened it) could plant a socket there and
    be sent every step's environment: such a directory is never used."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    planted = runtime / f"iris-warm-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    process, out = probe(value="cold", wait=False)
    assert isinstance(process, subprocess.Popen)
    assert process.wait(timeout=60) == 0 and json.loads(out.read_text())["env"] == "cold"
    assert list(planted.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("opened_up", [False, True], ids=["directory", "socket opened up"])
def test_another_user_cannot_start_a_step_in_the_shared_worker(probe, tmp_path, opened_up):
    """Refused at the 0700 directory; and, were the directory and socket opened up by mistake,
    by the worker itself (it checks the peer's uid)."""
    process, _ = probe(wait=False)
    assert process.wait(timeout=60) == 0
    address = SharedWorker.address(code_digest(sys.executable, os.environ))
    marker = tmp_path / "started-by-nobody.json"
    marker.parent.chmod(0o777)
    folder = Path(address).parent
    if opened_up:
        folder.chmod(0o755)
        os.chmod(address, 0o777)
    try:
        code = as_nobody(address, tmp_path, marker)
    finally:
        folder.chmod(0o700)
    # 1: refused at the directory; 3: connected, and hung up on without a step.
    assert code == (3 if opened_up else 1)
    assert not marker.exists()


def as_nobody(address: str, tmp_path: Path, marker: Path) -> int:
    pid = os.fork()
    if pid == 0:  # as nobody: the socket's directory is closed to it
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(address)
                request = {"module": "warm_probe", "cwd": str(tmp_path)}
                request["env"] = {**os.environ, "PROBE_OUT": str(marker)}
                fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
                socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], fds)
                conn.settimeout(10)
                code = 2 if conn.recv(100) else 3
        except PermissionError:
            code = 1
        except ConnectionError:  # the worker hung up on it
            code = 3
        except OSError:
            code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
