import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from iris_assets.core.schema import FEATURE_COLUMNS, TEST, TRAIN
from iris_assets.core.split import (
    SplitError,
    assign_split,
    check_split,
    mix64,
    split_by_measurements,
    split_properties,
)


def test_mix64_is_splitmix64():
    # The first output of the reference splitmix64 generator seeded with 0.
    assert int(mix64(np.array([0]))[0]) == 0xE220A8397B1DCDAF


def test_split_of_known_ids_never_changes():
    # Pinned: a change here moves flowers between train and test in existing feature tables.
    expected = [
        "test",
        "train",
        "train",
        "train",
        "train",
        "test",
        "train",
        "train",
        "test",
        "train",
    ]
    assert list(assign_split(np.arange(1, 11))) == expected


def test_deterministic_and_only_train_or_test():
    ids = np.arange(5_000)
    first, second = assign_split(ids), assign_split(ids.copy())
    assert (first == second).all()
    assert set(first) == {TRAIN, TEST}


def test_fraction_close_to_target_on_100k_ids():
    ids = np.arange(100_000, 200_000)
    for fraction in (0.1, 0.3, 0.5):
        share = (assign_split(ids, fraction) == TEST).mean()
        assert abs(share - fraction) < 0.01


def test_same_id_same_side_whatever_the_batch():
    rng = np.random.default_rng(7)
    ids = rng.choice(10**12, size=2_000, replace=False)
    whole = dict(zip(ids, assign_split(ids), strict=True))
    subset = rng.permutation(ids)[:300]
    assert all(whole[i] == s for i, s in zip(subset, assign_split(subset), strict=True))
    assert all(whole[i] == assign_split(np.array([i]))[0] for i in subset[:20])


def test_input_types_agree():
    ids = [3, 17, 42, 10**15]
    expected = list(assign_split(np.array(ids)))
    assert list(assign_split(pd.Series(ids))) == expected
    assert list(assign_split(pd.Series(ids, dtype="Int64"))) == expected
    assert list(assign_split(np.array(ids, dtype=float))) == expected


def test_iris_test_set_has_every_species():
    iris = load_iris()
    sides = assign_split(np.arange(1, len(iris.target) + 1))
    for side in (TRAIN, TEST):
        assert set(iris.target[sides == side]) == {0, 1, 2}
    assert 30 <= (sides == TEST).sum() <= 60


def test_edge_fractions_and_bad_input():
    ids = np.arange(1_000)
    assert set(assign_split(ids, 0.0)) == {TRAIN}
    assert set(assign_split(ids, 1.0)) == {TEST}
    with pytest.raises(ValueError):
        assign_split(ids, 1.5)
    with pytest.raises(ValueError):
        assign_split(pd.Series([1, None]))
    with pytest.raises(ValueError):
        assign_split(np.array([1.5]))


def test_the_content_split_puts_identical_flowers_on_one_side_whatever_the_id():
    iris = load_iris(as_frame=True).data.set_axis(list(FEATURE_COLUMNS), axis=1)
    sides = split_by_measurements(iris)
    assert sides[101] == sides[142], "flowers 102 and 143 are identical measurements"
    shuffled = iris.sample(frac=1.0, random_state=3)
    assert (split_by_measurements(shuffled) == sides[shuffled.index.to_numpy()]).all()
    assert 0.2 < (sides == TEST).mean() < 0.4


def test_a_different_fraction_than_the_tables_is_refused():
    stored = split_properties(0.3)
    assert check_split("c.s.features", stored, 0.3) == 0.3
    with pytest.raises(SplitError, match=r"created with test_fraction 0\.3.*test_fraction 0\.5"):
        check_split("c.s.features", stored, 0.5)
    with pytest.raises(SplitError, match="no fixed split"):
        check_split("c.s.features", {}, 0.3)


def test_no_held_out_row_is_a_copy_of_a_training_row_at_the_trained_version(tmp_path):
    """A correction (or another source) can make a test flower equal a training one: the held-out
    set at the pinned version leaves such rows out and says how many."""
    from datetime import UTC, datetime

    pytest.importorskip("deltalake", reason="the local table store (not on the serverless env)")
    from iris_assets.core.held_out import COPIES_EXCLUDED, held_out_rows_at
    from iris_assets.core.schema import FEATURE_TABLE_SCHEMA
    from iris_assets.core.tables import DeltaTableStore

    store = DeltaTableStore(tmp_path)
    table = "iris_dev.ml.iris_features"
    store.ensure_table(table, FEATURE_TABLE_SCHEMA)

    def rows(ids, splits, lengths):
        return pd.DataFrame(
            {
                "flower_id": ids,
                **{c: [1.0] * len(ids) for c in FEATURE_COLUMNS},
                "sepal_length_cm": lengths,
                "species": 0,
                "species_name": "setosa",
                "split": splits,
                "source": "s",
                "ingested_at": datetime.now(UTC),
            }
        )

    store.merge_upsert(table, rows([1, 2, 3], [TRAIN, TEST, TEST], [5.0, 6.0, 7.0]), "flower_id")
    before = store.version(table)
    held = held_out_rows_at(store, table, before)
    assert list(held["flower_id"]) == [2, 3] and held.attrs[COPIES_EXCLUDED] == 0

    # Flower 3 is corrected to flower 1's measurements: it keeps its split, and is a copy.
    store.merge_upsert(table, rows([3], [TEST], [5.0]), "flower_id")
    held = held_out_rows_at(store, table, store.version(table))
    assert list(held["flower_id"]) == [2] and held.attrs[COPIES_EXCLUDED] == 1
    assert list(held_out_rows_at(store, table, before)["flower_id"]) == [2, 3], "time travel"
