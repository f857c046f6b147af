"""`dg`, Dagster 1.13's own command, from the project root: list and check (`iris dev`, which
runs `dg dev`, is tried in tests/ui/test_dev_orphans.py)."""

import json
import subprocess

from tests.test_definitions import BIN, GRAPH_ASSETS, ROOT, clean_env


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
