"""The processes one `iris dev` leaves on a home: found by a marker every child inherits.

`dg dev` starts a webserver, a daemon and a code server as its children. If `dg dev` itself is
killed (SIGKILL, a closed terminal) they keep running with parent 1 and no lock, so a lock file
alone cannot tell that a home's daemon is alive. `iris dev` therefore puts ``IRIS_DEV_HOME`` in
the environment it execs `dg dev` with; every descendant inherits it, and this module finds them
by reading ``/proc/<pid>/environ`` (Linux; elsewhere nothing is found and the lock alone holds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MARKER = "IRIS_DEV_HOME"


def marker_entry(env_home: Path) -> bytes:
    return f"{MARKER}={Path(env_home).resolve()}".encode()


def dev_processes(env_home: Path) -> dict[int, str]:
    """Live processes started by an `iris dev` on ``env_home``: pid -> command line."""
    wanted, found = marker_entry(env_home), {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if wanted not in environ:
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie holds nothing: it only waits for its parent to reap it
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # gone meanwhile, or another user's
        found[int(entry.name)] = command.strip()
    return found


def describe(processes: dict[int, str]) -> str:
    return "; ".join(f"pid {pid}: {command[:80]}" for pid, command in sorted(processes.items()))


def stop_dev_processes(env_home: Path, timeout: float = 30) -> list[int]:
    """SIGTERM every `iris dev` process of ``env_home``, SIGKILL what is left after ``timeout``."""
    stopped = sorted(dev_processes(env_home))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in dev_processes(env_home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while dev_processes(env_home) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not dev_processes(env_home):
            break
    return stopped
