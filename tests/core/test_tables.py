import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    FEATURE_TABLE_SCHEMA,
    INFERENCE_TABLE_SCHEMA,
)
from iris_assets.core.tables import DeltaTableStore, TableError, TableStore, sql_string
from iris_assets.settings import load_settings

FEATURES = "iris_dev.ml.iris_features"
INFERENCES = "iris_dev.ml.iris_inferences"
CONSTRAINTS = {"species_known": "species >= 0 AND species <= 2"}


@pytest.fixture
def store(tmp_path) -> DeltaTableStore:
    return DeltaTableStore(tmp_path / "warehouse")


def features(ids, length=5.0, **overrides) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame(
        {
            "flower_id": ids,
            **{c: length for c in FEATURE_COLUMNS},
            "species": [i % 3 for i in ids],
            "species_name": "setosa",
            "split": "train",
            "source": "tests",
            # Nanoseconds from pandas: the store truncates them to the table's microseconds.
            "ingested_at": pd.Timestamp.now(tz="UTC"),
            **overrides,
        }
    )


def inferences(day: str, ids) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame(
        {
            "flower_id": ids,
            "observed_date": day,
            "observed_at": pd.Timestamp(f"{day}T12:00:00Z"),
            **{c: 1.0 for c in FEATURE_COLUMNS},
            "prediction": 0,
            "species_name": "setosa",
            "probability": 0.9,
            "model_name": "iris_dev.ml.iris_model",
            "model_version": "1",
            "predicted_at": datetime.now(UTC),
        }
    )


def test_store_is_a_table_store_at_the_settings_path(store, tmp_path):
    assert isinstance(store, TableStore)
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    assert DeltaTableStore(settings.warehouse).path(FEATURES) == settings.table_path(FEATURES)
    with pytest.raises(TableError, match="catalog.schema.table"):
        store.path("just_a_table")
    with pytest.raises(TableError, match="catalog.schema.table"):
        store.path("a.b/../c.d")


def test_ensure_table_creates_once(store):
    assert not store.exists(FEATURES)
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints=CONSTRAINTS)
    assert store.exists(FEATURES)
    version = store.version(FEATURES)
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints=CONSTRAINTS)
    assert store.version(FEATURES) == version
    assert store.count(FEATURES) == 0
    empty = store.read(FEATURES)
    assert list(empty.columns) == FEATURE_TABLE_SCHEMA.names and empty.empty


def test_ensure_table_refuses_a_different_layout(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints=CONSTRAINTS)
    with pytest.raises(TableError, match="different layout"):
        store.ensure_table(FEATURES, INFERENCE_TABLE_SCHEMA)
    with pytest.raises(TableError, match="species_known"):
        store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints={"species_known": "1 = 1"})


def test_not_null_is_enforced_with_a_clear_error(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    rows = features([1, 2])
    rows["flower_id"] = [1, None]
    with pytest.raises(TableError, match="flower_id is NOT NULL but 1 of 2 rows are null"):
        store.append(FEATURES, rows)
    with pytest.raises(TableError, match="no column split"):
        store.append(FEATURES, features([1]).drop(columns=["split"]))
    assert store.count(FEATURES) == 0


def test_check_constraint_is_enforced(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints=CONSTRAINTS)
    with pytest.raises(TableError, match="species_known"):
        store.append(FEATURES, features([1], species=7))
    with pytest.raises(TableError, match="rejected"):
        store.merge_upsert(FEATURES, features([1], species=7), key="flower_id")
    assert store.count(FEATURES) == 0


def test_merge_is_idempotent_and_updates_changed_rows(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA, constraints=CONSTRAINTS)
    batch = features(range(1, 151))
    first = store.merge_upsert(FEATURES, batch, key="flower_id")
    assert (first["inserted"], first["updated"]) == (150, 0)
    again = store.merge_upsert(FEATURES, batch, key="flower_id")
    assert (again["inserted"], again["updated"]) == (0, 0)
    assert again["version"] == first["version"]  # nothing changed, nothing committed
    assert store.count(FEATURES) == 150

    changed = batch.copy()
    changed.loc[changed["flower_id"] == 7, "petal_width_cm"] = 2.5
    third = store.merge_upsert(FEATURES, changed, key="flower_id")
    assert (third["inserted"], third["updated"]) == (0, 1)
    assert third["version"] > first["version"]
    table = store.read(FEATURES, order_by="flower_id")
    assert table["flower_id"].tolist() == list(range(1, 151))
    assert table.loc[table["flower_id"] == 7, "petal_width_cm"].item() == 2.5


def test_merge_deduplicates_the_source_last_wins(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    source = pd.concat([features([1, 2], length=1.0), features([2, 3], length=2.0)])
    result = store.merge_upsert(FEATURES, pa.Table.from_pandas(source), key="flower_id")
    assert (result["inserted"], result["deduplicated"]) == (3, 1)
    table = store.read(FEATURES, order_by="flower_id")
    assert table["flower_id"].tolist() == [1, 2, 3]
    assert table["sepal_length_cm"].tolist() == [1.0, 2.0, 2.0]


def test_replace_partition_touches_only_its_partition(store):
    store.ensure_table(INFERENCES, INFERENCE_TABLE_SCHEMA, partition_by=["observed_date"])
    store.replace_partition(
        INFERENCES, inferences("2026-01-01", range(10)), "observed_date", "2026-01-01"
    )
    store.replace_partition(
        INFERENCES, inferences("2026-01-02", range(10, 15)), "observed_date", "2026-01-02"
    )
    for _ in range(2):
        store.replace_partition(
            INFERENCES, inferences("2026-01-01", range(100, 104)), "observed_date", "2026-01-01"
        )
    assert store.distinct(INFERENCES, "observed_date") == ["2026-01-01", "2026-01-02"]
    assert store.count(INFERENCES, "observed_date = '2026-01-01'") == 4
    assert store.count(INFERENCES, "observed_date = '2026-01-02'") == 5
    day = store.read(INFERENCES, predicate="observed_date = '2026-01-01'", order_by="flower_id")
    assert day["flower_id"].tolist() == [100, 101, 102, 103]
    # An empty replacement empties the partition.
    store.replace_partition(INFERENCES, inferences("2026-01-02", []), "observed_date", "2026-01-02")
    assert store.distinct(INFERENCES, "observed_date") == ["2026-01-01"]


def test_replace_where_refuses_rows_outside_the_predicate(store):
    store.ensure_table(INFERENCES, INFERENCE_TABLE_SCHEMA, partition_by=["observed_date"])
    store.append(INFERENCES, inferences("2026-01-01", range(3)))
    with pytest.raises(TableError):
        store.replace_where(
            INFERENCES, inferences("2026-01-02", [9]), "observed_date = '2026-01-01'"
        )
    assert store.count(INFERENCES) == 3


def test_replace_partition_escapes_the_value(store):
    schema = pa.schema([pa.field("source", pa.string(), nullable=False), pa.field("n", pa.int64())])
    store.ensure_table("c.s.odd", schema, partition_by=["source"])
    value = "it's /tmp/a b.csv"
    store.replace_partition("c.s.odd", pd.DataFrame({"source": [value], "n": [1]}), "source", value)
    store.replace_partition("c.s.odd", pd.DataFrame({"source": [value], "n": [2]}), "source", value)
    assert store.read("c.s.odd").to_dict("records") == [{"source": value, "n": 2}]
    assert sql_string(value) == "'it''s /tmp/a b.csv'"


def test_read_columns_predicate_types_and_versions(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    versions = [store.version(FEATURES)]
    versions.append(store.append(FEATURES, features([1, 2, 3])))
    versions.append(store.append(FEATURES, features([4, 5], split="test")))
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert store.append(FEATURES, features([])) == versions[-1]

    test = store.read(FEATURES, columns=["flower_id", "split"], predicate="split = 'test'")
    assert list(test.columns) == ["flower_id", "split"]
    assert sorted(test["flower_id"]) == [4, 5]
    everything = store.read(FEATURES)
    assert str(everything["ingested_at"].dtype) == "datetime64[us, UTC]"
    assert everything["flower_id"].dtype == "int64"
    assert store.count(FEATURES, "flower_id > 2") == 3
    assert store.distinct(FEATURES, "split") == ["test", "train"]
    with pytest.raises(TableError, match="no columns"):
        store.read(FEATURES, columns=["nope"])
    with pytest.raises(TableError, match="query on"):
        store.read(FEATURES, predicate="nope = 1")


def test_a_read_returns_one_snapshot_when_a_writer_commits_during_it(store, monkeypatch):
    """The columns a read checks and the rows it returns come from the same table version,
    even when another writer commits between the two (here: right after the check)."""
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    store.append(FEATURES, features([1, 2, 3]))
    checked = DeltaTableStore._schema

    def check_then_another_writer_commits(table):
        schema = checked(table)
        monkeypatch.setattr(DeltaTableStore, "_schema", staticmethod(checked))
        DeltaTableStore(store.warehouse).append(FEATURES, features([4]))
        return schema

    monkeypatch.setattr(DeltaTableStore, "_schema", staticmethod(check_then_another_writer_commits))
    assert sorted(store.read(FEATURES)["flower_id"]) == [1, 2, 3]
    assert sorted(store.read(FEATURES)["flower_id"]) == [1, 2, 3, 4]  # the next read sees it


@pytest.mark.parametrize("write", ["append", "replace_partition", "merge_upsert"])
def test_a_write_returns_its_own_commits_version_when_another_writer_commits_after_it(
    store, monkeypatch, write
):
    """The version a write returns (what an asset reports as its ``delta_version``) is the
    commit it made, not a later one another writer made before the write returned."""
    from iris_assets.core import tables

    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    store.append(FEATURES, features([1, 2, 3]))
    other = DeltaTableStore(store.warehouse)
    wrote, merge = tables.write_deltalake, tables.DeltaTable.merge

    def then_another_writer(*args, **kwargs):
        monkeypatch.setattr(tables, "write_deltalake", wrote)
        result = wrote(*args, **kwargs)
        other.append(FEATURES, features([9]))
        return result

    class ThenAnotherWriter:
        def __init__(self, merger):
            self.merger = merger

        def __getattr__(self, name):
            def chained(*args, **kwargs):
                step = getattr(self.merger, name)(*args, **kwargs)
                if name != "execute":
                    return ThenAnotherWriter(step)
                other.append(FEATURES, features([9]))
                return step

            return chained

    if write == "merge_upsert":
        monkeypatch.setattr(
            tables.DeltaTable, "merge", lambda t, *a, **k: ThenAnotherWriter(merge(t, *a, **k))
        )
    else:
        monkeypatch.setattr(tables, "write_deltalake", then_another_writer)
    before = store.version(FEATURES)
    if write == "append":
        returned = store.append(FEATURES, features([4]))
    elif write == "replace_partition":
        returned = store.replace_partition(FEATURES, features([1], split="test"), "split", "test")
    else:
        returned = store.merge_upsert(FEATURES, features([1, 5], length=6.0), "flower_id")[
            "version"
        ]
    assert returned == before + 1
    assert store.version(FEATURES) == before + 2  # the other writer's commit came after it


def test_a_tagged_replace_told_it_conflicted_after_it_landed_returns_its_commit(store, monkeypatch):
    """A commit that landed, yet its writer was told it conflicted (and another writer
    committed since): the write is not made twice and returns the version of its own commit."""
    from deltalake.exceptions import CommitFailedError

    from iris_assets.core import tables

    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    store.append(FEATURES, features([1, 2, 3]))
    wrote, writes = tables.write_deltalake, []

    def landed_then_told_it_conflicted(*args, **kwargs):
        writes.append(wrote(*args, **kwargs))
        monkeypatch.setattr(tables, "write_deltalake", wrote)  # the other writer's is plain
        DeltaTableStore(store.warehouse).append(FEATURES, features([9]))
        monkeypatch.setattr(tables, "write_deltalake", landed_then_told_it_conflicted)
        raise CommitFailedError("told it conflicted")

    monkeypatch.setattr(tables, "write_deltalake", landed_then_told_it_conflicted)
    before = store.version(FEATURES)
    tags = {"iris.run": "this-write"}
    returned = store.replace_partition(FEATURES, features([1], split="test"), "split", "test", tags)
    assert len(writes) == 1
    assert returned == before + 1 and store.version(FEATURES) == before + 2
    assert store.commit_tags(FEATURES)[1] == tags  # the version returned is the tagged commit


def test_a_store_sees_what_other_writers_committed_since_its_last_look(store):
    """Each operation of a store reads the table's latest version, whoever committed it (a
    store that kept its handles between operations would have to bring them up to date)."""
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    other = DeltaTableStore(store.warehouse)
    store.append(FEATURES, features([1]))
    for n in range(2, 5):
        before = store.version(FEATURES)
        other.merge_upsert(FEATURES, features([n]), key="flower_id")
        assert store.version(FEATURES) == before + 1
        assert sorted(store.read(FEATURES)["flower_id"]) == list(range(1, n + 1))
        assert store.count(FEATURES) == n
    other.replace_partition(FEATURES, features([7], split="test"), "split", "test", {"iris.a": "b"})
    assert store.commit_tags(FEATURES)[0] == {"iris.a": "b"}
    assert store.distinct(FEATURES, "split") == ["test", "train"]
    # Its own write lands on the latest version too: nothing another writer committed is lost.
    store.merge_upsert(FEATURES, features([1], length=9.0), key="flower_id")
    assert sorted(other.read(FEATURES)["flower_id"]) == [1, 2, 3, 4, 7]


@pytest.mark.parametrize("commits", [0, 1, 6])
def test_a_table_deleted_and_made_again_behind_a_stores_back_reads_as_the_new_table(store, commits):
    """deltalake brings a handle up to date by reading the commits after its own from whatever
    table is at the path now: on a table made again that mixes the old table's files and schema
    with the new one's commits. The store sees the new table alone, however many commits it has
    (fewer, as many as or more than the old one): it opens the table for each operation."""
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    for n in range(1, 4):
        store.append(FEATURES, features([n]))
    assert store.count(FEATURES) == 3
    shutil.rmtree(store.path(FEATURES))
    with pytest.raises(TableError, match="does not exist"):
        store.read(FEATURES)
    other = DeltaTableStore(store.warehouse)
    other.ensure_table(INFERENCES, INFERENCE_TABLE_SCHEMA)
    shutil.copytree(other.path(INFERENCES), store.path(FEATURES))
    for n in range(commits):
        other.append(INFERENCES, inferences("2026-11-02", [n]))
        shutil.rmtree(store.path(FEATURES))
        shutil.copytree(other.path(INFERENCES), store.path(FEATURES))
    read = store.read(FEATURES)
    assert list(read.columns) == INFERENCE_TABLE_SCHEMA.names
    assert sorted(read["flower_id"]) == list(range(commits))
    assert store.version(FEATURES) == other.version(INFERENCES)


def test_a_table_made_again_at_the_same_versions_reads_as_the_new_table(store):
    """The same number of commits, made again after the store last looked: the store reads the
    new table, not the old one's snapshot with the new one's later commits."""
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    store.append(FEATURES, features([1, 2]))
    assert store.count(FEATURES) == 2
    shutil.rmtree(store.path(FEATURES))
    other = DeltaTableStore(store.warehouse)
    other.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    other.append(FEATURES, features([5, 6, 7]))
    assert store.version(FEATURES) == other.version(FEATURES)
    assert sorted(store.read(FEATURES)["flower_id"]) == [5, 6, 7]


@pytest.mark.parametrize("operation", ["read", "append"])
def test_a_table_made_again_during_an_operation_is_what_the_next_operations_see(
    store, monkeypatch, operation
):
    """Another writer deletes the table and makes it again (and commits to it) while an
    operation of the store is under way: every later operation of the store reads what a fresh
    open of the table reads, never the old table's rows with the new one's commits (a store
    that kept the handle of that operation and brought it up to date would)."""
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    store.append(FEATURES, features([1, 2, 3]))
    assert store.count(FEATURES) == 3
    checked = DeltaTableStore._schema
    other = DeltaTableStore(store.warehouse)

    def made_again_meanwhile(table):
        schema = checked(table)
        monkeypatch.setattr(DeltaTableStore, "_schema", staticmethod(checked))
        shutil.rmtree(store.path(FEATURES))
        other.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
        other.append(FEATURES, features([7, 8, 9]))
        other.append(FEATURES, features([10]))
        return schema

    monkeypatch.setattr(DeltaTableStore, "_schema", staticmethod(made_again_meanwhile))
    try:  # the operation itself may fail: the files it was reading were deleted under it
        store.read(FEATURES) if operation == "read" else store.append(FEATURES, features([50]))
    except TableError as error:
        assert "not found" in str(error), error
    for _ in range(2):
        fresh = DeltaTable(str(store.path(FEATURES)))
        assert store.version(FEATURES) == fresh.version()
        assert sorted(store.read(FEATURES)["flower_id"]) == sorted(fresh.to_pandas()["flower_id"])
        other.append(FEATURES, features([99]))


def test_a_table_made_again_whose_commit_file_has_the_old_ones_inode_size_and_mtime(store):
    """Where file times are coarse (whole seconds on ext3, FAT, many network mounts), a table
    made again within the second can have commit files that look like the old ones to ``stat``
    (Linux hands a freed inode out again at once, same-shaped commits have the same size): the
    store still reads the new table (a guard on the commit file's stat would not)."""
    import os

    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    store.append(FEATURES, features([1, 2]))
    commit = store.path(FEATURES) / "_delta_log" / f"{1:020d}.json"
    before = commit.stat()
    assert store.count(FEATURES) == 2
    shutil.rmtree(store.path(FEATURES))
    other = DeltaTableStore(store.warehouse)
    other.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    other.append(FEATURES, features([5, 6]))
    os.utime(commit, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert sorted(store.read(FEATURES)["flower_id"]) == [5, 6]


def test_missing_table_errors(store):
    for call in (
        lambda: store.read("a.b.missing"),
        lambda: store.version("a.b.missing"),
        lambda: store.append("a.b.missing", features([1])),
        lambda: store.merge_upsert("a.b.missing", features([1]), key="flower_id"),
    ):
        with pytest.raises(TableError, match="a.b.missing does not exist"):
            call()


def test_compact_merges_small_files(store):
    store.ensure_table(FEATURES, FEATURE_TABLE_SCHEMA)
    for i in range(4):
        store.append(FEATURES, features([i]))
    metrics = store.compact(FEATURES)
    assert metrics["numFilesRemoved"] == 4 and metrics["numFilesAdded"] == 1
    assert sorted(store.read(FEATURES)["flower_id"]) == [0, 1, 2, 3]


def test_short_lived_reader_processes_exit_cleanly(store):
    """A threaded pyarrow scan aborts some short-lived processes at exit (rc 134): reads must not.

    The abort is intermittent (roughly one process in ten to one in four on a table like this
    one), so this guards the read path rather than proving the abort can never happen.
    """
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("day", pa.string(), nullable=False),
            pa.field("x", pa.float64()),
        ]
    )
    store.ensure_table("c.s.many_files", schema, partition_by=["day"])
    for batch in range(10):
        ids = np.arange(batch * 20_000, (batch + 1) * 20_000)
        store.append("c.s.many_files", pd.DataFrame({"id": ids, "day": f"d{batch % 4}", "x": 0.5}))
    script = textwrap.dedent(
        f"""
        from iris_assets.core.tables import DeltaTableStore
        store = DeltaTableStore({str(store.warehouse)!r})
        assert len(store.read("c.s.many_files")) == 200_000
        assert store.count("c.s.many_files", "day = 'd1'") == 60_000
        print(len(store.distinct("c.s.many_files", "day")))
        """
    )
    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "4"


def test_arrow_input_is_cast_and_missing_nullable_columns_are_null(store):
    store.ensure_table(INFERENCES, INFERENCE_TABLE_SCHEMA, partition_by=["observed_date"])
    rows = inferences("2026-01-01", [1, 2]).drop(columns=["observed_at"])
    rows["prediction"] = rows["prediction"].astype("int32")
    rows["predicted_at"] = pd.Timestamp("2026-01-01T10:00:00")  # naive: taken as UTC
    store.append(INFERENCES, pa.Table.from_pandas(rows, preserve_index=False))
    back = store.read(INFERENCES, order_by="flower_id")
    assert back["observed_at"].isna().all()
    assert back["prediction"].dtype == "int64"
    assert back["predicted_at"].iloc[0] == pd.Timestamp("2026-01-01T10:00:00Z")


def test_a_fragmented_table_is_compacted_and_reads_the_same(tmp_path):
    import pyarrow as pa

    from iris_assets.core.tables import DeltaTableStore

    store = DeltaTableStore(tmp_path)
    schema = pa.schema([pa.field("day", pa.string(), nullable=False), pa.field("n", pa.int64())])
    store.ensure_table("c.s.daily", schema, partition_by=["day"])
    for day in range(12):
        for _ in range(3):  # re-runs of a day replace its file
            store.replace_partition(
                "c.s.daily",
                pa.table({"day": [f"d{day % 4}"], "n": [day]}, schema=schema),
                "day",
                f"d{day % 4}",
            )
        store.append(
            "c.s.daily", pa.table({"day": [f"d{day % 4}"], "n": [100 + day]}, schema=schema)
        )
    before = store.read("c.s.daily", order_by=["day", "n"])
    assert store.compact_if_fragmented("c.s.daily", max_files=64) is None
    metrics = store.compact_if_fragmented("c.s.daily", max_files=4)
    assert metrics["numFilesRemoved"] > metrics["numFilesAdded"]
    assert len(store._table("c.s.daily").file_uris()) <= 4
    assert store.read("c.s.daily", order_by=["day", "n"]).equals(before)


def test_a_table_made_before_a_nullable_column_existed_gains_it(store):
    import pyarrow as pa

    older = pa.schema([f for f in INFERENCE_TABLE_SCHEMA if f.name != "run_id"])
    store.ensure_table("iris_dev.ml.old_inferences", older, partition_by=["observed_date"])
    store.ensure_table(
        "iris_dev.ml.old_inferences", INFERENCE_TABLE_SCHEMA, partition_by=["observed_date"]
    )
    assert list(store.read("iris_dev.ml.old_inferences").columns) == INFERENCE_TABLE_SCHEMA.names


def test_a_partition_commit_that_writes_no_rows_still_carries_its_tags(store):
    """The run that emptied a partition is read back from the commit (core.accounting)."""
    store.ensure_table(INFERENCES, INFERENCE_TABLE_SCHEMA, partition_by=["observed_date"])
    store.replace_partition(
        INFERENCES, inferences("2026-01-01", [1]), "observed_date", "2026-01-01"
    )
    tags = {"iris.day": "2026-01-01", "iris.run_id": "b.1"}
    store.replace_partition(
        INFERENCES, inferences("2026-01-01", []), "observed_date", "2026-01-01", tags
    )
    assert store.count(INFERENCES) == 0
    assert store.commit_tags(INFERENCES)[0] == tags
    assert store.commit_tags(INFERENCES)[-1] == {}, "untagged commits give no tags"
