"""One `iris dev` on a home, its whole life: it runs `dg dev` (from the project root, whatever
the directory it was started in) and only once per home; killed with SIGKILL, its orphaned
webserver and daemon still count as running.

A second `iris dev` on the same home must refuse while the first runs, naming it. `dg dev`'s
children outlive a killed `dg dev` with parent 1 and no lock; a second `iris dev` must still
refuse (two daemons fight over sensor heartbeats) and say how to stop them, and `iris stop` must
stop them. One life in one test: each `dg dev` costs about 9 CPU s to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from iris_assets.dev_processes import dev_processes
from iris_assets.settings import load_settings
from tests.conftest import free_port
from tests.processes import stop_group
from tests.test_definitions import BIN, GRAPH_ASSETS, REPOSITORY_QUERY, clean_env, graphql


def repository(port: int) -> dict | None:
    try:
        return graphql(port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"][0]
    except (OSError, KeyError, TypeError, IndexError):
        return None


def answers(port: int) -> bool:
    return repository(port) is not None


def another_iris_dev(env: dict[str, str]) -> subprocess.CompletedProcess:
    """A second `iris dev` on the same home, on a port of its own: it must refuse at once."""
    return subprocess.run(
        [str(BIN / "iris"), "dev", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="orphans are found through /proc (Linux)")
def test_iris_dev_runs_once_per_home_and_a_killed_ones_orphans_block_the_next_until_iris_stop(
    tmp_path,
):
    env, port = clean_env(tmp_path), free_port()
    home = load_settings(env).env_home
    log = tmp_path / "iris-dev.log"
    first = subprocess.Popen(
        [str(BIN / "iris"), "dev", "--port", str(port)],
        cwd=tmp_path,  # anywhere: iris dev runs dg from the project root
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while (loaded := repository(port)) is None:
            assert first.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "dg dev did not answer within 180 s"
            time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        assert {"/".join(n["assetKey"]["path"]) for n in loaded["assetNodes"]} == GRAPH_ASSETS

        alive = another_iris_dev(env)
        assert alive.returncode == 2, alive.stdout[-2000:] + alive.stderr[-2000:]
        assert "already running" in alive.stderr
        assert f"pid {first.pid}" in alive.stderr and f"127.0.0.1:{port}" in alive.stderr

        first.send_signal(signal.SIGKILL)  # dg dev itself, as a closed terminal or OOM would
        first.wait()
        assert answers(port), "the webserver is an orphan now and still answers"
        orphans = dev_processes(home)
        assert orphans and first.pid not in orphans

        second = another_iris_dev(env)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert "still run" in second.stderr and "iris stop" in second.stderr
        assert any(f"pid {pid}" in second.stderr for pid in orphans)

        stop = subprocess.run(
            [str(BIN / "iris"), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        assert stop.returncode == 0, stop.stderr[-2000:]
        assert "stopped iris dev's Dagster processes" in stop.stdout
        assert dev_processes(home) == {}
        assert not answers(port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            stop_group(first, timeout=5)
        for pid in dev_processes(home):
            os.kill(pid, signal.SIGKILL)
