"""The champion is never scored on a row it was trained on, even when the challenger's split
holds it on the test side (a train flower corrected so its hash says test, dropped by mistake
and re-added: it lands on test)."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from iris_assets.core.schema import FEATURE_COLUMNS, FEATURE_TABLE_SCHEMA, TEST, TRAIN

pytest.importorskip("deltalake", reason="the local table store (not on the serverless env)")

from iris_assets.core.held_out import (  # noqa: E402
    CHAMPION_TRAINED_EXCLUDED,
    COPIES_EXCLUDED,
    held_out_rows_at,
    without_rows_trained_at,
)
from iris_assets.core.tables import DeltaTableStore  # noqa: E402

TABLE = "iris_dev.ml.iris_features"


def rows(ids, splits, lengths, source="s"):
    return pd.DataFrame(
        {
            "flower_id": ids,
            **{c: [1.0] * len(ids) for c in FEATURE_COLUMNS},
            "sepal_length_cm": lengths,
            "species": 0,
            "species_name": "setosa",
            "split": splits,
            "source": source,
            "ingested_at": datetime.now(UTC),
        }
    )


@pytest.fixture
def store(tmp_path):
    store = DeltaTableStore(tmp_path)
    store.ensure_table(TABLE, FEATURE_TABLE_SCHEMA)
    return store


def test_a_flower_the_champion_trained_on_is_left_out_by_id(store):
    store.merge_upsert(TABLE, rows([1, 2, 3], [TRAIN, TEST, TEST], [5.0, 6.0, 7.0]), "flower_id")
    champion_version = store.version(TABLE)  # the champion trains here: flower 1 is train
    # Flower 1 is dropped and re-added corrected: its new hash says test, and it is test now.
    store.merge_upsert(
        TABLE, rows([2, 3], [TEST, TEST], [6.0, 7.0]), "flower_id", whole=("source", "s")
    )
    store.merge_upsert(TABLE, rows([1], [TEST], [8.0]), "flower_id")
    challenger_version = store.version(TABLE)
    held = held_out_rows_at(store, TABLE, challenger_version)
    assert list(held["flower_id"]) == [1, 2, 3] and held.attrs[COPIES_EXCLUDED] == 0
    fair = without_rows_trained_at(store, TABLE, held, champion_version)
    assert list(fair["flower_id"]) == [2, 3]
    assert fair.attrs[CHAMPION_TRAINED_EXCLUDED] == 1
    assert fair.attrs[COPIES_EXCLUDED] == 0  # the first count is carried, not lost


def test_a_copy_of_a_champion_training_row_under_another_id_is_left_out(store):
    store.merge_upsert(TABLE, rows([1, 2], [TRAIN, TEST], [5.0, 6.0]), "flower_id")
    champion_version = store.version(TABLE)
    # Flower 1 leaves; another source brings flower 9 with flower 1's measurements, on test.
    store.merge_upsert(TABLE, rows([2], [TEST], [6.0]), "flower_id", whole=("source", "s"))
    store.merge_upsert(TABLE, rows([9], [TEST], [5.0], source="t"), "flower_id")
    held = held_out_rows_at(store, TABLE, store.version(TABLE))
    assert list(held["flower_id"]) == [2, 9]
    fair = without_rows_trained_at(store, TABLE, held, champion_version)
    assert list(fair["flower_id"]) == [2] and fair.attrs[CHAMPION_TRAINED_EXCLUDED] == 1


def test_nothing_is_left_out_when_the_champion_trained_on_other_flowers(store):
    store.merge_upsert(TABLE, rows([1, 2, 3], [TRAIN, TEST, TEST], [5.0, 6.0, 7.0]), "flower_id")
    champion_version = store.version(TABLE)
    store.merge_upsert(TABLE, rows([4], [TEST], [9.0]), "flower_id")
    held = held_out_rows_at(store, TABLE, store.version(TABLE))
    fair = without_rows_trained_at(store, TABLE, held, champion_version)
    assert list(fair["flower_id"]) == [2, 3, 4] and fair.attrs[CHAMPION_TRAINED_EXCLUDED] == 0
