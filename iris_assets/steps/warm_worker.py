"""The warm step worker: one process that has imported the steps' heavy libraries and forks a
fresh child for every local step.

Each step imports MLflow, scikit-learn, pandas, pyarrow and deltalake, about 2.5 s of CPU; a new
interpreter per step pays that every time. The worker imports what a step needs before forking
it (everything at once when started with ``--preload all``), so that is paid once per
orchestrator process, and runs each step in ``os.fork()`` of its pristine self. The child is a
process of its own, as ``python -m iris_assets.steps.<name>`` would be: a step that raises,
exits or is killed cannot take the worker or the orchestrator with it, and nothing one step does
is seen by the next (each starts from the same untouched copy: the worker itself only imports).

The orchestrator side is ``iris_assets.resources.warm_steps``. The protocol, one Unix-socket
connection per step: the client sends one JSON line ``{"module", "env", "cwd", "version"}`` with
its stdin, stdout and stderr attached (``SCM_RIGHTS``); the worker forks a supervisor that forks
the step, answers ``{"pid": N, "worker": W}`` once it runs and ``{"returncode": R}`` when it has
ended (negative: killed by that signal), exactly as ``subprocess.Popen.returncode`` would say.

A shared worker (``--shared``) outlives the orchestrator that started it, so a
``dagster asset materialize`` finds its imports done by the previous one. It serves one code
version only (``code_digest``: the project's source files, the installed distributions, the
Python and the import-time environment, computed before anything of the project is imported):
a request for another version, or any request once the files on disk no longer match the
version it started with, is answered ``{"stale": reason}`` and never forked, and the worker then
exits. It also exits after ``idle`` seconds without a request, or when its socket is no longer
the one at its address. Only processes of its own user may connect (``SO_PEERCRED``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

# What each step imports (some inside its functions), loaded in the worker before it forks the
# step: a worker started for one step pays what that step would pay cold, and every later step
# of the same run finds it loaded. ``--preload all`` (the demo's prestart) loads every step's set
# before the first request. A module that is not installed is skipped: the step that needs it
# fails as it would in a cold process.
COMMON = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.parquet",
    "deltalake",
    "dagster_pipes",
)
MLFLOW = (
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)
STEP_IMPORTS = {
    "iris_assets.steps.ingest": (*COMMON, "sklearn.datasets", "iris_assets.steps.ingest"),
    "iris_assets.steps.train": (*COMMON, *MLFLOW, "iris_assets.steps.train"),
    "iris_assets.steps.evaluate": (
        *COMMON,
        *MLFLOW,
        "sklearn.metrics",
        "matplotlib",
        "matplotlib.pyplot",
        "iris_assets.steps.evaluate",
    ),
    "iris_assets.steps.score": (*COMMON, *MLFLOW, "iris_assets.steps.score"),
}
PRELOAD = tuple(dict.fromkeys(name for names in STEP_IMPORTS.values() for name in names))

MAX_REQUEST_BYTES = 1 << 20
REQUEST_TIMEOUT_SECONDS = 30.0
# Environment variables that change what an import does (search path, native thread pools,
# plotting backend): a worker imported under other values is another version.
IMPORT_ENV_PREFIXES = ("PYTHON", "LD_", "OMP_", "OPENBLAS_", "MKL_", "MPL", "VIRTUAL_ENV")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DIGEST_CHECK_SECONDS = 5.0


def code_digest(python: str, env: Mapping[str, str]) -> str:
    """The version of the code a step started now with ``python`` and ``env`` would run.

    Everything a fresh ``python -m`` would read differently: this project's source files
    (content, not times), the names of the installed distributions (they carry the versions), the
    interpreter and the environment variables that affect imports.
    """
    digest = hashlib.sha256()
    digest.update(f"{os.path.abspath(python)}\0{sys.version}\0{PACKAGE_DIR}\0".encode())
    for name in sorted(k for k in env if k.startswith(IMPORT_ENV_PREFIXES)):
        digest.update(f"{name}={env[name]}\0".encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for folder in sorted({p for p in sys.path if p.endswith("site-packages")}):
        with contextlib.suppress(OSError):
            digest.update("\0".join(sorted(os.listdir(folder))).encode())
    return digest.hexdigest()[:32]


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[2]


def preload(names: tuple[str, ...] = PRELOAD) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in names:
        if name not in sys.modules:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """The request and its stdio descriptors; ValueError (descriptors closed) if malformed."""
    data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST_BYTES, 3)
    try:
        while not data.endswith(b"\n"):
            more = conn.recv(MAX_REQUEST_BYTES)
            if not more:
                raise ConnectionError("the client closed the connection before its request ended")
            data += more
        request = json.loads(data)
        if not (isinstance(request, dict) and isinstance(request.get("module"), str)):
            raise ValueError("a request is a JSON object with a module")
        if len(fds) != 3:
            raise ValueError("a request comes with stdin, stdout and stderr")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def run_step(request: dict, fds: list[int]) -> None:
    """In the forked child: become ``python -m <module>`` with the client's env and stdio."""
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]
        sys.argv = [request["module"]]
        # As under `python -m`: the module runs as __main__, not as the copy preloaded here.
        sys.modules.pop(request["module"], None)
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def supervise(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the supervisor: start the step, report its pid, wait for it, report how it ended."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # waitpid needs the child's status
        pid = os.fork()
        if pid == 0:
            conn.close()
            run_step(request, fds)
        for fd in fds:
            os.close(fd)
        send(conn, {"pid": pid, "worker": os.getppid()})
        _, status = os.waitpid(pid, 0)
        send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
    finally:
        os._exit(0)


class Version:
    """The code version a shared worker serves, and whether the files still match it."""

    def __init__(self, value: str, python: str, env: Mapping[str, str]):
        self.value, self._python, self._env = value, python, dict(env)

    def current(self) -> bool:
        return code_digest(self._python, self._env) == self.value


class Shared:
    """What ends a shared worker: idleness, its address taken or gone, its code changed."""

    def __init__(self, address: str, version: Version, idle_seconds: float):
        self.address, self.version, self.idle_seconds = address, version, idle_seconds
        self.inode = os.stat(address).st_ino
        self.last_request = self.last_digest_check = time.monotonic()

    def ending(self) -> bool:
        now = time.monotonic()
        if now - self.last_request > self.idle_seconds:
            return True
        try:
            if os.stat(self.address).st_ino != self.inode:
                return True  # another worker took the address: this one is unreachable
        except OSError:
            return True
        if now - self.last_digest_check > DIGEST_CHECK_SECONDS:
            self.last_digest_check = now
            return not self.version.current()
        return False

    def release(self) -> None:
        """Give up the address (if it is still this worker's): new clients start a new worker."""
        with contextlib.suppress(OSError):
            if os.stat(self.address).st_ino == self.inode:
                os.unlink(self.address)


def handle(listener: socket.socket, conn: socket.socket, shared: Shared | None) -> bool:
    """Serve one connection; False when this worker must stop (its code changed)."""
    conn.settimeout(REQUEST_TIMEOUT_SECONDS)  # a client that never sends cannot stall it
    try:
        if peer_uid(conn) != os.getuid():
            raise ValueError("only this worker's own user may start steps")
        request, fds = read_request(conn)
        conn.settimeout(None)
    except (OSError, ValueError):
        conn.close()  # the client gave up or sent garbage: it sees a closed connection
        return True
    try:
        if shared is not None:
            shared.last_request = time.monotonic()
            if request.get("version") != shared.version.value:
                send(conn, {"stale": "the worker serves another code version"})
                return True
            if not shared.version.current():
                send(conn, {"stale": "the code changed since the worker started"})
                return False
        # Here, not in the child: what this step imports stays loaded for the next ones.
        preload(STEP_IMPORTS.get(request["module"], ()))
        if shared is not None and not shared.version.current():
            # Changed while importing: what was just imported may be of either version.
            send(conn, {"stale": "the code changed while the worker imported it"})
            return False
        if os.fork() == 0:
            listener.close()
            supervise(conn, request, fds)
        return True
    except OSError:
        return True
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        conn.close()


def serve(listener: socket.socket, parent: int | None, shared: Shared | None = None) -> None:
    """Accept step requests until the orchestrator that started this worker is gone (``parent``)
    or, for a shared worker, until it is idle, replaced or out of date."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle
    try:
        while (os.getppid() == parent) if parent is not None else not shared.ending():
            ready, _, _ = select.select([listener], [], [], 1.0)
            if ready:
                conn, _ = listener.accept()
                if not handle(listener, conn, shared):
                    break
    finally:
        if shared is not None:
            shared.release()
            drain(listener, shared)


def drain(listener: socket.socket, shared: Shared) -> None:
    """Answer the clients that connected before the address was given up: each is told to start
    a new worker rather than left waiting on a socket nobody accepts from."""
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            break
        with contextlib.suppress(OSError), conn:
            conn.settimeout(1.0)
            send(conn, {"stale": "the worker is stopping"})
    listener.close()


def main() -> None:
    if sys.argv[1] == "--shared":
        main_shared(*sys.argv[2:])
        return
    listener_fd, parent = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket(fileno=listener_fd)
    if sys.argv[3:] == ["--preload", "all"]:
        preload()
    serve(listener, parent)


def main_shared(listener_fd: str, address: str, version: str, idle: str, *rest: str) -> None:
    """A worker of its own: detached from the client that started it (which waits only for this
    first process), in a session of its own, serving until ``Shared`` says it is done."""
    listener = socket.socket(fileno=int(listener_fd))
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    # Computed before importing anything of the project: the worker can only be older than the
    # files it has loaded, never newer, and each request checks the files again.
    own = Version(code_digest(sys.executable, os.environ), sys.executable, os.environ)
    if own.value != version:
        os._exit(3)  # the files changed since the client computed the version: serve nothing
    shared = Shared(address, own, float(idle))
    if list(rest) == ["--preload", "all"]:
        preload()
    serve(listener, None, shared)
    os._exit(0)


if __name__ == "__main__":
    main()
