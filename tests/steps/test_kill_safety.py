"""A scoring run killed with SIGKILL halfway through its write leaves the previous partition."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.tables import DeltaTableStore
from iris_assets.settings import load_settings

DAY = "2026-11-22"

# Scores the day in small chunks with a model that, from the third chunk on, says so in a file
# and then waits: the parent kills the process while the partition's stream is half written.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from iris_assets.core.registry import VersionInfo
    from iris_assets.core.schema import FEATURE_COLUMNS
    from iris_assets.core.tables import DeltaTableStore
    from iris_assets.settings import load_settings
    from iris_assets.steps.day_scoring import score_day_locally

    home, marker, slow, day = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "slow", sys.argv[4]
    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=300).fit(
        iris.data.set_axis(list(FEATURE_COLUMNS), axis=1), iris.target
    )

    class Stalls:
        classes_ = model.classes_
        calls = 0

        def predict_proba(self, rows):
            Stalls.calls += 1
            if slow and Stalls.calls >= 3:
                marker.touch()
                time.sleep(60)
            return model.predict_proba(rows)

    settings = load_settings({"IRIS_HOME": home})
    champion = VersionInfo(settings.model_name, "1", {}, (), None, None)
    store = DeltaTableStore(settings.warehouse)
    score_day_locally(store, settings, day, champion, Stalls(), batch_rows=100)
    """
)


def run_child(home, marker, mode):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(marker), mode, DAY])


def test_a_killed_run_leaves_the_old_partition_and_the_next_run_replaces_it(tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(300, DAY, seed=1), DAY)
    marker = tmp_path / "halfway"
    assert run_child(tmp_path, marker, "fast").wait(timeout=120) == 0
    store = DeltaTableStore(settings.warehouse)
    before = store.version(settings.inference_table)

    landing.write_batch(simulate_flowers(700, DAY, seed=2), DAY)
    child = run_child(tmp_path, marker, "slow")
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline, "never got halfway"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    assert store.version(settings.inference_table) == before
    assert store.count(settings.inference_table) == 300, "the old partition, whole"

    assert run_child(tmp_path, tmp_path / "unused", "fast").wait(timeout=120) == 0
    assert store.count(settings.inference_table) == 1000
    stats = store.aggregate(
        settings.inference_table, "COUNT(DISTINCT flower_id) AS ids, COUNT(*) AS n_rows"
    )
    assert stats == {"ids": 1000, "n_rows": 1000}
