"""`dg`, Dagster 1.13's own command, from the project root: list, check, and `iris dev` on it."""

import json
import subprocess
import time

import pytest

from tests.conftest import free_port
from tests.processes import stop_group
from tests.test_definitions import BIN, GRAPH_ASSETS, REPOSITORY_QUERY, ROOT, clean_env, graphql


def dg(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dg_list_defs_lists_the_graph(tmp_path):
    out = dg(tmp_path, "list", "defs", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    listed = json.loads(out.stdout)
    assert {asset["asset_key"] for asset in listed["assets"]} == GRAPH_ASSETS
    # One group: the UI's first page shows every asset rather than collapsed groups.
    assert {asset["group_name"] for asset in listed["assets"]} == {"iris"}
    assert {job["name"] for job in listed["jobs"]} == {
        "training_job",
        "promotion_job",
        "rollback_job",
        "serving_job",
        "lifecycle_checks_job",
        "inference_job",
        "performance_job",
    }
    assert sorted(s["name"] for s in listed["sensors"]) == [
        "champion_approval_sensor",
        "labels_files_sensor",
        "landing_files_sensor",
        "notification_sensor",
        "retraining_sensor",
    ]


def test_dg_check_defs_passes(tmp_path):
    out = dg(tmp_path, "check", "defs")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "All definitions loaded successfully" in out.stdout + out.stderr


@pytest.mark.slow
def test_iris_dev_runs_dg_dev_once_per_home(tmp_path):
    env, port = clean_env(tmp_path), free_port()
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
        deadline, repository = time.monotonic() + 120, None
        while time.monotonic() < deadline and repository is None:
            assert first.poll() is None, log.read_text()[-2000:]
            try:
                repository = graphql(port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"][0]
            except (OSError, KeyError, TypeError, IndexError):
                time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        assert repository, "dg dev did not answer within 120 s"
        assert {"/".join(n["assetKey"]["path"]) for n in repository["assetNodes"]} == GRAPH_ASSETS

        second = subprocess.run(
            [str(BIN / "iris"), "dev", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "already running" in second.stderr
        assert f"pid {first.pid}" in second.stderr and f"127.0.0.1:{port}" in second.stderr
    finally:
        stop_group(first)
