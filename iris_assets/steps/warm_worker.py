"""The warm step worker: one process that has imported the steps' heavy libraries and forks a
fresh child for every local step.

Each step imports MLflow, scikit-learn, pandas, pyarrow and deltalake, about 2.5 s of CPU; a new
interpreter per step pays that every time. The worker imports what a step needs before forking
it (everything at once when started with ``--preload all``), so that is paid once per
orchestrator process, and runs each step in ``os.fork()`` of its pristine self. The child is a
process of its own, as ``python -m iris_assets.steps.<name>`` would be: a step that raises,
exits or is killed cannot take the worker or the orchestrator with it, and nothing one step does
is seen by the next (each starts from the same untouched copy: the worker itself only imports,
and fills the caches of what is installed that a step would otherwise fill in every fork).

The orchestrator side is ``iris_assets.resources.warm_steps``. The protocol, one Unix-socket
connection per step: the client sends one JSON line ``{"module", "env", "cwd"}`` with its
stdin, stdout and stderr attached (``SCM_RIGHTS``); the worker imports what the step needs,
answers ``{"ready": true}`` and waits for ``{"go": true}`` (a client that stopped waiting has
closed the connection by then, and nothing starts); it then forks a supervisor that forks
the step, answers ``{"pid": N}`` once it runs and ``{"returncode": R}`` when it has ended
(negative: killed by that signal), exactly as ``subprocess.Popen.returncode`` would say.

A request also carries ``"signals"``: what the client ignores and blocks, which a program it
started itself would inherit across ``exec`` (under ``nohup``, SIGHUP stays ignored), and the
step starts with those. It may also carry ``"argv"`` (the module's arguments) and
``"detach": true``: then the supervisor forks the program in a session of its own, answers
``{"pid": N}`` and exits without waiting, so the program outlives the worker and the
orchestrator (as ``Popen`` with ``start_new_session=True`` would). A detached program also
closes every descriptor it inherited besides its stdio. The local model server is started that
way (``serving.process``).
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
from collections.abc import Sequence

# What each step imports (some inside its functions), loaded in the worker before it forks the
# step: a worker started for one step pays what that step would pay cold, and every later step
# of the same run finds it loaded. ``--preload all`` (the demo's prestart) loads every step's set
# before the first request. A module that is not installed is skipped: the step that needs it
# fails as it would in a cold process. What a library reads from the environment as it is
# imported is the worker's in a fork, not the step's: OpenMP's and OpenBLAS's thread counts
# (``OMP_NUM_THREADS``), ``SKLEARN_ASSUME_FINITE``, ``SKLEARN_WORKING_MEMORY``,
# ``SCIPY_ARRAY_API``, and the ``KMP_*`` defaults scikit-learn puts in the environment. The worker
# starts with its orchestrator's environment, which a step's only extends with the project's
# settings (none of these), so the two differ only where that environment changed after the
# worker started; a library that does more at import (GitPython runs ``git version``) is not
# loaded.
COMMON = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.parquet",
    "pyarrow.dataset",  # what ``pyarrow.parquet.read_table`` imports on first use
    "deltalake",
    "dagster_pipes",
)
# What loading a skops model needs: the start of what the MLflow steps import. The local score
# step needs only these (no MLflow: ``steps.local_champion``) and imports them itself.
SKOPS = (
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "yaml",
    "threadpoolctl",
)
MLFLOW = (
    *SKOPS,
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    # Imported on first use, in every fork: the sqlite engine's dialect (each store opens one),
    # and the frame adapters scikit-learn checks a pandas frame with.
    "sqlalchemy.dialects.sqlite",
    "narwhals._pandas_like.dataframe",
    "narwhals._pandas_like.namespace",
)
STEP_IMPORTS = {
    "iris_assets.steps.ingest": (*COMMON, "sklearn.datasets", "iris_assets.steps.ingest"),
    # ``log_model`` imports pyfunc. Not GitPython, which ``start_run`` imports for the run's
    # source version: its import reads GIT_PYTHON_* and runs ``git version`` with the env of
    # the process importing it, and a step's git lineage must come from the step's own env.
    "iris_assets.steps.train": (*COMMON, *MLFLOW, "mlflow.pyfunc", "iris_assets.steps.train"),
    "iris_assets.steps.evaluate": (
        *COMMON,
        *MLFLOW,
        "sklearn.metrics",
        "matplotlib",
        "matplotlib.pyplot",
        "matplotlib.backends.backend_agg",
        "PIL.ImageDraw",
        "iris_assets.steps.evaluate",
    ),
    # Its metrics are scikit-learn's (and so SciPy's), imported when it computes them.
    "iris_assets.steps.performance": (*COMMON, "sklearn.metrics", "iris_assets.steps.performance"),
    # Not SKOPS: the score step imports them on the thread that loads its model, while its main
    # thread inspects the day's files (a worker started for one step would import them first).
    "iris_assets.steps.score": (*COMMON, "iris_assets.steps.score"),
    # Not a step: the local model server, forked detached (``serving.process``).
    "iris_assets.serving.server": (*COMMON, *MLFLOW, "iris_assets.serving.server"),
}
PRELOAD = tuple(dict.fromkeys(name for names in STEP_IMPORTS.values() for name in names))
# Loaded too when a run's orchestrator starts the worker for the steps it will run, before
# they start (``--preload-steps``): the score step's model then loads in milliseconds instead
# of importing scikit-learn and skops on its critical path.
AHEAD = {"iris_assets.steps.score": SKOPS}
# Work each fork of a step would repeat, done once here after its imports; it depends only on
# what is installed. The first model a process logs makes MLflow map every installed
# distribution's files to the modules they provide (``importlib.metadata.packages_distributions``,
# about 0.25 s with the orchestrator's packages), to check the model's pip requirements against
# this environment; each version it checks is still read when the step runs. The train step
# names its requirements (``train.pip_requirements``), so the map is only MLflow's fallback for a
# package it cannot find by name: one installed after the worker started is not in it.
# MLflow also checks each database a step opens against the newest revision of its migration
# scripts, which it finds by reading and compiling all of them (about 40 ms a store, every step):
# ``pin_mlflow_schema_head`` finds it once here. Each database's own revision is still read.
MLFLOW_WARM_UPS = ((__name__, "pin_mlflow_schema_head"),)
WARM_UPS = {
    "iris_assets.steps.train": (
        ("mlflow.utils.requirements_utils", "_init_modules_to_packages_map"),
        *MLFLOW_WARM_UPS,
    ),
    "iris_assets.steps.evaluate": MLFLOW_WARM_UPS,
    "iris_assets.serving.server": MLFLOW_WARM_UPS,
}

MAX_REQUEST_BYTES = 1 << 20
REQUEST_TIMEOUT_SECONDS = 30.0


def preload(names: tuple[str, ...] = PRELOAD) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in names:
        if name not in sys.modules:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def prepare(module: str | None = None) -> None:
    """Preload what ``module``'s step imports and do its warm-ups (every step's when None)."""
    preload(PRELOAD if module is None else STEP_IMPORTS.get(module, ()))
    for step in WARM_UPS if module is None else (module,):
        for name, function in WARM_UPS.get(step, ()):
            # A private MLflow function: if it moves, the step fills the cache itself.
            with contextlib.suppress(Exception):
                getattr(importlib.import_module(name), function)()


def pin_mlflow_schema_head() -> None:
    """Make MLflow's ``_get_latest_schema_revision`` answer the head it finds now, from then on:
    it depends only on the migration scripts of the MLflow installed (a private function: if it
    moves, this raises and each step finds the head itself). In the worker, and in an
    orchestrator that forks its worker from itself (``warm_steps.prestart``)."""
    from mlflow.store.db import utils

    find = utils._get_latest_schema_revision
    if hasattr(find, "unpinned"):
        return
    head = find()

    def latest_schema_revision() -> str:
        return head

    latest_schema_revision.unpinned = find
    utils._get_latest_schema_revision = latest_schema_revision


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """The request and its stdio descriptors; ValueError (descriptors closed) if malformed."""
    data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST_BYTES, 3)
    try:
        while not data.endswith(b"\n"):
            more = conn.recv(MAX_REQUEST_BYTES)
            if not more:
                raise ConnectionError("the client closed the connection before its request ended")
            data += more
        try:
            request = json.loads(data)
        except RecursionError:  # nested past Python's limit: garbage, not a reason to exit
            raise ValueError("a request nests too deep") from None
        if not (isinstance(request, dict) and isinstance(request.get("module"), str)):
            raise ValueError("a request is a JSON object with a module")
        check_signals(request.get("signals", {}))
        argv = request.get("argv", [])
        if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
            raise ValueError("a request's argv is a list of strings")
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
        take_fresh_signals(request.get("signals", {}))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        if request.get("detach"):
            os.setsid()  # its own session and process group: the orchestrator's Ctrl-C is not its
            # A long-lived program must not hold the orchestrator's pipes or sockets open.
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if os.environ.get("PYTHONFAULTHANDLER") or os.environ.get("PYTHONDEVMODE"):
            faulthandler.enable()  # what a fresh interpreter does at start for this env
        sys.path[0] = request["cwd"]
        sys.argv = [request["module"], *request.get("argv", ())]
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


def check_signals(signals: object) -> None:
    """``{"ignored": [...], "blocked": [...]}`` of signal numbers this system has, or ValueError."""
    valid = {int(signum) for signum in signal.valid_signals()}
    if not isinstance(signals, dict) or set(signals) - {"ignored", "blocked"}:
        raise ValueError("a request's signals are an object of ignored and blocked")
    for numbers in signals.values():
        if not (
            isinstance(numbers, list)
            and all(type(n) is int and n in valid for n in numbers)  # not True, not 1.0
        ):
            raise ValueError("a request's signals are lists of this system's signal numbers")


def take_fresh_signals(inherited: dict) -> None:
    """The signal dispositions ``python -m`` started by the client would have: what the client
    ignores stays ignored and its blocked mask stays blocked (as across ``exec``), everything
    else is default, and then what a fresh interpreter sets itself. SIGPIPE in particular is
    ignored there (a write to a closed pipe or socket raises BrokenPipeError): with SIG_DFL a
    server whose client hung up, or whose log writer died, would be killed instead."""
    ignored = set(inherited.get("ignored", ()))
    for signum in signal.valid_signals():  # real-time signals included
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        # Python cannot set the two glibc keeps for itself (32 and 33): they raise here.
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_IGN if signum in ignored else signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if signal.SIGINT not in ignored:  # Python leaves an ignored SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, inherited.get("blocked", ()))


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
        send(conn, {"pid": pid})
        if request.get("detach"):
            return  # the program is reparented to init, which reaps it
        _, status = os.waitpid(pid, 0)
        send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
    finally:
        os._exit(0)


def serve(listener: socket.socket, parent: int, ahead: Sequence[str] = ()) -> None:
    """Accept step requests until the orchestrator that started this worker is gone. Once a
    step was started, idle time loads the imports of the later steps ``ahead``, one step's at a
    time (before the first request it would delay the first step)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle
    pending, served = list(ahead), False
    while os.getppid() == parent:
        idle_work = served and bool(pending)
        ready, _, _ = select.select([listener], [], [], 0 if idle_work else 1.0)
        if not ready:
            if idle_work:
                prepare_ahead([pending.pop(0)])
            continue
        conn, _ = listener.accept()
        conn.settimeout(REQUEST_TIMEOUT_SECONDS)  # a client that never sends cannot stall it
        try:
            request, fds = read_request(conn)
            conn.settimeout(None)
        except (OSError, ValueError):
            conn.close()  # the client gave up or sent garbage: it sees a closed connection
            continue
        # Here, not in the child: what this step imports stays loaded for the next ones.
        prepare(request["module"])
        if confirmed(conn):
            if os.fork() == 0:
                listener.close()
                supervise(conn, request, fds)
            served = True
        for fd in fds:
            os.close(fd)
        conn.close()


def confirmed(conn: socket.socket) -> bool:
    """Say the step is ready to start and wait for the client's go: a client that gave up
    meanwhile (this worker was stopped, or slow past its patience) has started the step
    elsewhere, and it must not run twice."""
    try:
        send(conn, {"ready": True})
        conn.settimeout(REQUEST_TIMEOUT_SECONDS)
        answer = b""
        while not answer.endswith(b"\n") and len(answer) <= 64:  # the go is a dozen bytes
            more = conn.recv(64)
            if not more:
                return False
            answer += more
        conn.settimeout(None)
        return json.loads(answer) == {"go": True}
    except (OSError, ValueError):
        return False


def prepare_ahead(modules: Sequence[str]) -> None:
    """What ``modules``' steps need, in their order, before they are asked for."""
    for module in modules:
        prepare(module)
        preload(AHEAD.get(module, ()))


def main() -> None:
    listener_fd, parent = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket(fileno=listener_fd)
    if sys.argv[3:] == ["--preload", "all"]:
        prepare()
    steps = []
    if sys.argv[3:4] == ["--preload-steps"]:
        steps = [m for m in sys.argv[4].split(",") if m in STEP_IMPORTS]
        prepare_ahead(steps[:1])  # the run's first step; the others while it runs
    serve(listener, parent, ahead=steps[1:])


if __name__ == "__main__":
    main()
