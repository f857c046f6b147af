"""A scoring run killed with SIGKILL leaves the previous partition, or a day the check catches.

Killed halfway through its stream, the partition is the old one, whole. Killed between the
partition commit and the rejects commit (failpoint ``score:partition_committed``), the day's
accounting fails until the next run, which repairs it. The run is ``tests/steps/kill_child.py``,
forked from a warm worker as the local steps are: a process of its own, killed with SIGKILL.
"""

import os
import signal
import sys
import time

import pytest

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.tables import DeltaTableStore
from iris_assets.resources.warm_steps import WarmWorker
from iris_assets.settings import load_settings
from iris_assets.steps.failpoints import FAILPOINT_ENV
from tests.conftest import ROOT

DAY = "2026-11-22"


@pytest.fixture
def worker():
    """This process's warm worker, with every step's libraries loaded (tests/conftest.py): the
    runs are forked from it, as the local steps are, so each costs a fork instead of importing
    scikit-learn and deltalake. The tests kill the runs, never the worker."""
    return WarmWorker.for_python(sys.executable, preload_all=True)


def run_child(worker, home, marker, mode, failpoint=None):
    """``tests.steps.kill_child`` as its own process (what the test kills)."""
    env = {k: v for k, v in os.environ.items() if k != FAILPOINT_ENV}
    if failpoint:
        env[FAILPOINT_ENV] = failpoint
    argv = [str(home), str(marker), mode, DAY]
    return worker.launch("tests.steps.kill_child", env, str(ROOT), argv=argv)


def test_a_killed_run_leaves_the_old_partition_and_the_next_run_replaces_it(worker, tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(300, DAY, seed=1), DAY)
    marker = tmp_path / "halfway"
    assert run_child(worker, tmp_path, marker, "fast").wait(timeout=120) == 0
    store = DeltaTableStore(settings.warehouse)
    before = store.version(settings.inference_table)

    landing.write_batch(simulate_flowers(700, DAY, seed=2), DAY)
    child = run_child(worker, tmp_path, marker, "slow")
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline, "never got halfway"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    assert store.version(settings.inference_table) == before
    assert store.count(settings.inference_table) == 300, "the old partition, whole"

    assert run_child(worker, tmp_path, tmp_path / "unused", "fast").wait(timeout=120) == 0
    assert store.count(settings.inference_table) == 1000
    stats = store.aggregate(
        settings.inference_table, "COUNT(DISTINCT flower_id) AS ids, COUNT(*) AS n_rows"
    )
    assert stats == {"ids": 1000, "n_rows": 1000}


def bad_rows(count, seed):
    rows = simulate_flowers(count, DAY, seed=seed).astype(str)
    rows["sepal_width_cm"] = "wide"
    return rows


@pytest.mark.parametrize("earlier_rejects", [3, 0], ids=["stale-rejects", "no-rejects"])
def test_a_kill_between_the_partition_and_rejects_commits_is_caught_and_repaired(
    worker, tmp_path, earlier_rejects
):
    from iris_assets.core.accounting import read_accounts
    from iris_assets.steps.day_scoring import audit_day, select_day_files

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    store = DeltaTableStore(settings.warehouse)
    landing.write_batch(simulate_flowers(300, DAY, seed=1), DAY)
    if earlier_rejects:
        landing.write_batch(bad_rows(earlier_rejects, 5), DAY, "csv")
    assert run_child(worker, tmp_path, tmp_path / "unused", "fast").wait(timeout=120) == 0
    assert audit_day(store, settings, select_day_files(settings, DAY)) == []

    landing.write_batch(simulate_flowers(50, DAY, seed=2), DAY)  # late data: 50 good, 2 bad
    landing.write_batch(bad_rows(2, 6), DAY, "csv")
    child = run_child(
        worker, tmp_path, tmp_path / "unused", "fast", failpoint="score:partition_committed"
    )
    assert child.wait(timeout=120) == -signal.SIGKILL

    # The partition is the new run's, the rejects slice the old run's (or nothing): while it lasts,
    # the output check's accounting says so.
    problems = audit_day(store, settings, select_day_files(settings, DAY))
    landing_rows = 300 + earlier_rejects + 52
    assert f"350 scored + {earlier_rejects} rejected != {landing_rows} landing rows" in problems
    if earlier_rejects:
        assert any("written by another run" in p for p in problems), problems

    assert run_child(worker, tmp_path, tmp_path / "unused", "fast").wait(timeout=120) == 0
    assert audit_day(store, settings, select_day_files(settings, DAY)) == []
    [account] = read_accounts(store, settings.inference_table, settings.rejects_table).values()
    assert len(account.partition_runs) == 1 and account.rejects_runs.keys() == (
        account.partition_runs.keys()
    )
    assert (account.scored, account.rejected) == (350, earlier_rejects + 2)


def test_a_kill_between_the_commits_is_caught_when_the_new_run_scored_no_rows(worker, tmp_path):
    """An empty partition has no rows to name its writer: the commit's tags name it."""
    from iris_assets.assets.inference import _days_to_repair
    from iris_assets.steps.day_scoring import audit_day, select_day_files

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    store = DeltaTableStore(settings.warehouse)
    landing.write_batch(bad_rows(2, 5), DAY, "csv")  # every row rejected: an empty partition
    assert run_child(worker, tmp_path, tmp_path / "unused", "fast").wait(timeout=120) == 0
    assert audit_day(store, settings, select_day_files(settings, DAY)) == []

    for old in landing.day_dir(DAY).iterdir():  # the collector replaces the day's file
        old.unlink()
    elsewhere = simulate_flowers(2, "2026-11-30", seed=7)  # rejected: observed on another day
    landing.write_batch(elsewhere, DAY, "csv")
    child = run_child(
        worker, tmp_path, tmp_path / "unused", "fast", failpoint="score:partition_committed"
    )
    assert child.wait(timeout=120) == -signal.SIGKILL
    assert store.count(settings.inference_table) == 0

    problems = audit_day(store, settings, select_day_files(settings, DAY))
    assert any("written by another run" in p for p in problems), problems
    assert _days_to_repair(settings, [DAY], set(), {})[0], "the sensor asks for the day again"

    assert run_child(worker, tmp_path, tmp_path / "unused", "fast").wait(timeout=120) == 0
    assert audit_day(store, settings, select_day_files(settings, DAY)) == []
    reasons = store.read(settings.rejects_table)["reason"].tolist()
    assert len(reasons) == 2 and all("2026-11-30" in r or "day" in r for r in reasons), reasons
