"""How the fake workspace starts a task process: forked from a warm zygote when one can serve it
faithfully, else a cold ``subprocess.Popen`` (what the fake always did).

One zygote (``task_zygote.py``) per test worker, started lazily in the venv of the first task
that runs and the environment variables that task got, and ended with the worker (it also exits
by itself once its owner is gone). A task in another venv, with other environment variables or
whose path brings its own copy of a library the zygote imported, runs cold, as does every task
once the zygote cannot be reached. ``ForkedTask`` answers what the fake asks of a ``Popen``:
``args``, ``pid``, ``poll``, ``wait``, ``send_signal`` and ``kill`` (the child's process group).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.databricks.task_zygote import TASK_ONLY_VARIABLES

ZYGOTE = Path(__file__).with_name("task_zygote.py")
# A zygote on a busy machine imports for seconds; one that has not answered by then is broken.
ANSWER_TIMEOUT_SECONDS = 120.0


class ForkedTask:
    """A task process forked by the zygote, followed through its supervisor's connection."""

    def __init__(self, args: list[str], pid: int, conn: socket.socket, buffered: bytes):
        self.args, self.pid, self.returncode = args, pid, None
        self._conn, self._buffer, self._lock = conn, buffered, threading.Lock()

    def _read(self, timeout: float | None) -> None:
        """Take the returncode line if it arrives within ``timeout`` (None: wait for it)."""
        while self.returncode is None and b"\n" not in self._buffer:
            if not select.select([self._conn], [], [], timeout)[0]:
                return
            chunk = self._conn.recv(4096)
            if not chunk:  # the supervisor is gone without a word: make sure the task is too
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.returncode = -signal.SIGKILL
                break
            self._buffer += chunk
        if self.returncode is None and b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self.returncode = json.loads(line)["returncode"]
        if self.returncode is not None:
            self._conn.close()

    def poll(self) -> int | None:
        with self._lock:
            self._read(0)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # Short reads, each under the lock, so that a poll from another thread never waits long.
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            with self._lock:
                self._read(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the task's process group: the task and whatever it started."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)


class Zygote:
    """The warm task launcher of one venv, for this process."""

    def __init__(self, python: Path, env: dict[str, str]):
        self.python = python
        self.folder = Path(tempfile.mkdtemp(prefix="task-zygote-"))
        self.address = str(self.folder / "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        listener.listen(16)
        own_env = {k: v for k, v in env.items() if k not in TASK_ONLY_VARIABLES}
        given = self.folder / "env.json"
        given.write_text(json.dumps(own_env))
        with open(self.folder / "zygote.log", "wb") as log:
            self.process = subprocess.Popen(
                [str(python), str(ZYGOTE), str(listener.fileno()), str(os.getpid()), str(given)],
                cwd=self.folder,
                env=own_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()],
            )
        listener.close()  # the zygote's copy is the only one: when it dies, connecting fails

    def fork(self, args: list[str], cwd: Path, env: dict[str, str], log) -> ForkedTask | str:
        """The task forked from the zygote, or why it has to run cold."""
        if self.process.poll() is not None:
            return f"the zygote exited ({self.process.returncode})"
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.address)
            request = json.dumps({"argv": args[1:], "cwd": str(cwd), "env": env}).encode()
            socket.send_fds(conn, [request + b"\n"], [log.fileno()])
            buffer = b""
            while b"\n" not in buffer:
                if not select.select([conn], [], [], ANSWER_TIMEOUT_SECONDS)[0]:
                    raise TimeoutError(f"no answer within {ANSWER_TIMEOUT_SECONDS} s")
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("the zygote closed the connection")
                buffer += chunk
        except OSError as error:
            conn.close()
            return f"the zygote cannot be reached: {error}"
        line, _, rest = buffer.partition(b"\n")
        answer = json.loads(line)
        if "cold" in answer:
            conn.close()
            return answer["cold"]
        return ForkedTask(args, answer["pid"], conn, rest)

    def close(self) -> None:
        """SIGTERM: the zygote waits for its ended supervisors (their CPU time is then counted
        in this process's children) and exits; SIGKILL if it does not within seconds. Its
        folder (socket, environment, log) goes with it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


# This process's zygote (one per test worker) and why the last task ran cold, for the tests.
_zygote: Zygote | None = None
_lock = threading.Lock()
last_cold_reason: str | None = None


def zygote_for(python: Path, env: dict[str, str]) -> Zygote:
    global _zygote
    with _lock:
        if _zygote is None:
            _zygote = Zygote(python, env)
            atexit.register(_zygote.close)
        return _zygote


def forget(zygote: Zygote) -> None:
    global _zygote
    with _lock:
        if _zygote is zygote:
            zygote.close()
            _zygote = None


def launch(args: list[str], cwd: Path, env: dict[str, str], log) -> ForkedTask | subprocess.Popen:
    """Start ``args`` (``[python, task_process.py, ...]``) with this cwd, env and log as stdout
    and stderr: forked from this process's zygote of that python, else cold."""
    global last_cold_reason
    zygote = zygote_for(Path(args[0]), env)
    if Path(args[0]) != zygote.python:
        reason = f"the task runs in {args[0]}, the zygote in {zygote.python}"
    else:
        forked = zygote.fork(args, cwd, env, log)
        if isinstance(forked, ForkedTask):
            last_cold_reason = None
            return forked
        reason = forked
        if zygote.process.poll() is not None:
            forget(zygote)  # the next task starts another one
    last_cold_reason = reason
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
