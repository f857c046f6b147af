"""ServingProcess: start, swap and stop real detached servers."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving import client
from iris_assets.serving.process import PortInUseError, ServingProcess, ServingProcessError

if TYPE_CHECKING:
    from conftest import Registry

SETOSA = dict(zip(FEATURE_COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An exited child of this test process stays a zombie until reaped.
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().rpartition(")")[2].split()[0] != "Z"


def test_start_swap_stop(registry: Registry, tmp_path: Path, unused_port: int) -> None:
    state_dir = tmp_path / "serving"
    serving = ServingProcess(state_dir, "127.0.0.1", unused_port)
    assert serving.status() is None
    assert serving.stop() is False

    url = serving.ensure_serving(registry.model_name, "1", env=registry.env(), timeout=60)
    assert url == f"http://127.0.0.1:{unused_port}"
    first = serving.status()
    assert first["version"] == "1" and first["model_name"] == registry.model_name
    assert "token" not in first
    assert client.predict(url, [SETOSA]) == {"predictions": [0], "model_version": "1"}

    state_file = state_dir / "server.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert len(json.loads(state_file.read_text())["token"]) >= 32
    assert (state_dir / "server.log").exists()

    # Same version: nothing to do. Another version: swapped in place, same process.
    assert serving.ensure_serving(registry.model_name, "1", env=registry.env()) == url
    assert serving.ensure_serving(registry.model_name, "2", env=registry.env()) == url
    # A new object (another CLI call) finds the same server.
    again = ServingProcess(state_dir, "127.0.0.1", unused_port)
    second = again.status()
    assert second["pid"] == first["pid"]
    assert second["version"] == "2"
    assert client.health(url)["version"] == "2"

    assert again.stop(timeout=10) is True
    assert not alive(first["pid"])
    assert not state_file.exists()
    assert again.status() is None
    assert client.health(url) is None
    assert again.stop() is False


def test_a_taken_port_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        serving = ServingProcess(tmp_path, "127.0.0.1", port)
        with pytest.raises(PortInUseError) as raised:
            serving.ensure_serving(registry.model_name, "1", env=registry.env(), timeout=30)
    assert f"port {port}" in str(raised.value)
    assert "IRIS_SERVING_PORT" in str(raised.value)
    assert not (tmp_path / "server.json").exists()


def test_a_version_that_cannot_load_fails_with_the_log(
    registry: Registry, tmp_path: Path, unused_port: int
) -> None:
    serving = ServingProcess(tmp_path, "127.0.0.1", unused_port)
    with pytest.raises(ServingProcessError) as raised:
        serving.ensure_serving(registry.model_name, "99", env=registry.env(), timeout=60)
    assert "not found" in str(raised.value)
    assert serving.status() is None
    assert not (tmp_path / "server.json").exists()


def test_a_recorded_pid_now_used_by_another_program_is_not_taken_for_the_server(
    tmp_path: Path, unused_port: int
) -> None:
    # A forked server's command line is its parent's, so server.json's start time is what
    # identifies it: a reused pid (here a live program that started at another time) is not ours.
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        serving = ServingProcess(tmp_path, "127.0.0.1", unused_port)
        state = {"pid": other.pid, "started": 1, "host": "127.0.0.1", "port": unused_port}
        state |= {"url": serving.url, "started_at": "2026-01-01T00:00:00+00:00", "token": "t"}
        (tmp_path / "server.json").write_text(json.dumps(state))
        assert serving.status() is None
        assert serving.stop(timeout=1) is False
        assert other.poll() is None  # still running: never signalled
    finally:
        other.kill()
        other.wait()
