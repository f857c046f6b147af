"""The fake workspace's warm task launcher: one process in a task venv that has imported the
steps' third-party libraries and forks a fresh child for each task (``task_launcher`` starts it).

Usage: ``python task_zygote.py <listening socket fd> <owner pid> <env.json>`` (the environment
variables it was started with, as given, before start-up's locale coercion); it exits when its
owner does.

Each task process costs 2-4 CPU s of imports (pandas, scikit-learn, MLflow, ...) from scratch;
here they are paid once per test worker. Only libraries of the task venv are imported: the
zygote runs without the task's ``PYTHONPATH`` (the deployed wheel) or its synced code, so no
module of the project can be loaded here, and a child imports the deployed code as a cold task
would. A child is the cold process in all the fake promises: its own pid and process group, the
task's environment variables, cwd, ``sys.argv`` and ``sys.path`` (the step file's folder, then
the ``PYTHONPATH`` overlay, then the venv's), stdout and stderr on the run's log, Python's default
signal handling, and it runs ``task_process.py`` (the ``/Volumes`` mapping) as ``__main__``.

A request the zygote cannot serve faithfully is answered ``{"cold": why}`` and the launcher runs
the cold process instead: environment variables other than the per-task ones differ from those
the libraries were imported under, or the task's path holds a module of the same name as one
imported here (a wheel or synced code that brings its own version would be shadowed).

The protocol, one Unix-socket connection per task: one JSON line ``{"argv", "env", "cwd"}`` with
the log's descriptor attached (``SCM_RIGHTS``); the answer is ``{"cold": why}``, or ``{"pid": N}``
once the child runs and ``{"returncode": R}`` when it ended (negative: the signal that killed it,
as ``subprocess.Popen.returncode``).
"""

import atexit
import contextlib
import gc
import importlib
import importlib.machinery
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback

# What the steps import from the task venv (the environment's libraries and the platform's
# stand-ins), never the project's modules. One that is not installed is skipped.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.parquet",
    "deltalake",
    "dagster_pipes",
    "sklearn.datasets",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)
# Read per task (by task_process.py, or by the interpreter at start-up: the overlay), so the
# zygote starts without them.
TASK_ONLY_VARIABLES = ("FAKE_WORKSPACE_VOLUMES", "FAKE_WORKSPACE_DENIED", "PYTHONPATH")
# Free to differ from the zygote's: those, and PYTEST_CURRENT_TEST, the test that submitted the
# task (the zygote has one too: it starts under a test); MLflow's testing checks read it when
# called, not on import.
PER_TASK_VARIABLES = (*TASK_ONLY_VARIABLES, "PYTEST_CURRENT_TEST")
MAX_REQUEST_BYTES = 1 << 20


def preload() -> set[str]:
    """Import PRELOAD; the top-level names of every module that brought in beyond the stdlib."""
    before = set(sys.modules)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    stdlib = set(sys.stdlib_module_names)
    return {name.partition(".")[0] for name in set(sys.modules) - before} - stdlib


def task_path(request: dict) -> list[str]:
    """The path a cold ``python task_process.py`` would start with: its folder, the
    ``PYTHONPATH`` entries, then the interpreter's own (``task_process`` puts the step file's
    folder first itself)."""
    overlay = [
        os.path.abspath(entry)
        for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep)
        if entry
    ]
    script_folder = os.path.dirname(os.path.abspath(request["argv"][0]))
    rest = [entry for entry in sys.path[1:] if entry not in overlay]
    return list(dict.fromkeys([script_folder, *overlay, *rest]))


def cold_reason(
    request: dict, given_env: dict[str, str], effective: dict[str, str], imported: set[str]
) -> str | None:
    """Why a forked child would not be the process the task would get, if it would not.

    A variable that start-up or an import sets here (``effective``: LC_CTYPE, scikit-learn's
    KMP_DUPLICATE_LIB_OK) may be absent from the task's, or have the value it was set to."""
    shared = {k: v for k, v in request["env"].items() if k not in PER_TASK_VARIABLES}
    own = {k: v for k, v in given_env.items() if k not in PER_TASK_VARIABLES}
    differing = sorted(
        name
        for name in set(shared) | set(own)
        if shared.get(name) != own.get(name)
        and (name in given_env or shared.get(name) != effective.get(name))
    )
    if differing:
        return f"environment variables differ from the zygote's: {differing}"
    python_file = request["argv"][2] if len(request["argv"]) > 2 else request["argv"][0]
    searched = [os.path.dirname(os.path.abspath(python_file)), *task_path(request)]
    searched = [entry for entry in searched if entry not in sys.path[1:]]
    shadowed = sorted(
        name for name in imported if importlib.machinery.PathFinder.find_spec(name, searched)
    )
    if shadowed:
        return f"the task's path brings its own {shadowed}, imported here from the venv"
    return None


# The request framing mirrors iris_assets.steps.warm_worker's; importing it would load the
# project here, which must come from each task's deployed wheel instead.
def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST_BYTES, 1)
    try:
        while not data.endswith(b"\n"):
            more = conn.recv(MAX_REQUEST_BYTES)
            if not more:
                raise ConnectionError("the launcher closed the connection mid-request")
            data += more
        request = json.loads(data)
        if len(fds) != 1:
            raise ValueError("a request comes with the log's descriptor")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def run_task(request: dict, log_fd: int, added: dict[str, str]) -> None:
    """In the forked child: become ``python task_process.py ...`` with the task's env and log."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        # What start-up and the imports done here added (PEP 538's LC_CTYPE, scikit-learn's
        # KMP_*), as a cold start and the same imports would.
        os.environ.update({**added, **request["env"]})
        sys.path[:] = task_path(request)
        sys.path_importer_cache.clear()
        importlib.invalidate_caches()
        sys.argv = list(request["argv"])
        if "numpy" in sys.modules:  # a fresh interpreter seeds numpy's global generator anew
            sys.modules["numpy"].random.seed()
        try:
            runpy.run_path(request["argv"][0], run_name="__main__")
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT  # as Python ends on an uncaught KeyboardInterrupt
        except BaseException:
            traceback.print_exc()
        threading._shutdown()  # the interpreter joins non-daemon threads before atexit
        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        if code == -signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


def supervise(conn: socket.socket, request: dict, log_fd: int, added: dict[str, str]) -> None:
    """In the supervisor: fork the task in a process group of its own, report its pid, wait,
    report how it ended."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        pid = os.fork()
        if pid == 0:
            conn.close()
            os.setpgid(0, 0)
            run_task(request, log_fd, added)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # before the pid is sent: a kill of its group finds the group
        os.close(log_fd)
        send(conn, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
    finally:
        os._exit(0)


def reap(block: bool = False) -> None:
    """Wait for ended supervisors (waited for, not ignored: so their tasks' CPU time counts in
    the zygote's children, and in its owner's, as a cold process's does)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, 0 if block else os.WNOHANG)[0]:
            pass


def serve(
    listener: socket.socket, owner: int, given_env: dict, added: dict, imported: set[str]
) -> None:
    while os.getppid() == owner:
        reap()
        if not select.select([listener], [], [], 1.0)[0]:
            continue
        conn, _ = listener.accept()
        conn.settimeout(30)
        try:
            request, [log_fd] = read_request(conn)
            conn.settimeout(None)
        except (OSError, ValueError):
            conn.close()
            continue
        reason = cold_reason(request, given_env, added, imported)
        if reason:
            with contextlib.suppress(OSError):
                send(conn, {"cold": reason})
            os.close(log_fd)
            conn.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            supervise(conn, request, log_fd, added)
        os.close(log_fd)
        conn.close()


def stop(signum, frame) -> None:
    raise SystemExit(0)


def main() -> None:
    listener_fd, owner = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket(fileno=listener_fd)
    with open(sys.argv[3]) as given:
        given_env = json.load(given)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    signal.signal(signal.SIGTERM, stop)  # the owner's close: reap what is left, then exit
    imported = preload()
    added = {k: v for k, v in os.environ.items() if k not in given_env}
    # Out of the collector's sight: a child's collections then never walk (and so copy) the
    # zygote's objects, as a cold process's walk only what it imported itself.
    gc.freeze()
    print("zygote ready", sorted(imported), flush=True)
    try:
        serve(listener, owner, given_env, added, imported)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        reap(block=True)


if __name__ == "__main__":
    main()
