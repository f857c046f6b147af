"""Process control for the local model server owned by one state folder.

Owns starting, finding, swapping and stopping the background server and the files that describe
it: ``server.json`` (pid, host, port, url, started_at, model name and the admin token; mode 0600)
and ``server.log`` (the server's stdout and stderr; the previous one is kept as ``server.log.1``).
Stdlib only: importing this module does not import numpy, scikit-learn or mlflow.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iris_assets.serving import client

STATE_FILE = "server.json"
LOG_FILE = "server.log"
LOCK_FILE = ".lock"
SERVER_MODULE = "iris_assets.serving.server"
ADMIN_TOKEN_ENV = "IRIS_SERVING_ADMIN_TOKEN"
PORT_SETTING = "IRIS_SERVING_PORT"
# Exit codes of the server process, so that a failed start can be explained.
EXIT_PORT_IN_USE = 3
EXIT_MODEL_LOAD_FAILED = 4

# The folder that holds the iris_assets package, so the child imports the same code.
_CODE_ROOT = Path(__file__).resolve().parents[2]


class ServingProcessError(RuntimeError):
    """The local server could not be started, swapped or reached."""


class PortInUseError(ServingProcessError):
    """Another program listens on the configured serving port."""


# Starts ``python -m module *argv`` detached with env, cwd and stdout/stderr to a descriptor,
# returning its pid, or None to have the server started as a fresh interpreter instead.
Launcher = Callable[[str, list[str], dict[str, str], str, int], int | None]


class ServingProcess:
    """The background server described by ``state_dir/server.json``.

    ``launcher`` (the orchestrator's warm worker, ``resources.warm_steps.launch_detached``) forks
    the server from a process that has its imports loaded already; without one, or when it
    declines, the server is a fresh ``python -m iris_assets.serving.server``.
    """

    def __init__(
        self,
        state_dir: Path,
        host: str,
        port: int,
        endpoint_name: str | None = None,
        request_log: Path | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = int(port)
        self.endpoint_name = endpoint_name  # also answered as Databricks' endpoint path
        self.request_log = request_log  # the Delta table a new server logs requests to, or None
        self.launcher = launcher
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / LOG_FILE

    # --- queries ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        """What the live server reports, or None when no server of this folder is answering."""
        state = self._read_state()
        if state is None or not self._is_server(state["pid"], state.get("started")):
            return None
        info = client.version(state["url"])
        # Another process may hold the port (our server died and the port was reused).
        if info is None or info.get("pid") != state["pid"]:
            return None
        return {
            "pid": state["pid"],
            "host": state["host"],
            "port": state["port"],
            "url": state["url"],
            "started_at": state["started_at"],
            "model_name": info.get("model_name"),
            "version": info.get("version"),
            "loaded_at": info.get("loaded_at"),
            "log": str(self.log_file),
        }

    def wait_ready(self, version: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until ``/health`` reports ``version``; raise if the server dies or time runs out."""
        version = str(version)
        state = self._read_state()
        if state is None:
            raise ServingProcessError(f"no server is recorded in {self.state_dir}")
        deadline = time.monotonic() + timeout
        while True:
            report = client.health(state["url"], timeout=2.0)
            if report is not None and str(report.get("version")) == version:
                return report
            if not self._is_server(state["pid"], state.get("started")):
                self._raise_exited()
            if time.monotonic() >= deadline:
                raise ServingProcessError(
                    f"the server at {state['url']} did not serve version {version} within "
                    f"{timeout:.0f} s; see {self.log_file}"
                )
            time.sleep(0.1)

    # --- changes ---------------------------------------------------------------------------------
    def ensure_serving(
        self,
        model_name: str,
        version: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> str:
        """Make this folder's server serve ``model_name`` ``version``; returns its URL.

        Starts a server when none is live, asks a live one to swap when it serves another version
        of the same model (no request is dropped), and replaces one that serves another model or
        listens elsewhere. ``env`` is added to this process's environment for a new server; it
        must name the registry (``MLFLOW_TRACKING_URI``).
        """
        version = str(version)
        with self._locked():
            running = self.status()
            if running is not None:
                same_place = (running["host"], running["port"]) == (self.host, self.port)
                if same_place and running["model_name"] == model_name:
                    if running["version"] != version:
                        self._swap(running["url"], version, timeout)
                    return self.url
            self._stop(timeout=10.0)
            self._start(model_name, version, env or {})
            try:
                self.wait_ready(version, timeout)
            except BaseException:
                self._stop(timeout=5.0)
                raise
            return self.url

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the server (SIGKILL after ``timeout`` s); True if a server was running."""
        with self._locked():
            return self._stop(timeout)

    # --- internals -------------------------------------------------------------------------------
    def _swap(self, url: str, version: str, timeout: float) -> None:
        state = self._read_state() or {}
        try:
            client.swap_model(url, version, token=state.get("token", ""), timeout=timeout)
        except client.ServingError as exc:
            raise ServingProcessError(
                f"the server at {url} refused version {version}: {exc}"
            ) from None
        self.wait_ready(version, timeout)

    def _start(self, model_name: str, version: str, env: Mapping[str, str]) -> None:
        self._check_port_free()
        token = secrets.token_urlsafe(32)
        child_env = {**os.environ, **env, ADMIN_TOKEN_ENV: token}
        if _CODE_ROOT.name not in ("site-packages", "dist-packages"):
            # A source checkout: the child runs in state_dir, where the package is not importable.
            child_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(_CODE_ROOT), child_env.get("PYTHONPATH", "")) if p
            )
        arguments = [
            "--model-name",
            model_name,
            "--version",
            version,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
        ]
        if self.endpoint_name:
            arguments += ["--endpoint-name", self.endpoint_name]
        if self.request_log is not None:
            arguments += ["--request-log", str(self.request_log)]
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name(LOG_FILE + ".1"))
        with open(self.log_file, "ab") as log:
            pid = None
            if self.launcher is not None:
                pid = self.launcher(
                    SERVER_MODULE, arguments, child_env, str(self.state_dir), log.fileno()
                )
            if pid is None:
                self._child = subprocess.Popen(
                    [sys.executable, "-m", SERVER_MODULE, *arguments],
                    cwd=self.state_dir,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                pid = self._child.pid
        self._write_state(
            {
                "pid": pid,
                # A forked server has its parent's command line: its start time identifies it.
                "started": _start_ticks(pid),
                "host": self.host,
                "port": self.port,
                "url": self.url,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model_name": model_name,
                "token": token,
            }
        )

    def _stop(self, timeout: float) -> bool:
        state = self._read_state()
        if state is None:
            return False
        pid, started = state["pid"], state.get("started")
        stopped = False
        if self._is_server(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 5.0, started)
            stopped = True
        self.state_file.unlink(missing_ok=True)
        return stopped

    def _wait_exit(self, pid: int, timeout: float, started: int | None = None) -> bool:
        if self._child is not None and self._child.pid == pid:
            try:
                self._child.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self._is_server(pid, started):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _is_server(self, pid: int, started: int | None = None) -> bool:
        """True if ``pid`` is a live local server process (not a zombie, not a reused pid): its
        command line names the server module or, for one forked from a warm worker (whose command
        line is its parent's), it started at ``started`` (clock ticks since boot)."""
        if self._child is not None and self._child.pid == pid:
            return self._child.poll() is None
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        proc = Path("/proc") / str(pid)
        if not proc.is_dir():
            return True  # no procfs: the signal check is all we have
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:
            return False
        if SERVER_MODULE.encode() in cmdline:
            return True
        return started is not None and _start_ticks(pid) == started

    def _raise_exited(self) -> None:
        code = self._child.poll() if self._child is not None else None
        tail = self._log_tail()
        if code == EXIT_PORT_IN_USE:
            raise PortInUseError(self._port_message())
        raise ServingProcessError(
            f"the model server exited (code {code}); last lines of {self.log_file}:\n{tail}"
        )

    def _check_port_free(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # Same option as the server, so a port in TIME_WAIT does not count as taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUseError(self._port_message()) from None
                raise

    def _port_message(self) -> str:
        return (
            f"port {self.port} on {self.host} is already in use by another program; "
            f"set {PORT_SETTING} to a free port"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
            return None
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2)
        os.replace(temporary, self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # One caller at a time per folder (a sensor and the CLI may both ensure serving).
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.state_dir / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the
    pid it names one process, never a later one that reuses the pid. None without procfs."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None
