"""`iris dev` killed with SIGKILL: its orphaned webserver and daemon still count as running.

`dg dev`'s children outlive it with parent 1 and no lock; a second `iris dev` on the same home
must refuse (two daemons fight over sensor heartbeats) and say how to stop them, and `iris stop`
must stop them.
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
from tests.test_definitions import BIN, REPOSITORY_QUERY, clean_env, graphql


def answers(port: int) -> bool:
    try:
        return bool(graphql(port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"])
    except (OSError, KeyError, TypeError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="orphans are found through /proc (Linux)")
def test_a_killed_iris_dev_leaves_orphans_that_block_a_second_one_until_iris_stop(tmp_path):
    env, port = clean_env(tmp_path), free_port()
    home = load_settings(env).env_home
    log = tmp_path / "iris-dev.log"
    first = subprocess.Popen(
        [str(BIN / "iris"), "dev", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not answers(port):
            assert first.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "dg dev did not answer within 180 s"
            time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        first.send_signal(signal.SIGKILL)  # dg dev itself, as a closed terminal or OOM would
        first.wait()
        assert answers(port), "the webserver is an orphan now and still answers"
        orphans = dev_processes(home)
        assert orphans and first.pid not in orphans

        second = subprocess.run(
            [str(BIN / "iris"), "dev", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
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
