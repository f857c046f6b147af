"""The servers the other serving tests use are forked from a warm worker (conftest): such a
server must be, for everything those tests check, the process a cold ``python -m`` start is."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

from iris_assets.resources.warm_steps import WarmStep


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def _bit(signum: int) -> int:
    return 1 << (signum - 1)


def _fd_kinds(pid: int, port: int) -> list[str]:
    """What each open descriptor is, without inode numbers. Standard input, output and error are
    named by number (they are what a Popen child is given). Past those, a descriptor's number is
    whatever was free when it opened: the registry's sqlite connections land on 7 and 8, or on 7
    and 9 when a transient one held 8 for a moment, so the numbers are left out there.
    Regular files (other than the server's own log) are named by path and counted once per path,
    since how many connections the registry's pool holds depends on the moment; a file inherited
    from the warm worker is a path the cold start lacks, so it shows. A server's TCP sockets on
    its own port are left out too (a health probe's connection may not be closed yet). Every other
    socket, pipe and event descriptor is counted, so one inherited from the worker shows."""
    own = _sockets_on_port(pid, port)
    log = Path(os.readlink(f"/proc/{pid}/fd/1"))
    kinds, files = [], set()
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            mode = os.stat(f"/proc/{pid}/fd/{fd}").st_mode
        except FileNotFoundError:  # a transient descriptor closed while being listed
            continue
        if target.startswith("socket:[") and target[len("socket:[") : -1] in own:
            continue
        if ":" in target:
            kind = target.split(":")[0]
        elif Path(target) == log:  # first: the tests' folders may be on /dev/shm
            kind = "log"
        elif target.startswith("/dev/") and not stat.S_ISREG(mode):
            kind = target
        else:
            files.add(f"file:{target}")
            continue
        kinds.append(f"{fd}:{kind}" if int(fd) <= 2 else kind)
    return sorted(kinds) + sorted(files)


def _sockets_on_port(pid: int, port: int) -> set[str]:
    """The inodes of the TCP sockets in ``pid``'s network namespace bound to ``port``."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def test_a_forked_server_is_the_process_a_cold_start_is(start_server, tmp_path) -> None:
    warm = start_server(version="2")
    cold = start_server(version="2", cold=True)
    assert isinstance(warm.process, WarmStep)
    assert isinstance(cold.process, subprocess.Popen)

    warm_status, cold_status = _status(warm.process.pid), _status(cold.process.pid)
    # Ignored, blocked and caught signals: SIGPIPE ignored as in any fresh interpreter.
    for field in ("SigIgn", "SigBlk", "SigCgt"):
        assert warm_status[field] == cold_status[field], field
    assert int(warm_status["SigIgn"], 16) & _bit(signal.SIGPIPE)
    # The same session and process group (this worker's, as a Popen child is in) and folder.
    for pid in (warm.process.pid, cold.process.pid):
        assert os.getsid(pid) == os.getsid(0)
        assert os.getpgid(pid) == os.getpgid(0)
        assert Path(f"/proc/{pid}/cwd").resolve() == tmp_path.resolve()
    # Nothing of the worker's is held open: the same kinds of descriptors, stdout to the log.
    assert _fd_kinds(warm.process.pid, warm.port) == _fd_kinds(cold.process.pid, cold.port)
    assert Path(os.readlink(f"/proc/{warm.process.pid}/fd/1")) == warm.log

    # Both stop on SIGTERM with the status a Popen would report.
    for server in (warm, cold):
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert server.process.returncode == 0


def test_a_forked_server_keeps_the_signals_its_orchestrator_ignores_and_blocks(
    start_server,
) -> None:
    """Under ``nohup`` the orchestrator ignores SIGHUP, and a cold start keeps it ignored across
    ``exec`` (blocked signals too): a forked server that reset it would die on a hang-up the
    cold one survives."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        warm = start_server(version="2")
        cold = start_server(version="2", cold=True)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
        signal.signal(signal.SIGHUP, previous)
    assert isinstance(warm.process, WarmStep)
    warm_status, cold_status = _status(warm.process.pid), _status(cold.process.pid)
    for field in ("SigIgn", "SigBlk", "SigCgt"):
        assert warm_status[field] == cold_status[field], field
    assert int(warm_status["SigIgn"], 16) & _bit(signal.SIGHUP)
    assert int(warm_status["SigBlk"], 16) & _bit(signal.SIGUSR2)
    # Once the orchestrator takes SIGHUP again, the next server does too: nothing is kept.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        again = start_server(version="2")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not int(_status(again.process.pid)["SigIgn"], 16) & _bit(signal.SIGHUP)
    for server in (warm, cold, again):
        server.process.send_signal(signal.SIGHUP)
    assert again.process.wait(30) == -signal.SIGHUP
    assert warm.process.poll() is None and cold.process.poll() is None


def test_a_forked_server_killed_reports_the_signal(start_server) -> None:
    warm = start_server()
    assert isinstance(warm.process, WarmStep)
    assert warm.process.poll() is None
    warm.process.kill()
    assert warm.process.wait(30) == -signal.SIGKILL
    assert warm.process.poll() == -signal.SIGKILL
