"""Two ingests MERGE into the local Delta feature table at once: the one that loses the commit
race is computed again from a fresh snapshot, never blamed on CHECK constraints.

The race window is made deterministic: the competitor commits between the moment the MERGE read
the table (``_differs``) and its own commit."""

import pytest

from iris_assets.core.schema import FEATURE_TABLE_SCHEMA
from iris_assets.core.tables import DeltaTableStore, TableError
from tests.core.test_tables import CONSTRAINTS, FEATURES, features

COMPARE = ["sepal_length_cm", "species", "source"]


@pytest.fixture
def store(tmp_path):
    store = DeltaTableStore(tmp_path / "warehouse")
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints=CONSTRAINTS)
    store.merge_upsert(FEATURES, features(range(1, 11), source="a"), "flower_id")
    store.merge_upsert(FEATURES, features(range(11, 21), source="b"), "flower_id")
    return store


def race(monkeypatch, competitor, times=1):
    """Run ``competitor`` (another writer's commit) inside the next ``times`` MERGE attempts."""
    real = DeltaTableStore._differs
    fired, competing = [], []

    def differs(self, *args, **kwargs):
        if len(fired) < times and not competing:  # the competitor's own MERGE is not raced
            fired.append(1)
            competing.append(1)
            try:
                competitor(len(fired))
            finally:
                competing.clear()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTableStore, "_differs", differs)
    return fired


def held(store, source):
    rows = store.read(FEATURES, predicate=f"source = '{source}'", order_by="flower_id")
    return rows.set_index("flower_id")


def test_a_whole_source_merge_that_loses_the_race_to_another_source_is_merged_again(
    store, monkeypatch
):
    other = store  # the same store object: the snapshot read is what races, not the instance
    fired = race(
        monkeypatch,
        lambda _: other.merge_upsert(
            FEATURES, features(range(11, 25), source="b"), "flower_id", whole=("source", "b")
        ),
    )
    before = store.version(FEATURES)
    # Source a drops flowers 6-10 and corrects flower 1's length: one MERGE, raced by b.
    offered = features(range(1, 6), source="a")
    offered.loc[0, "sepal_length_cm"] = 6.5
    result = store.merge_upsert(
        FEATURES, offered, "flower_id", compare=COMPARE, whole=("source", "a")
    )
    assert fired == [1]
    assert (result["updated"], result["deleted"], result["inserted"]) == (1, 5, 0)
    assert result["version"] == before + 2  # b's commit, then a's: nothing lost, nothing twice
    assert held(store, "a").index.tolist() == [1, 2, 3, 4, 5]
    assert held(store, "a").loc[1, "sepal_length_cm"] == 6.5
    assert held(store, "b").index.tolist() == list(range(11, 25))


def test_a_plain_merge_raced_by_an_append_lands_once(store, monkeypatch):
    race(
        monkeypatch,
        lambda _: store.merge_upsert(FEATURES, features(range(30, 33), source="c"), "flower_id"),
    )
    result = store.merge_upsert(FEATURES, features(range(40, 43), source="a"), "flower_id")
    assert result["inserted"] == 3
    assert store.count(FEATURES) == 20 + 3 + 3


def test_the_retry_sees_what_the_winner_wrote(store, monkeypatch):
    """The winner already wrote the very rows this MERGE offers: the retry commits nothing."""
    race(
        monkeypatch,
        lambda _: store.merge_upsert(FEATURES, features(range(50, 53), source="a"), "flower_id"),
    )
    before = store.version(FEATURES)
    result = store.merge_upsert(
        FEATURES, features(range(50, 53), source="a"), "flower_id", compare=COMPARE
    )
    assert (result["inserted"], result["updated"]) == (0, 0)
    assert result["version"] == before + 1  # only the winner's commit
    assert store.count(FEATURES, "flower_id >= 50") == 3


def test_a_merge_that_loses_every_race_is_a_conflict_and_leaves_its_rows_out(store, monkeypatch):
    fired = race(
        monkeypatch,
        lambda n: store.merge_upsert(FEATURES, features([100 + n], source="b"), "flower_id"),
        times=99,
    )
    with pytest.raises(TableError) as failure:
        store.merge_upsert(
            FEATURES,
            features(range(1, 4), source="a"),
            "flower_id",
            whole=("source", "a"),
            retries=2,
        )
    message = str(failure.value)
    assert "CHECK constraints" not in message
    assert "conflicted with a concurrent write" in message and "tried 3 times" in message
    assert len(fired) == 3
    assert held(store, "a").index.tolist() == list(range(1, 11))  # nothing of this MERGE landed


def test_a_check_violation_is_still_reported_as_one(store):
    with pytest.raises(TableError, match="CHECK constraints: species_known"):
        store.merge_upsert(FEATURES, features([7], species=5, source="a"), "flower_id")
