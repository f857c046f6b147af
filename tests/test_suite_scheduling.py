"""The suite's own scheduling (tests/conftest.py) does what the timings count on.

``make test`` is fast only if an ``xdist_group`` keeps a file's tests on one worker (its module
fixtures made once) and if the shared Spark JVM ends after the last Spark test. Both failed
silently before: pytest 9 ignored xdist's grouped ids, and ``SparkSession.stop()`` leaves the JVM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import tests.conftest as suite
from tests.conftest import ROOT, SPARK_FILES

INNER_CONFTEST = """
import os

from tests.conftest import GroupedNodeIds


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): one worker")
    if hasattr(config, "workerinput") and os.environ.get("GROUPED") == "1":
        config.pluginmanager.register(GroupedNodeIds(), "iris-grouped-node-ids")
"""

INNER_TESTS = """
import os

import pytest


@pytest.mark.xdist_group("one-fixture")
@pytest.mark.parametrize("n", range(12))
def test_records_its_worker(n):
    with open(os.environ["WORKERS_FILE"], "a") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def workers_of_one_group(folder: Path, grouped: bool) -> set[str]:
    """The workers a 12-test ``xdist_group`` ran on under ``-n 2 --dist loadgroup``."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "conftest.py").write_text(INNER_CONFTEST)
    (folder / "test_grouped.py").write_text(INNER_TESTS)
    record = folder / f"workers-{grouped}.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WORKERS_FILE": str(record),
        "GROUPED": "1" if grouped else "0",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p"]
        + ["no:cacheprovider", "test_grouped.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return set(record.read_text().split())


def test_an_xdist_group_runs_on_one_worker_only_with_grouped_node_ids(tmp_path):
    # The control shows the test can fail: without GroupedNodeIds pytest 9 reads ungrouped ids
    # and xdist deals the group's tests to both workers.
    assert len(workers_of_one_group(tmp_path, grouped=False)) == 2
    assert len(workers_of_one_group(tmp_path, grouped=True)) == 1


def item(path: str) -> SimpleNamespace:
    return SimpleNamespace(nodeid=f"{path}::test_x")


@pytest.mark.parametrize(
    ("current", "following", "stops"),
    [
        (SPARK_FILES[0], SPARK_FILES[0], False),
        (SPARK_FILES[0], SPARK_FILES[1], False),
        (SPARK_FILES[-1], "tests/core/test_schema.py", True),
        (SPARK_FILES[1], None, True),
        ("tests/core/test_schema.py", SPARK_FILES[0], False),
    ],
)
def test_the_shared_jvm_is_ended_after_the_last_spark_test_only(
    monkeypatch, current, following, stops
):
    from tests import local_spark

    calls = []
    monkeypatch.setattr(local_spark, "stop", lambda: calls.append(current))
    suite.pytest_runtest_teardown(item(current), following and item(following))
    assert calls == ([current] if stops else [])


def test_stop_refuses_to_leave_a_jvm_it_cannot_see(monkeypatch):
    """``stop`` must end the JVM process or fail: a gateway without its process handle (a
    pyspark that renamed ``proc``) would otherwise leave the JVM burning a core unnoticed."""
    pyspark = pytest.importorskip("pyspark")
    from tests import local_spark

    class Gateway:
        def shutdown(self):
            pass

    monkeypatch.setattr(local_spark, "_session", SimpleNamespace(stop=lambda: None))
    monkeypatch.setattr(pyspark.SparkContext, "_gateway", Gateway())
    monkeypatch.setattr(pyspark.SparkContext, "_jvm", pyspark.SparkContext._jvm)
    with pytest.raises(RuntimeError, match="JVM"):
        local_spark.stop()
