"""Review 13: labels_files_sensor's run keys must not repeat for a day whose folder changed.

The Dagster daemon skips a RunRequest whose run_key an earlier run of the same sensor already
used ("Skipping run request: a run with this run_key already exists"). A batch that lands and is
then deleted (the documented way to retract a label) brings the day folder back to a
fingerprint it had before, so the sensor asks again with a run key already spent: the daemon
drops the run, and the retracted labels stay in flower_labels and labelled_flowers.parquet.
"""

import dagster as dg
import pandas as pd
import pytest

from iris_assets.assets.monitoring import labels_files_sensor
from iris_assets.core.landing import LandingArea

DAY = "2026-11-22"


@pytest.mark.xfail(
    strict=True,
    reason="review 13: run_key is performance-DAY-<fingerprint>; a deleted batch returns the "
    "folder to an earlier fingerprint, so the daemon skips the run (assets/monitoring.py:189)",
)
def test_a_retracting_delete_gets_a_run_key_not_used_before(settings, graph):
    defs, instance = graph
    landing = LandingArea(settings.labels_landing_dir)
    labels = pd.DataFrame({"flower_id": [1, 2], "species": ["setosa", "virginica"]})
    landing.write_batch(labels.iloc[:1], DAY)

    def tick(cursor):
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
        ) as context:
            return labels_files_sensor(context), context.cursor

    spent = set()
    [first], cursor = tick(None)
    spent.add(first.run_key)
    wrong = landing.write_batch(labels.iloc[1:], DAY)
    [second], cursor = tick(cursor)
    spent.add(second.run_key)
    wrong.unlink()  # the collector retracts the wrong batch
    [third], cursor = tick(cursor)
    assert third.partition_key == DAY
    assert third.run_key not in spent, "the daemon would skip this run: its key was used"
