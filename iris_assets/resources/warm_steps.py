"""Warm steps, orchestrator side: one warm worker per orchestrator process runs the local steps.

``iris_assets.steps.warm_worker`` loads a step's heavy imports before forking it a fresh child, so
the second and later steps of a run start in milliseconds instead of paying ~2.5 s of imports
each (a worker started for one step costs what a cold step would; ``prestart`` loads everything
ahead for a caller that knows several steps follow). What the runner gets
back behaves like ``subprocess.Popen`` (``pid``, ``wait``, ``terminate``, ``kill``,
``returncode``), so the Pipes session around it is the same as for a cold subprocess.

The worker is started on the first step, by this process, for this Python; it exits when this
process does. If it cannot be reached (killed, say) it is started again, and if that fails too
the step runs as a cold subprocess: a lost worker costs time, never a step.
``IRIS_WARM_STEPS=0`` turns warm steps off.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

WARM_STEPS_ENV = "IRIS_WARM_STEPS"
WORKER_MODULE = "iris_assets.steps.warm_worker"
# Set by ``start_run_worker`` in a run's orchestrator for the step processes it starts.
RUN_WORKER_ENV = "IRIS_RUN_WARM_WORKER"
# How long a worker may take to import a step's libraries and say it is ready (MLflow on a
# loaded machine takes seconds, not minutes); past it the step is started elsewhere.
START_TIMEOUT_SECONDS = 120.0


def warm_steps_enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(WARM_STEPS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class WorkerUnavailable(RuntimeError):
    """The warm worker could not take the step; nothing of the step has started."""


def _stdio() -> list[int]:
    """This process's stdin, stdout and stderr as the step should inherit them."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:  # closed (CI without stdin, say): the step gets /dev/null there
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _signals_an_exec_keeps() -> dict[str, list[int]]:
    """What a program this thread starts with ``Popen`` inherits of its signals: the ones
    ignored here (``nohup`` ignores SIGHUP, say) and this thread's blocked mask. Handlers are
    reset by ``exec``; Popen resets SIGPIPE and SIGXFSZ, which Python ignores, itself."""
    reset_by_popen = {signal.SIGPIPE, getattr(signal, "SIGXFSZ", signal.SIGPIPE)}
    # What Python knows of: a disposition set below it (ctypes, a C library) is not seen.
    ignored = [
        int(signum)
        for signum in signal.valid_signals()
        if signum not in reset_by_popen and _ignored(signum)
    ]
    blocked = sorted(int(signum) for signum in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return {"ignored": ignored, "blocked": blocked}


def _ignored(signum: signal.Signals) -> bool:
    try:
        return signal.getsignal(signum) is signal.SIG_IGN
    except (OSError, ValueError):
        return False


class _Lines:
    """JSON lines from the worker, readable with a timeout (a socket file object is not)."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.buffer = b""

    def next(self, timeout: float | None = None) -> dict | None:
        """The next message; None when the other side closed; TimeoutError past ``timeout``."""
        self.conn.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


class WarmStep:
    """A step running in the warm worker, seen like a ``subprocess.Popen``."""

    def __init__(self, lines: _Lines, pid: int, args: list[str]):
        self._lines = lines
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        try:
            message = self._lines.next(timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(self.args, timeout) from None
        if message is not None:
            self.returncode = int(message["returncode"])
        else:  # the supervisor itself was killed: the step's status is lost with it
            self.returncode = -signal.SIGKILL
        self._lines.conn.close()
        return self.returncode

    def poll(self) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.wait(timeout=0.001)
        return None

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class WarmWorker:
    """The warm worker of one Python executable, owned by this process."""

    _lock = threading.Lock()
    _workers: dict[tuple[str, int], WarmWorker] = {}

    def __init__(
        self,
        python: str,
        preload_all: bool = False,
        forked: bool = False,
        preload_steps: Sequence[str] = (),
    ):
        self.python = python
        self.preload_all = preload_all  # started with every step's libraries (``--preload all``)
        self._folder = tempfile.TemporaryDirectory(prefix="iris-warm-")
        self.address = str(Path(self._folder.name) / "worker.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(self.address)
            listener.listen(64)
            if forked:
                self.process = _fork_worker(listener)
                return
            # The worker inherits the listening socket: a step sent while it is still importing
            # waits in the backlog, so there is nothing to poll for.
            self.process = subprocess.Popen(
                [
                    python,
                    "-m",
                    WORKER_MODULE,
                    str(listener.fileno()),
                    str(os.getpid()),
                    *(["--preload", "all"] if preload_all else []),
                    *(["--preload-steps", ",".join(preload_steps)] if preload_steps else []),
                ],
                pass_fds=(listener.fileno(),),
                stdin=subprocess.DEVNULL,
            )

    @classmethod
    def for_python(cls, python: str, preload_all: bool = False) -> WarmWorker:
        """This process's worker for ``python``, started if there is none (or it died).
        ``preload_all``: a new worker imports every step's libraries before its first step."""
        key = (python, os.getpid())  # a forked orchestrator starts its own
        with cls._lock:
            worker = cls._workers.get(key)
            if worker is None or worker.process.poll() is not None:
                if worker is not None:
                    worker.stop()
                worker = cls._workers[key] = cls(python, preload_all)
            return worker

    @classmethod
    def forget(cls, worker: WarmWorker) -> None:
        with cls._lock:
            for key, known in list(cls._workers.items()):
                if known is worker:
                    del cls._workers[key]
        worker.stop()

    def launch(
        self,
        module: str,
        env: Mapping[str, str],
        cwd: str,
        argv: list[str] | None = None,
        stdio: list[int] | None = None,
        detach: bool = False,
    ) -> WarmStep:
        """Fork ``python -m module *argv``; ``stdio`` (three descriptors, closed here) defaults
        to this process's. ``detach``: a session of its own that outlives the worker; only its
        pid is meaningful in what is returned."""
        return _launch(self.address, module, env, cwd, argv, stdio, detach)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._folder.cleanup()


def _launch(
    address: str,
    module: str,
    env: Mapping[str, str],
    cwd: str,
    argv: list[str] | None = None,
    stdio: list[int] | None = None,
    detach: bool = False,
) -> WarmStep:
    """``WarmWorker.launch`` on the worker listening at ``address``."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    message = {
        "module": module,
        "env": dict(env),
        "cwd": cwd,
        "argv": list(argv or ()),
        "signals": _signals_an_exec_keeps(),
    }
    if detach:
        message["detach"] = True
    request = json.dumps(message).encode() + b"\n"
    stdio = _stdio() if stdio is None else stdio
    lines = _Lines(conn)
    try:
        conn.connect(address)
        socket.send_fds(conn, [request], stdio)
        # A worker that is stopped, stuck, or not a worker at all must not hang or fail the
        # step: past this wait the caller starts it elsewhere, and this worker, told no go,
        # starts nothing.
        if lines.next(timeout=START_TIMEOUT_SECONDS) != {"ready": True}:
            raise ValueError("not a warm step worker's answer")
        conn.sendall(b'{"go": true}\n')
        started = lines.next(timeout=START_TIMEOUT_SECONDS)
        pid = started["pid"] if isinstance(started, dict) else None
        if type(pid) is not int or pid <= 0:
            raise ValueError(f"not a warm step worker's answer: {started!r}")
    except (OSError, ValueError, RecursionError) as error:  # TimeoutError is an OSError
        conn.close()
        raise WorkerUnavailable(f"warm step worker unreachable: {error}") from None
    finally:
        for fd in stdio:
            if fd > 2:
                os.close(fd)
    if detach:
        conn.close()  # nothing more comes: the worker does not wait for a detached program
    return WarmStep(lines, pid, ["python", "-m", module])


class _ForkedWorker:
    """The ``Popen`` calls WarmWorker makes (poll, kill, wait), for a worker forked from here."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # SIGCHLD ignored here: reaped already, status unknown
                pid, status = self.pid, 0  # as Popen answers then
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # SIGCHLD ignored here (see poll)
                status = 0
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _fork_worker(listener: socket.socket) -> _ForkedWorker:
    """Import every step's libraries here, then fork the worker from this process: the
    orchestrator needs MLflow, pandas, pyarrow and deltalake itself, so they are imported once
    for both. Only while this process has nothing but imports (no threads, no open runs)."""
    from iris_assets.steps import warm_worker

    warm_worker.prepare()
    parent = os.getpid()
    for stream in (sys.stdout, sys.stderr):  # or the worker's steps would print it again
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        try:
            atexit._clear()  # this process's exit handlers (stopping this very worker) are not its
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            warm_worker.serve(listener, parent)
        finally:
            os._exit(0)
    return _ForkedWorker(pid)


def prestart(python: str = sys.executable, env: Mapping[str, str] = os.environ) -> None:
    """Start this process's warm worker now rather than on the first step. For this process's
    own Python it is forked from here after importing what every step needs (the caller, the
    demo, imports most of it anyway), else started with everything preloaded. Call it before
    anything starts a thread. Does nothing with warm steps off."""
    if not warm_steps_enabled(env):
        return
    key = (python, os.getpid())
    if python == sys.executable and threading.active_count() == 1:
        with WarmWorker._lock:
            if key not in WarmWorker._workers:
                WarmWorker._workers[key] = WarmWorker(python, forked=True)
        return
    WarmWorker.for_python(python, preload_all=True)


def launch_detached(
    python: str, module: str, argv: list[str], env: Mapping[str, str], cwd: str, log: int
) -> int | None:
    """Fork ``python -m module *argv`` detached (its own session, outliving this process) from
    this process's warm worker, stdout and stderr to the descriptor ``log``: its pid, or None
    when this process has no live warm worker for ``python`` (none is started for this: the
    caller starts the program cold, which costs what starting a worker would)."""
    if not warm_steps_enabled(env):
        return None
    with WarmWorker._lock:
        worker = WarmWorker._workers.get((python, os.getpid()))
    if worker is None or worker.process.poll() is not None:
        return None
    stdio = [os.open(os.devnull, os.O_RDONLY), os.dup(log), os.dup(log)]
    try:
        return worker.launch(module, env, cwd, argv=argv, stdio=stdio, detach=True).pid
    except WorkerUnavailable:
        return None


def start_run_worker(step_modules: Sequence[str], python: str = sys.executable) -> str | None:
    """Start this run's warm worker now, at the run's start, importing what the steps
    ``step_modules`` will need, and name it in this process's environment: the step processes
    the multiprocess executor starts inherit the name and fork their steps from it, so the
    imports overlap their start-up instead of following it. Steps run in this process find it
    as theirs. Its address, or None (warm steps off, or no steps)."""
    if not warm_steps_enabled() or not step_modules:
        return None
    key = (python, os.getpid())
    with WarmWorker._lock:
        worker = WarmWorker._workers.get(key)
        if worker is None or worker.process.poll() is not None:
            worker = WarmWorker._workers[key] = WarmWorker(python, preload_steps=step_modules)
    # Replaces a name inherited from elsewhere (a shell that exported it, an outer run).
    named = {"python": python, "address": worker.address, "owner": os.getpid()}
    os.environ[RUN_WORKER_ENV] = json.dumps(named)
    return worker.address


def _run_worker_address(python: str, env: Mapping[str, str]) -> str | None:
    """The run's worker named in ``env``, if it is one for ``python`` started by this process
    or by the one that started this process (the run's orchestrator, whose code this is):
    a name inherited from anywhere else is passed over."""
    try:
        named = json.loads(env.get(RUN_WORKER_ENV) or "null")
    except (ValueError, RecursionError):
        return None
    if not isinstance(named, dict) or named.get("python") != python:
        return None
    if named.get("owner") not in (os.getpid(), os.getppid()):
        return None
    address = named.get("address")
    return address if isinstance(address, str) else None


def launch_step(python: str, module: str, env: Mapping[str, str]) -> WarmStep | subprocess.Popen:
    """Start ``python -m module`` with ``env``: forked from the run's warm worker when the run
    named one (``start_run_worker``), else from this process's, or cold."""
    cwd = os.getcwd()
    if warm_steps_enabled(env):
        shared = _run_worker_address(python, env)
        if shared is not None:
            try:
                return _launch(shared, module, env, cwd)
            except WorkerUnavailable:
                pass  # the run's worker is gone: this process starts its own, as before
        for _ in range(2):
            try:
                worker = WarmWorker.for_python(python)
            except OSError:  # no worker can be made here (a socket path too long, say): cold
                break
            try:
                return worker.launch(module, env, cwd)
            except WorkerUnavailable:
                WarmWorker.forget(worker)
    return subprocess.Popen([python, "-m", module], env=dict(env), cwd=cwd)


@atexit.register
def _stop_workers() -> None:
    for worker in list(WarmWorker._workers.values()):
        with contextlib.suppress(Exception):
            worker.stop()
