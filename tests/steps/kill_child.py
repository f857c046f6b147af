"""The scoring run ``test_kill_safety.py`` kills: ``python -m tests.steps.kill_child HOME MARKER
fast|slow DAY``.

It scores the day in small chunks with a model that, in ``slow`` mode, from the third chunk on
says so in ``MARKER`` and then waits: the test kills the process while the partition's stream is
half written. ``IRIS_FAILPOINT`` in its environment kills it at a named point instead.
"""

import sys
import time
from pathlib import Path


def main() -> None:
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


if __name__ == "__main__":
    main()
