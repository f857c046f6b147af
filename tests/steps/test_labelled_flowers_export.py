"""``labelled_flowers.parquet`` is written from the whole labels table by each day's
model_performance run: whichever of two days' runs writes last, the file holds both days.

The interleaving is replayed in one process: run A reads the labels table, then run B commits
its day and writes its file, then A writes what it read."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq

from iris_assets.core.labels import LABELS_TABLE
from iris_assets.core.tables import DeltaTableStore
from iris_assets.steps.performance import export_labelled_flowers, labelled_flowers_path


def labels(day: str, first_id: int, count: int) -> pd.DataFrame:
    ids = range(first_id, first_id + count)
    return pd.DataFrame(
        {
            "flower_id": list(ids),
            "observed_date": day,
            "species": [i % 3 for i in ids],
            "species_name": [("setosa", "versicolor", "virginica")[i % 3] for i in ids],
            "sepal_length_cm": [5.0 + i / 1000 for i in ids],
            "sepal_width_cm": 3.0,
            "petal_length_cm": 1.5,
            "petal_width_cm": 0.2,
            "prediction": 0,
            "model_version": "1",
            "correct": [i % 3 == 0 for i in ids],
            "label_file": f"batch-{day}.parquet",
            "labelled_at": pd.Timestamp(datetime(2026, 11, 30, tzinfo=UTC)),
        }
    )


class OtherDayCommitsMidExport:
    """The table store of run A: right after A's first read of the labels table, run B (another
    day) replaces its day and exports the file, before A writes."""

    def __init__(self, store, settings, other: pd.DataFrame):
        self.store, self.settings, self.other = store, settings, other
        self.interleaved = False

    def __getattr__(self, name):
        return getattr(self.store, name)

    def read(self, name, *args, **kwargs):
        rows = self.store.read(name, *args, **kwargs)
        if name == self.settings.labels_table and not self.interleaved:
            self.interleaved = True
            day = str(self.other["observed_date"].iloc[0])
            self.store.replace_partition(name, self.other, "observed_date", day)
            export_labelled_flowers(self.store, self.settings)  # run B ends first
        return rows


def exported_ids(settings) -> list[int]:
    return pq.read_table(labelled_flowers_path(settings)).column("flower_id").to_pylist()


def test_the_run_that_writes_last_writes_both_days(settings):
    store = DeltaTableStore(settings.warehouse)
    LABELS_TABLE.ensure(store, settings.labels_table)
    store.replace_partition(
        settings.labels_table, labels("2026-11-24", 1, 30), "observed_date", "2026-11-24"
    )
    run_a = OtherDayCommitsMidExport(store, settings, labels("2026-11-25", 101, 20))
    export = export_labelled_flowers(run_a, settings)
    assert run_a.interleaved
    assert exported_ids(settings) == [*range(1, 31), *range(101, 121)], "day 2 was put back out"
    assert export.rows == 50
    assert export.labels_version == store.version(settings.labels_table)
    content = labelled_flowers_path(settings).read_bytes()
    assert export.sha256 == hashlib.sha256(content).hexdigest()


def test_the_file_is_a_function_of_the_table(settings):
    store = DeltaTableStore(settings.warehouse)
    LABELS_TABLE.ensure(store, settings.labels_table)
    # Committed in the other order: the same rows, so the same bytes.
    for day, first in (("2026-11-25", 101), ("2026-11-24", 1)):
        store.replace_partition(settings.labels_table, labels(day, first, 25), "observed_date", day)
    once = export_labelled_flowers(store, settings)
    before = labelled_flowers_path(settings).read_bytes()
    again = export_labelled_flowers(store, settings)
    assert labelled_flowers_path(settings).read_bytes() == before
    assert once.sha256 == again.sha256
    assert exported_ids(settings) == sorted(exported_ids(settings))
