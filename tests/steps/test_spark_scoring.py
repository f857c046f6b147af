"""One behaviour, two engines: a bad-data corpus scored by Spark (local SparkSession) and locally.

Delta's Spark jars cannot be fetched here, so table writes are covered by the SQL tests of
``SparkTableStore``; these tests run the distributed part for real: reading the day's files,
deciding duplicates across files, validating and scoring inside ``mapInPandas``, the drift
sample, and the MERGE's change predicate.
"""

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.core.drift import in_sample
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import VersionInfo
from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    INFERENCE_TABLE_SCHEMA,
    LANDING_COLUMNS,
    REJECTS_TABLE_SCHEMA,
)
from iris_assets.core.tables import DeltaTableStore
from iris_assets.core.validation import ID_RULE, OBSERVED_AT_RULE
from iris_assets.settings import load_settings
from iris_assets.steps.day_scoring import NoLandingData, score_day_locally, select_day_files
from iris_assets.steps.spark_scoring import (
    SESSION_TIME_ZONE,
    day_outcome,
    drift_sample,
    split_outcome,
    utc_session,
)
from tests import local_spark
from tests.steps.test_day_scoring import corrupt_parquet

DAY = "2026-11-24"


@pytest.fixture(scope="module")
def spark():
    return local_spark.session(shuffle_partitions=2)


@pytest.fixture(scope="module")
def model():
    iris = load_iris(as_frame=True)
    return LogisticRegression(max_iter=300).fit(
        iris.data.set_axis(list(FEATURE_COLUMNS), axis=1), iris.target
    )


def write(folder, name, frame):
    folder.mkdir(parents=True, exist_ok=True)
    if name.lower().endswith(".csv"):
        frame.to_csv(folder / name, index=False)
    else:
        frame.to_parquet(folder / name, index=False)


def bad_corpus(settings):
    """One day of everything that goes wrong, in files both engines must read the same way."""
    folder = LandingArea(settings.landing_dir).day_dir(DAY)
    good = simulate_flowers(30, DAY, seed=5)
    good.loc[0, "flower_id"] = 2**53
    good.loc[1, "flower_id"] = 2**53 + 1
    first = good.iloc[:4].astype(str)
    first.loc[2, "petal_length_cm"] = ""  # invalid first occurrence: the later valid one wins
    first.loc[3, "sepal_width_cm"] = "wide"
    write(folder, "batch-0.csv", first.iloc[2:])
    write(folder, "batch-1.parquet", good)
    late = good.iloc[5:8].copy()
    late["observed_at"] = pd.Timestamp("2026-11-25T03:00:00Z")  # not on the partition day
    write(folder, "batch-2.PARQUET", late.assign(flower_id=[11, 12, 13]))
    repeat = good.iloc[[0, 1, 9]].astype(str)  # valid repeats: duplicates
    repeat.loc[repeat.index[2], "flower_id"] = str(2**53 + 2)  # new: 2**53 + 2 is not 2**53
    write(folder, "flowers.csv", repeat)
    # Each CSV's header names its own columns, and a space in a name is only a name.
    newcomers = good.iloc[10:13].assign(flower_id=[21, 22, 23])
    write(folder, "batch-3 reordered.csv", newcomers[list(reversed(newcomers.columns))])
    write(folder, "zz late repeat.csv", newcomers.iloc[:1].assign(sepal_length_cm=7.7))
    (folder / "broken.parquet").write_bytes(b"not parquet")
    (folder / "notes.txt").write_text("collector notes")
    # Quoted fields spanning lines: one row each, counted and read alike.
    notes = good.iloc[13:16].assign(flower_id=[31, 32, 33], note=["a\nb", 'say ""hi""\n', "\n\n"])
    write(folder, "batch-4 notes.csv", notes)
    # Id spellings that name a number but are not canonical ids, and observed_at text.
    odd = good.iloc[16:24].astype(str)
    odd["flower_id"] = ["1e3", "+8", "007", " 5", "5.0", "41", "42", "43"]
    odd["observed_at"] = [*odd["observed_at"][:5], "yesterday", "", f"{DAY}T23:59:59Z"]
    write(folder, "batch-5 odd.csv", odd)
    write(folder, "batch-6 float ids.parquet", good.iloc[24:26].assign(flower_id=[61.0, 62.0]))
    narrow = pa.Table.from_pandas(good.iloc[23:24].assign(flower_id=[81]), preserve_index=False)
    narrow = narrow.set_column(1, "sepal_length_cm", narrow.column(1).cast(pa.float32()))
    pq.write_table(narrow, folder / "batch-6c float32.parquet")
    short = good.iloc[20:21].assign(flower_id=[91]).to_csv(index=False).splitlines()
    (folder / "batch-6d short.csv").write_text(f"{short[0]}\n91,5.1,3.5\n{short[1]}\n")
    # Bad bytes past the first line, a corrupt page behind a good footer, a link out: each
    # costs its own file only.
    text = good.iloc[26:29].to_csv(index=False).splitlines(keepends=True)
    text[2] = text[2].rstrip("\n") + ",caf\xe9\n"
    (folder / "latin1.csv").write_bytes("".join(text).encode("latin-1"))
    corrupt_parquet(good.iloc[26:29], folder / "corrupt.parquet")
    outside = folder.parent.parent / "outside.csv"
    good.iloc[:3].to_csv(outside, index=False)
    (folder / "linked.csv").symlink_to(outside)
    # Lines of only spaces and tabs, quoted or not, are blank lines, not records, on both.
    blank = good.iloc[29:30].assign(flower_id=[71]).to_csv(index=False).splitlines()
    lines = [*blank, "   ", '"   "', "\t", '"\t"', blank[1].replace("71,", "72,", 1), ""]
    (folder / "batch-7 blank lines.csv").write_text("\n".join(lines))
    # Column names are exact: another case, or a repeated name, costs the file, on both.
    shouting = good.iloc[:1].rename(columns={"flower_id": "FLOWER_ID"}).to_csv(index=False)
    (folder / "batch-8 shouting.csv").write_text(shouting)
    twice = good.iloc[:1].to_csv(index=False).splitlines()
    (folder / "batch-9 twice.csv").write_text(f"{twice[0]},flower_id\n{twice[1]},9\n")
    # Nanosecond timestamps: Spark cannot read them; the file alone is quarantined, on both.
    nanos = good.iloc[:2].astype({"observed_at": "datetime64[ns, UTC]"})
    pq.write_table(pa.Table.from_pandas(nanos, preserve_index=False), folder / "nanos.parquet")
    typed_corpus(folder)
    return good


def micros(values, tz=None):
    stamps = pd.to_datetime(pd.Series(values), format="ISO8601")
    stamps = stamps.dt.tz_localize(tz) if tz else stamps
    return stamps.astype(f"datetime64[us, {tz}]" if tz else "datetime64[us]")


def typed_corpus(folder):
    """Rejected rows whose record each engine used to spell its own way, and typed values
    Spark's text would have judged differently (ids from 1000 up)."""
    good = simulate_flowers(30, DAY, seed=7).assign(flower_id=range(1000, 1030))
    # Doubles that are not written one way: -0.0, 1e20, infinities, NaN; float ids.
    floats = good.iloc[0:6].assign(
        sepal_length_cm=[-0.0, 1e20, np.inf, np.nan, -np.inf, 5.1],
        flower_id=[1000.0, 1e20, -0.0, 1003.5, 1004.0, 1005.0],
        EXTRA=["a", None, "", "b", "c", "d"],  # `extra` in another file is another column
    )
    floats.to_parquet(folder / "batch-a floats.parquet", index=False)
    single = pa.Table.from_pandas(
        good.iloc[6:8].assign(petal_width_cm=[-0.1, 5.1], sepal_length_cm=-1.5),
        preserve_index=False,
    )
    column = single.schema.get_field_index("petal_width_cm")
    single = single.set_column(column, "petal_width_cm", single.column(column).cast(pa.float32()))
    pq.write_table(single, folder / "batch-b float32.parquet")
    # Extra columns of every kind, and names Spark would parse or this code uses itself.
    kinds = good.iloc[8:10].assign(
        sepal_width_cm=-1.0,
        extra=["x", "y"],
        flag=[True, None],
        count=pd.array([3, None], dtype="Int64"),
        big=pd.array([2**64 - 1, 1], dtype="UInt64"),
        price=[Decimal("5.00"), Decimal("0.0000001")],
        day=[dt.date(2026, 11, 24), None],
        local=micros(["2026-11-24 10:00:00.5", None]).to_numpy(),
        paris=micros(["2026-11-24 10:00:00", "2026-11-24 12:00:00.000001"], "Europe/Paris").array,
        blob=[b"caf\xc3\xa9", b"\xff\x00"],
        nothing=None,
        hour=np.array([1, 2], dtype="int8"),
        **{"a.b": "dot", "back`tick": "bt", "_iris_file": "mine", "_iris_seen": "True"},
    )
    pq.write_table(
        pa.Table.from_pandas(kinds, preserve_index=False), folder / "batch-c kinds.parquet"
    )
    # Text: empty fields, an offset kept as written, spaces around a number, `extra` again.
    text = good.iloc[10:13].astype(str).assign(extra=["", "q", "r"])
    text.loc[text.index[0], "petal_length_cm"] = "-3"
    text.loc[text.index[1], ["observed_at", "sepal_width_cm"]] = ["2026-11-24T10:00:00+02:00", "0"]
    text.loc[text.index[2], ["sepal_length_cm", "petal_width_cm"]] = [" 5.1 ", "0.0"]
    text.to_csv(folder / "batch-d lower.csv", index=False)
    # flower_id stored as the pandas index: a column to Spark, so a column to both.
    indexed = good.iloc[13:16].set_index("flower_id").assign(sepal_width_cm=[-2.0, 3.0, 3.1])
    pq.write_table(
        pa.Table.from_pandas(indexed, preserve_index=True), folder / "batch-e index.parquet"
    )
    bom = good.iloc[16:18].assign(sepal_width_cm=[-2.0, 3.0]).to_csv(index=False)
    (folder / "batch-f bom.csv").write_bytes(b"\xef\xbb\xbf" + bom.encode())
    lines = good.iloc[18:20].to_csv(index=False).splitlines()
    (folder / "batch-g empty name.csv").write_text("".join(f"{line},\n" for line in lines))
    good.iloc[20:21].assign(Extra=1, extra=2).to_parquet(folder / "batch-h twice.parquet")
    nested = good.iloc[21:22].assign(tags=[[1, 2]])
    nested.to_parquet(folder / "batch-i nested.parquet", index=False)
    # Typed values whose Spark text would pass: an integer observed_at that reads as an ISO
    # date, bytes that read as an id and a number, a naive observed_at (UTC), a uint64 id.
    odd = pa.table(
        {
            "flower_id": pa.array([b"1022", b"1023", b"1024", b"1025"], pa.binary()),
            "sepal_length_cm": pa.array([b"5.1", b"5.2", b"5.3", b"5.4"], pa.binary()),
            **{c: pa.array(good[c].iloc[22:26].to_numpy()) for c in FEATURE_COLUMNS[1:]},
            "observed_at": pa.array([20261124, None, 20261124, None], pa.int64()),
        }
    )
    pq.write_table(odd, folder / "batch-j typed odd.parquet")
    naive = good.iloc[26:30].assign(
        observed_at=micros(
            [f"{DAY} 10:00:00", f"{DAY} 23:30:00", "2026-11-25 00:30:00", None]
        ).to_numpy()
    )
    ids = pa.array([2**64 - 1, 1027, 1028, 1029], pa.uint64())
    naive = pa.Table.from_pandas(naive, preserve_index=False)
    naive = naive.set_column(0, "flower_id", ids).append_column("on", pa.array([True] * 4))
    pq.write_table(naive, folder / "batch-k naive.parquet")


def test_one_bad_corpus_gives_the_same_rows_on_both_engines(spark, model, tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    good = bad_corpus(settings)
    champion = VersionInfo("iris_dev.ml.iris_model", "4", {}, ("champion",), None, None)
    store = DeltaTableStore(settings.warehouse)
    run = "parity-run"
    local = score_day_locally(store, settings, DAY, champion, model, batch_rows=3, run_id=run)
    local_scored = store.read(settings.inference_table, order_by="flower_id")
    local_rejects = store.read(settings.rejects_table)
    assert not local.problems, local.problems

    files = select_day_files(settings, DAY)
    at = pd.Timestamp.now(tz="UTC")
    # A session outside UTC (a workspace default): the day's observed_at must not move with it.
    spark.conf.set(SESSION_TIME_ZONE, "America/New_York")
    try:
        frames = split_outcome(
            spark, day_outcome(spark, settings, files, champion, model, at, run), files, run
        )
        with utc_session(spark):  # only how this test collects: pandas gets UTC wall times
            scored, rejects = (frame.toPandas() for frame in frames)
    finally:
        spark.conf.set(SESSION_TIME_ZONE, "UTC")
    scored = scored.sort_values("flower_id").reset_index(drop=True)

    assert local.landing_rows == files.landing_rows == 42 + 3 + 8 + 2 + 2 + 3 + 26
    assert len(local_scored) == len(scored) == 34 + 3 + 2 + 2 + 2 + 7
    assert set(rejects["run_id"]) == set(local_rejects["run_id"]) == {run}
    # Whole rows: every column but the two wall clocks (when each engine wrote).
    compared = [c for c in INFERENCE_TABLE_SCHEMA.names if c != "predicted_at"]
    pd.testing.assert_frame_equal(local_scored[compared], scored[compared], check_dtype=False)
    assert scored["predicted_at"].nunique() == local_scored["predicted_at"].nunique() == 1
    assert 2**53 + 1 in set(scored["flower_id"]) and 2**53 + 2 in set(scored["flower_id"])
    newcomers = good.iloc[10:13].set_axis([21, 22, 23])[list(FEATURE_COLUMNS)]
    by_id = scored.set_index("flower_id").loc[[21, 22, 23], list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(by_id, newcomers, check_dtype=False, check_names=False)

    assert whole_rows(local_rejects) == whole_rows(rejects)
    assert rejects["rejected_at"].notna().all() and local_rejects["rejected_at"].notna().all()
    assert Counter(rejects["reason"].str.split(": ").str[0]) == Counter(
        {
            "duplicate flower_id": 3,
            f"observed_at is not on the partition day {DAY}": 3 + 1,
            "petal_length_cm is missing": 1,
            "petal_length_cm is missing; petal_width_cm is missing": 1,  # fields missing at the end
            "sepal_width_cm is not a number": 1,
            "unreadable parquet file broken.parquet": 1,
            "unrecognised file notes.txt": 1,
            ID_RULE: 5 + 2 + 1 + 1,
            f"{ID_RULE}; sepal_length_cm must be positive": 1,
            f"{ID_RULE}; sepal_length_cm exceeds 50 cm": 1,
            f"{ID_RULE}; sepal_length_cm is not finite": 2,
            f"{ID_RULE}; sepal_length_cm is missing": 1,
            "sepal_length_cm must be positive; petal_width_cm must be positive": 1,
            "sepal_length_cm must be positive": 1,
            "sepal_width_cm must be positive": 2 + 1 + 1 + 1,
            "petal_length_cm must be positive": 1,
            "petal_width_cm must be positive": 1,
            OBSERVED_AT_RULE: 1 + 2,
            "unreadable csv file latin1.csv": 1,
            "unreadable parquet file corrupt.parquet": 1,
            "refused link linked.csv": 1,
            "unreadable parquet file nanos.parquet": 1,
            "unreadable csv file batch-8 shouting.csv": 1,
            "unreadable csv file batch-9 twice.csv": 1,
            "unreadable csv file batch-g empty name.csv": 1,
            "unreadable parquet file batch-h twice.parquet": 1,
            "unreadable parquet file batch-i nested.parquet": 1,
        }
    )
    records = {r.flower_id: json.loads(r.record) for r in rejects.itertuples()}
    assert list(records["1e+20"].items())[:2] == [("flower_id", 1e20), ("sepal_length_cm", 1e20)]
    assert records["-0.0"]["sepal_length_cm"] == "inf" and records["1000.0"]["EXTRA"] == "a"
    assert json.dumps(records["1000.0"]["sepal_length_cm"]) == "-0.0"
    assert records["1006"]["petal_width_cm"] == -0.1, "a float32 -0.1 is written -0.1"
    assert records["1008"] == {
        **{k: records["1008"][k] for k in LANDING_COLUMNS},
        "extra": "x",  # not merged with batch-a's EXTRA, though Spark matches names by case
        "flag": True,
        "count": 3,
        "big": 2**64 - 1,
        "price": "5.0000000",
        "day": DAY,
        "local": f"{DAY}T10:00:00.500000",
        "paris": f"{DAY}T09:00:00Z",
        "blob": "café",
        "nothing": None,
        "hour": 1,
        "a.b": "dot",
        "back`tick": "bt",
        "_iris_file": "mine",
        "_iris_seen": "True",
    }
    assert records["1009"]["blob"] == "\ufffd\x00" and records["1009"]["price"] == "0.0000001"
    assert records["1010"]["extra"] is None and records["1010"]["observed_at"].endswith("+00:00")
    assert records["1011"]["observed_at"] == "2026-11-24T10:00:00+02:00", "text stays as written"
    assert records["1022"]["observed_at"] == 20261124, "an integer is no date, on both engines"
    assert records["1013"]["flower_id"] == 1013, "a stored index is a column"
    assert "18446744073709551615" in records and records["1028"]["observed_at"].endswith("Z")
    sample = drift_sample(spark.createDataFrame(local_scored[[*compared]]), 0.5)
    pd.testing.assert_frame_equal(sample, sampled(local_scored, 0.5))


def whole_rows(rejects):
    """Every rejects row as a tuple of all its columns but ``rejected_at``, in a stable order."""
    columns = [c for c in REJECTS_TABLE_SCHEMA.names if c != "rejected_at"]
    values = rejects[columns].astype(object)
    rows = [tuple(None if pd.isna(v) else v for v in row) for row in values.itertuples(index=False)]
    return sorted(rows, key=lambda row: [("" if v is None else str(v), v is None) for v in row])


def sampled(scored, fraction):
    keep = in_sample(scored["flower_id"].to_numpy(), fraction)
    return scored.loc[keep, list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)


def test_the_null_safe_change_predicate_of_the_spark_merge(spark):
    from iris_assets.core.spark_tables import changed_sql

    target = pd.DataFrame({"k": [1, 2, 3, 4], "x": [1.0, None, 2.0, None]})
    source = pd.DataFrame({"k": [1, 2, 3, 4], "x": [1.0, None, 2.5, 7.0]})
    spark.createDataFrame(target).createOrReplaceTempView("target")
    spark.createDataFrame(source).createOrReplaceTempView("source")
    rows = spark.sql(
        f"SELECT source.k FROM source JOIN target ON source.k = target.k WHERE {changed_sql(['x'])}"
    ).collect()
    assert sorted(r.k for r in rows) == [3, 4], "equal rows, nulls included, are not updated"


def test_a_day_without_landing_rows_is_refused_before_spark_runs(tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    with pytest.raises(NoLandingData, match="no landing rows"):
        select_day_files(settings, DAY)


class RecordingStore:
    """Stands in for the Spark table store's writes (Delta's jars are not available here)."""

    def __init__(self, spark):
        self.spark, self.calls, self.zones = spark, [], []

    def ensure_table(self, name, *args, **kwargs):
        self.calls.append(("ensure", name))

    def replace_where(self, name, data, predicate, tags=None):
        self.calls.append(("replace", name, predicate, tags))
        self.zones.append(self.spark.conf.get("spark.sql.session.timeZone"))
        return 1

    def replace_partition(self, name, data, column, value, tags=None):
        return self.replace_where(name, data, f"{column} = '{value}'", tags)

    def staged(self, frame, name):
        """As ``SparkTableStore.staged``, into Parquet (no Delta here): written once, read back."""
        import contextlib
        import tempfile

        @contextlib.contextmanager
        def stage():
            with tempfile.TemporaryDirectory() as folder:
                self.calls.append(("stage", name))
                frame.write.parquet(f"{folder}/stage")
                yield self.spark.read.parquet(f"{folder}/stage")

        return stage()


def test_the_spark_path_commits_under_the_day_lock_with_the_failpoint_between(
    spark, model, tmp_path, monkeypatch
):
    from iris_assets.core.day_lock import DayBusy, day_lock
    from iris_assets.steps import spark_scoring

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(5, DAY, seed=1), DAY)
    champion = VersionInfo("iris_dev.ml.iris_model", "4", {}, ("champion",), None, None)
    store = RecordingStore(spark)
    with day_lock(settings.env_home, DAY), pytest.raises(DayBusy, match=f"scoring {DAY}"):
        spark_scoring.score_day_with_spark(store, settings, DAY, champion, model, wait_seconds=0.3)
    assert store.calls == [], "a run that could not take the day changed nothing"

    def killed(name):
        store.calls.append(("failpoint", name))
        raise SystemExit("killed")

    monkeypatch.setattr(spark_scoring, "failpoint", killed)
    spark.conf.set("spark.sql.session.timeZone", "Asia/Kolkata")
    try:
        with pytest.raises(SystemExit):
            spark_scoring.score_day_with_spark(store, settings, DAY, champion, model)
        assert spark.conf.get("spark.sql.session.timeZone") == "Asia/Kolkata", "restored"
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert store.zones == ["UTC"], "the day is written (and, on Spark Connect, run) in UTC"
    writes = [c for c in store.calls if c[0] not in ("ensure", "stage")]
    [(_, _, _, tags)] = writes[:1]
    assert writes == [
        ("replace", settings.inference_table, f"observed_date = '{DAY}'", tags),
        ("failpoint", "score:partition_committed"),
    ]
    # The partition commit names its day and run, so an empty partition still has a writer.
    assert tags["iris.day"] == DAY and tags["iris.run_id"]


def test_spark_text_of_typed_values_reads_back_to_the_same_record_values(spark, tmp_path):
    """Random doubles, floats, decimals and timestamps: Spark's text and the typed value give
    the same record value (Java's and Python's float spellings differ, the values must not)."""
    from iris_assets.core.reject_record import canonical_value
    from iris_assets.steps.spark_landing import read_file

    rng = np.random.default_rng(11)
    rows = 3000
    scale = 10.0 ** rng.integers(-300, 300, rows)
    table = pa.table(
        {
            "d": pa.array(rng.standard_normal(rows) * scale),
            "f": pa.array(
                (rng.standard_normal(rows) * 10.0 ** rng.integers(-40, 38, rows)).astype("float32")
            ),
            "m": pa.array(
                [Decimal(int(v)).scaleb(-4) for v in rng.integers(-(10**12), 10**12, rows)],
                pa.decimal128(18, 4),
            ),
            "t": pa.array(
                rng.integers(-(2**50), 2**50, rows).astype("datetime64[us]"),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    path = tmp_path / "values.parquet"
    pq.write_table(table, path)
    with utc_session(spark):
        frame, layout = read_file(spark, path, "parquet", 0)
        texts = frame.toPandas()
    kinds = {f.name: f.kind for f in layout.fields}
    for name in ("d", "f", "m", "t"):
        column = next(f.column for f in layout.fields if f.name == name)
        typed = table.column(name).to_pandas().tolist()
        spelled = [canonical_value(v, kinds[name]) for v in typed]
        assert [canonical_value(v, kinds[name]) for v in texts[column]] == spelled, name


def test_both_spark_commits_come_from_one_evaluation_of_the_day(spark, model, tmp_path):
    """Each commit is its own Spark action: a file rewritten between them (same row count) must
    not give a flower both scored and rejected and another in neither table."""
    from iris_assets.steps import spark_scoring

    header = "flower_id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,observed_at"

    def rows(bad_id):
        return "".join(
            f"\n{i},{-1 if i == bad_id else 5.1},3.5,1.4,0.2,{DAY}T01:00:00Z" for i in (1, 2)
        )

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    path = settings.landing_dir / f"observed_date={DAY}" / "batch-a.csv"
    path.parent.mkdir(parents=True)
    path.write_text(header + rows(bad_id=2) + "\n")

    class Committed(Exception):
        pass

    class RewritesBetweenCommits(RecordingStore):
        written = {}

        def replace_where(self, name, data, predicate, tags=None):
            self.written[name] = data.toPandas()  # the commit's action
            if name == settings.inference_table:  # the collector rewrites the file
                path.write_text(header + rows(bad_id=1) + "\n")
            super().replace_where(name, data, predicate, tags)
            if name == settings.rejects_table:  # no tables here to read back the day from
                raise Committed
            return 1

    store = RewritesBetweenCommits(spark)
    champion = VersionInfo("iris_dev.ml.iris_model", "4", {}, ("champion",), None, None)
    with pytest.raises(Committed):
        spark_scoring.score_day_with_spark(store, settings, DAY, champion, model, run_id="r")
    scored = store.written[settings.inference_table]["flower_id"].astype(int).tolist()
    rejected = store.written[settings.rejects_table]["flower_id"].astype(int).tolist()
    assert (scored, rejected) == ([1], [2]), "one evaluation: flower 1 scored, flower 2 rejected"
    assert [c[0] for c in store.calls if c[0] != "ensure"] == ["stage", "replace", "replace"]
