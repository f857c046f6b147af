"""Scoring a day locally in chunks: same outcome as one batch, and all-or-nothing writes."""

import time
from collections import Counter

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import VersionInfo
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.tables import DeltaTableStore, TableError
from iris_assets.core.validation import ID_RULE
from iris_assets.settings import load_settings
from iris_assets.steps.day_scoring import NoLandingData, score_day_locally

DAY = "2026-11-23"
CHAMPION = VersionInfo("iris_dev.ml.iris_model", "2", {}, ("champion",), None, None)


@pytest.fixture(scope="module")
def model():
    iris = load_iris(as_frame=True)
    return LogisticRegression(max_iter=300).fit(
        iris.data.set_axis(list(FEATURE_COLUMNS), axis=1), iris.target
    )


class FailsOnThirdChunk:
    """A model that breaks partway through a day, as a crashing step would."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.classes_ = model.classes_

    def predict_proba(self, rows):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("scoring died halfway")
        return self.model.predict_proba(rows)


@pytest.fixture
def day(tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    flowers = simulate_flowers(500, DAY, seed=11)
    landing.write_batch(flowers.iloc[:300], DAY)
    landing.write_batch(flowers.iloc[250:], DAY, fmt="csv")  # 50 ids again, in another file
    return settings, DeltaTableStore(settings.warehouse)


def test_chunks_give_the_same_day_as_one_batch(day, model):
    settings, store = day
    chunked = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=64)
    assert (chunked.landing_rows, chunked.rows_scored, chunked.rows_rejected) == (550, 500, 50)
    assert chunked.reject_reasons == {"duplicate flower_id": 50}
    assert chunked.written.rows == 500 and chunked.written.duplicate_ids == 0
    whole = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert whole.prediction_counts == chunked.prediction_counts
    assert store.count(settings.inference_table) == 500, "the re-run replaced the day"
    assert len(chunked.features_sample) == 500


def test_a_day_that_fails_halfway_leaves_the_previous_partition(day, model):
    settings, store = day
    score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=64)
    before = store.version(settings.inference_table)
    with pytest.raises(TableError, match="scoring died halfway"):
        score_day_locally(store, settings, DAY, CHAMPION, FailsOnThirdChunk(model), batch_rows=64)
    assert store.version(settings.inference_table) == before
    assert store.count(settings.inference_table) == 500


def write_csv(landing: LandingArea, frame, day=DAY):
    return landing.write_batch(frame, day, fmt="csv")


def test_a_corpus_of_bad_landing_data_loses_no_row(tmp_path, model):
    import pandas as pd

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing, store = LandingArea(settings.landing_dir), DeltaTableStore(settings.warehouse)
    good = simulate_flowers(40, DAY, seed=21)
    landing.write_batch(good, DAY)
    bad = good.iloc[:10].astype(str).reset_index(drop=True)
    bad.loc[0, "petal_width_cm"] = ""  # null
    bad.loc[1, "sepal_length_cm"] = "long"  # text
    bad.loc[2, "sepal_width_cm"] = "-3.1"  # negative
    bad.loc[3, "petal_length_cm"] = "1e6"  # absurd
    bad.loc[4, "petal_length_cm"] = "inf"  # infinity
    bad.loc[5, "flower_id"] = "12.5"  # not an id
    bad.loc[6, "flower_id"] = bad.loc[7, "flower_id"]  # duplicate within the batch
    # rows 7-9 repeat flowers of the first file: duplicates across batches
    write_csv(landing, bad.assign(colour="blue"))  # an extra column is ignored
    write_csv(landing, good.iloc[:5].drop(columns=["petal_width_cm"]).assign(flower_id=range(5)))

    result = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=16)
    assert result.landing_rows == 55
    assert result.rows_scored + result.rows_rejected == 55
    assert result.rows_scored == 40
    rejects = store.read(settings.rejects_table)
    reasons = Counter(rejects["reason"])
    assert reasons["petal_width_cm is missing"] == 6, "a file without the column: every row"
    assert reasons["duplicate flower_id"] == 4
    for reason in (
        "sepal_length_cm is not a number",
        "sepal_width_cm must be positive",
        "petal_length_cm exceeds 50 cm",
        "petal_length_cm is not finite",
        ID_RULE,
    ):
        assert reasons[reason] == 1, (reason, reasons)
    assert '"colour":"blue"' in " ".join(rejects["record"]), "the record keeps extra columns"
    assert pd.Series(rejects["record"]).str.len().gt(10).all()


def test_a_day_without_landing_rows_fails_and_keeps_the_partition(day, model):
    settings, store = day
    score_day_locally(store, settings, DAY, CHAMPION, model)
    version = store.version(settings.inference_table)
    folder = LandingArea(settings.landing_dir).day_dir(DAY)
    for path in folder.iterdir():
        path.unlink()  # an emptied folder
    with pytest.raises(NoLandingData, match=f"no landing rows for {DAY}.*partition.*kept"):
        score_day_locally(store, settings, DAY, CHAMPION, model)
    (folder / "notes.txt").write_text("not data")
    with pytest.raises(NoLandingData, match="notes.txt.*in the rejects table"):
        score_day_locally(store, settings, DAY, CHAMPION, model)
    assert store.version(settings.inference_table) == version
    assert store.count(settings.inference_table) == 500


@pytest.mark.parametrize("bad", ["corrupt.parquet", "latin1.csv", "notes.txt", "_flowers.csv"])
def test_a_day_whose_only_file_is_unreadable_reports_it_and_keeps_the_partition(day, model, bad):
    from iris_assets.steps.day_scoring import audit_day, scan_day_files

    settings, store = day
    scored = score_day_locally(store, settings, DAY, CHAMPION, model, run_id="good-run")
    version = store.version(settings.inference_table)
    kept_rejects = store.count(settings.rejects_table)
    folder = LandingArea(settings.landing_dir).day_dir(DAY)
    for path in folder.iterdir():
        path.unlink()
    flowers = simulate_flowers(20, DAY, seed=3)
    if bad == "corrupt.parquet":
        corrupt_parquet(flowers, folder / bad)
    elif bad == "latin1.csv":
        (folder / bad).write_bytes(flowers.to_csv(index=False).encode() + b"1,caf\xe9\n")
    else:
        flowers.to_csv(folder / bad, index=False)
    for run in ("bad-run-1", "bad-run-2"):  # the sensor, then a person, run the day again
        with pytest.raises(NoLandingData, match=f"(?s){bad}.*partition.*kept.*rejects table"):
            score_day_locally(store, settings, DAY, CHAMPION, model, run_id=run)

    assert store.version(settings.inference_table) == version, "the partition is untouched"
    assert store.count(settings.inference_table) == scored.rows_scored
    rejects = store.read(settings.rejects_table, predicate="run_id = 'bad-run-2'")
    assert len(rejects) == 1, "one row for the file, not one per attempt"
    assert rejects["record"][0] == f'{{"file": "{bad}"}}'
    assert bad in rejects["reason"][0] and rejects["partition"][0] == DAY
    assert store.count(settings.rejects_table) == kept_rejects + 1, "the scored run's are kept"
    problems = audit_day(store, settings, scan_day_files(settings, DAY))
    assert any("another run" in p for p in problems), problems
    assert any("!= 0 landing rows" in p for p in problems), problems


def test_a_new_day_whose_only_file_is_unreadable_is_reported(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    folder = LandingArea(settings.landing_dir).day_dir(DAY)
    folder.mkdir(parents=True)
    (folder / "batch-1.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(NoLandingData, match="batch-1.parquet"):
        score_day_locally(store, settings, DAY, CHAMPION, model)
    [row] = store.read(settings.rejects_table).to_dict("records")
    assert row["reason"].startswith("unreadable parquet file batch-1.parquet")
    assert row["record"] == '{"file": "batch-1.parquet"}'
    assert not store.exists(settings.inference_table), "no partition was written"


def test_markers_are_listed_as_ignored_and_a_hidden_data_file_is_quarantined(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(10, DAY, seed=5), DAY)
    folder = landing.day_dir(DAY)
    (folder / "_SUCCESS").write_text("")
    (folder / ".batch-1.parquet.crc").write_bytes(b"crc\0\0\0\2\0")  # Hadoop's header
    simulate_flowers(4, DAY, seed=6).to_csv(folder / "_late.csv", index=False)
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert result.files_ignored == (
        ".batch-1.parquet.crc (a Hadoop checksum file)",
        "_SUCCESS (a job's success marker)",
    )
    assert [q.split(":")[0] for q in result.files_quarantined] == ["_late.csv"]
    assert (result.landing_rows, result.rows_scored) == (10, 10) and not result.problems
    rejects = store.read(settings.rejects_table)
    assert rejects["record"].tolist() == ['{"file": "_late.csv"}']


def test_every_file_is_read_or_quarantined_and_rows_are_counted_from_the_files(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    folder = LandingArea(settings.landing_dir).day_dir(DAY)
    folder.mkdir(parents=True)
    flowers = simulate_flowers(30, DAY, seed=4)
    flowers.iloc[:10].to_csv(folder / "flowers.csv", index=False)
    flowers.iloc[10:20].to_parquet(folder / "batch-x.PARQUET")
    late = flowers.iloc[20:].copy()
    late.loc[late.index[0], "observed_at"] = pd.Timestamp("2026-11-24T00:00:01Z")
    late.to_parquet(folder / "batch-3.parquet")
    (folder / "broken.parquet").write_bytes(b"PAR1 but not really")
    (folder / "readme.txt").write_text("collector notes")

    result = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=7)
    assert (result.landing_rows, result.rows_scored, result.rows_rejected) == (30, 29, 1)
    rejects = store.read(settings.rejects_table, order_by="reason")
    assert rejects["reason"].tolist() == [
        f"observed_at is not on the partition day {DAY}",
        "unreadable parquet file broken.parquet: " + rejects["reason"][1].split(": ", 1)[1],
        "unrecognised file readme.txt: only .parquet and .csv files are read",
    ]
    assert '"file": "readme.txt"' in rejects["record"][2]
    assert len(result.files_quarantined) == 2


def test_ids_beyond_float_precision_are_exact(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    landing = LandingArea(settings.landing_dir)
    flowers = simulate_flowers(3, DAY, seed=8)
    big = 2**53
    landing.write_batch(flowers.assign(flower_id=[big, big + 2, big + 5]), DAY)
    # As floats, big+1 would equal big (a false duplicate) and big+5 would be big+4 (a missed one).
    landing.write_batch(flowers.assign(flower_id=[big + 1, big + 2, big + 3]), DAY, "csv")
    landing.write_batch(flowers.iloc[:1].assign(flower_id=[big + 5]), DAY, "csv")
    result = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=2)
    assert (result.rows_scored, result.rows_rejected) == (5, 2)
    scored = store.read(settings.inference_table, order_by="flower_id")["flower_id"].tolist()
    assert scored == [big, big + 1, big + 2, big + 3, big + 5]
    duplicates = store.read(settings.rejects_table, order_by="flower_id")["flower_id"].tolist()
    assert duplicates == [str(big + 2), str(big + 5)]


def test_concurrent_days_all_succeed_and_each_day_ends_whole(tmp_path, model, monkeypatch):
    """Runs of different days at once share the tables' files: none may fail on that.

    After a compaction the days' rejects share one file, so two days replacing their slices at
    once conflict in Delta; each run compacts too, racing the others' replaces. Every run must
    still commit (a conflicted commit is written again) and every day add up.
    """
    import threading

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    days = [f"2026-11-0{d}" for d in range(1, 5)]
    for seed, day in enumerate(days):
        flowers = simulate_flowers(3000, day, seed=seed).astype(str)
        flowers.loc[0, "sepal_length_cm"] = "long"  # every day has a rejects row
        write_csv(landing, flowers, day)
    errors = []

    def score(day):
        store = DeltaTableStore(settings.warehouse)
        try:
            score_day_locally(store, settings, day, CHAMPION, model, batch_rows=500)
        except Exception as error:  # noqa: BLE001 (the assertion below names it)
            errors.append((day, repr(error)))

    for day in days:
        score(day)
    store = DeltaTableStore(settings.warehouse)
    store.compact(settings.rejects_table)  # the four days' rejects now live in one file
    assert len(store._table(settings.rejects_table).file_uris()) == 1
    compact = DeltaTableStore.compact_if_fragmented
    monkeypatch.setattr(
        DeltaTableStore, "compact_if_fragmented", lambda self, name: compact(self, name, 1)
    )
    threads = [threading.Thread(target=score, args=(day,)) for day in [*days, *days]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [], "every run of every day commits"
    assert store.group_counts(settings.inference_table, "observed_date") == dict.fromkeys(
        days, 2999
    )
    assert store.group_counts(settings.rejects_table, "partition") == dict.fromkeys(days, 1)
    assert store.aggregate(settings.inference_table, "COUNT(DISTINCT flower_id) AS n")["n"] == 11996
    from iris_assets.steps.day_scoring import audit_day, select_day_files

    for day in days:
        assert audit_day(store, settings, select_day_files(settings, day)) == [], day


def test_a_conflicted_replace_is_written_again_once(tmp_path, monkeypatch):
    """The retry produces the stream again, and does not repeat a commit that already landed."""
    import pyarrow as pa
    from deltalake.exceptions import CommitFailedError

    from iris_assets.core import tables

    store, name = DeltaTableStore(tmp_path), "c.s.t"
    store.ensure_table(name, pa.schema([("day", pa.string()), ("n", pa.int64())]))
    store.append(name, pd.DataFrame({"day": ["a", "b"], "n": [1, 2]}))
    real_write, attempts = tables.write_deltalake, []

    def loses_the_first_race(table, source, **kwargs):
        attempts.append(source.read_all().num_rows)  # the rows are spent, as in a real write
        if len(attempts) == 1:  # another day's writer commits first
            rival = pa.table({"day": ["b"], "n": [20]})
            real_write(store._table(name), rival, mode="overwrite", predicate="day = 'b'")
            raise CommitFailedError("a concurrent transaction added new data")
        return real_write(table, pa.table({"day": ["a"], "n": [10]}), **kwargs)

    def rows():
        yield pd.DataFrame({"day": ["a"], "n": [10]})

    monkeypatch.setattr(tables, "write_deltalake", loses_the_first_race)
    store.replace_where(name, rows, "day = 'a'", tags={"iris.run_id": "r1"})
    assert attempts == [1, 1], "the stream was produced again for the retry"
    assert store.read(name, order_by="day")["n"].tolist() == [10, 20]

    def lands_then_reports_a_conflict(table, source, **kwargs):
        real_write(table, source, **kwargs)
        raise CommitFailedError("the commit landed but its caller was told otherwise")

    monkeypatch.setattr(tables, "write_deltalake", lands_then_reports_a_conflict)
    before = store.version(name)
    store.replace_where(name, rows, "day = 'a'", tags={"iris.run_id": "r2"})
    assert store.version(name) == before + 1, "the run's commit is recognised by its token"

    attempts.clear()
    monkeypatch.setattr(tables, "write_deltalake", loses_the_first_race)
    with pytest.raises(TableError, match="conflicted with a concurrent write.*run it again"):
        store.replace_where(name, iter([pd.DataFrame({"day": ["a"], "n": [3]})]), "day = 'a'")
    assert attempts == [1], "a one-shot iterator is not retried: its rows are spent"


def test_a_bad_file_is_quarantined_whole_and_the_rest_of_the_day_is_scored(tmp_path, model):
    """Bad bytes after the first line, or a corrupt page behind a good footer, cost one file."""
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    landing = LandingArea(settings.landing_dir)
    flowers = simulate_flowers(40, DAY, seed=12)
    landing.write_batch(flowers.iloc[:20], DAY)
    folder = landing.day_dir(DAY)
    lines = flowers.iloc[20:30].to_csv(index=False).splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + ",caf\xe9\n"  # a Latin-1 byte on the fourth line
    (folder / "batch-latin1.csv").write_bytes("".join(lines).encode("latin-1"))
    corrupt_parquet(flowers.iloc[30:], folder / "batch-corrupt.parquet")

    result = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=4)
    assert (result.landing_rows, result.rows_scored, result.rows_rejected) == (20, 20, 0)
    assert not result.problems
    quarantined = dict(q.split(": ", 1) for q in result.files_quarantined)
    assert quarantined["batch-latin1.csv"].startswith("unreadable csv file batch-latin1.csv")
    assert "utf-8" in quarantined["batch-latin1.csv"]
    assert quarantined["batch-corrupt.parquet"].startswith("unreadable parquet file")
    assert store.count(settings.rejects_table) == 2, "one row per quarantined file"


def corrupt_parquet(frame, path):
    """A Parquet file whose footer reads but one of whose pages does not decode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="zstd")
    column = pq.ParquetFile(path).metadata.row_group(0).column(2)
    data = bytearray(path.read_bytes())
    middle = column.data_page_offset + column.total_compressed_size // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_quoted_fields_spanning_lines_are_one_row_each(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    flowers = simulate_flowers(6, DAY, seed=13)
    notes = ["one\nline two", "", 'say "hi"\n\nthree', "x", "\n", "plain"]
    write_csv(LandingArea(settings.landing_dir), flowers.assign(note=notes))
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert (result.landing_rows, result.rows_scored, result.rows_rejected) == (6, 6, 0)
    assert not result.problems


def test_an_unparsable_observed_at_is_rejected_not_scored(tmp_path, model):
    from iris_assets.core.validation import OBSERVED_AT_RULE

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    flowers = simulate_flowers(5, DAY, seed=14).astype(str)
    flowers["observed_at"] = [f"{DAY}T08:00:00Z", "yesterday", "", "2026-13-45", f"{DAY} 09:30"]
    write_csv(LandingArea(settings.landing_dir), flowers)
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert (result.rows_scored, result.rows_rejected) == (3, 2), "blank is missing, allowed"
    rejects = store.read(settings.rejects_table, order_by="flower_id")
    assert rejects["reason"].tolist() == [OBSERVED_AT_RULE] * 2
    assert '"observed_at":"yesterday"' in rejects["record"][0], "the raw text is kept"
    scored = store.read(settings.inference_table, order_by="flower_id")
    assert scored["observed_at"].isna().sum() == 1


def test_odd_id_spellings_are_rejected_with_the_rule(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    flowers = simulate_flowers(7, DAY, seed=15).astype(str)
    flowers["flower_id"] = ["5", "1e3", "+8", "007", " 6", "5.0", "9"]
    write_csv(LandingArea(settings.landing_dir), flowers)
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    scored = store.read(settings.inference_table, order_by="flower_id")["flower_id"].tolist()
    assert scored == [5, 9], "5.0 is not a second spelling of 5, nor 007 of 7"
    assert result.reject_reasons == {ID_RULE: 5}


def test_two_runs_of_one_day_at_once_leave_one_run_whole(tmp_path, model):
    """The first run is held between its two commits; the second must not slip in between."""
    import threading

    from iris_assets.steps.day_scoring import audit_day, select_day_files

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    flowers = simulate_flowers(60, DAY, seed=16).astype(str)
    flowers.loc[0, "sepal_length_cm"] = "long"
    write_csv(landing, flowers)
    second_done = threading.Event()

    class PausesBeforeRejects(DeltaTableStore):
        def replace_where(self, name, data, predicate, tags=None):
            if name == settings.rejects_table:
                second_done.wait(timeout=3)  # time enough for an unguarded second run
            return super().replace_where(name, data, predicate, tags)

    results, errors = {}, []

    def run(name, store):
        try:
            results[name] = score_day_locally(store, settings, DAY, CHAMPION, model, run_id=name)
        except Exception as error:  # noqa: BLE001 (the assertion below names it)
            errors.append(error)
        finally:
            if name == "second":
                second_done.set()

    first = threading.Thread(target=run, args=("first", PausesBeforeRejects(settings.warehouse)))
    first.start()
    store = DeltaTableStore(settings.warehouse)
    while not (store.exists(settings.inference_table) and store.count(settings.inference_table)):
        assert first.is_alive(), errors
        time.sleep(0.02)
    # A late file lands; a second run of the day starts while the first is between its commits.
    extra = simulate_flowers(10, DAY, seed=17).astype(str)
    extra.loc[extra.index[0], "flower_id"] = "x"
    write_csv(landing, extra)
    second = threading.Thread(target=run, args=("second", DeltaTableStore(settings.warehouse)))
    second.start()
    first.join(timeout=120)
    second.join(timeout=120)
    assert not errors, errors
    files = select_day_files(settings, DAY)
    assert audit_day(store, settings, files) == [], "partition and rejects of one run"
    assert store.group_counts(settings.inference_table, "run_id") == {"second": 68}
    assert store.group_counts(settings.rejects_table, "run_id") == {"second": 2}
    # Each run's result is whole and describes its own commits, not the other run's.
    first_run, second_run = results["first"], results["second"]
    assert first_run.problems == () and second_run.problems == (), results
    assert (first_run.run_id, first_run.written.rows, first_run.rows_rejected) == ("first", 59, 1)
    assert (second_run.run_id, second_run.written.rows, second_run.rows_rejected) == (
        "second",
        68,
        2,
    )


def test_a_run_audits_its_day_before_the_next_run_of_the_day_takes_it(tmp_path, model, monkeypatch):
    """Run B takes the day the moment run A lets go of it: A's audit and read-back must
    already be done (else A reports B's partition as its problems and stats)."""
    import contextlib

    import iris_assets.steps.day_scoring as day_scoring

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(30, DAY, seed=1), DAY)
    real_lock, later = day_scoring.day_lock, {}

    @contextlib.contextmanager
    def lock_then_b_takes_the_day(home, day, wait_seconds):
        with real_lock(home, day, wait_seconds):
            yield
        if not later:  # run A just let go: B scores the day with a late file
            later["b"] = None
            landing.write_batch(simulate_flowers(7, DAY, seed=2), DAY)
            later["b"] = score_day_locally(
                DeltaTableStore(settings.warehouse), settings, DAY, CHAMPION, model, run_id="B"
            )

    monkeypatch.setattr(day_scoring, "day_lock", lock_then_b_takes_the_day)
    a = score_day_locally(
        DeltaTableStore(settings.warehouse), settings, DAY, CHAMPION, model, run_id="A"
    )
    assert a.problems == (), a.problems
    assert (a.landing_rows, a.written.rows, a.rows_rejected) == (30, 30, 0)
    b = later["b"]
    assert b.problems == () and (b.landing_rows, b.written.rows) == (37, 37), b


def test_a_parquet_id_column_with_a_null_keeps_its_other_ids(tmp_path, model):
    """pandas turns an int64 column with a null into floats; the ids must survive that."""
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    flowers = simulate_flowers(3, DAY, seed=18)
    flowers["flower_id"] = pd.array([2**53 + 1, None, 7], dtype="Int64")
    LandingArea(settings.landing_dir).write_batch(flowers, DAY)
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert result.reject_reasons == {"flower_id is missing": 1}
    scored = store.read(settings.inference_table, order_by="flower_id")["flower_id"].tolist()
    assert scored == [7, 2**53 + 1]


def test_a_symlink_loop_is_quarantined_and_the_rest_of_the_day_is_scored(tmp_path, model):
    """One bad file costs one file: a link to itself (resolve() raises) is no exception."""
    import os

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(20, DAY, seed=1), DAY)
    loop = landing.day_dir(DAY) / "loop.csv"
    os.symlink(loop, loop)
    result = score_day_locally(DeltaTableStore(settings.warehouse), settings, DAY, CHAMPION, model)
    assert result.rows_scored == 20 and not result.problems, result.problems
    assert [q.split(":")[0] for q in result.files_quarantined] == ["loop.csv"]


def test_a_symlink_loop_in_one_day_does_not_stop_the_repair_audit_of_another(
    tmp_path, model, monkeypatch
):
    """The landing sensor's audit fails per day, never for every day at once."""
    import os

    from iris_assets.assets import inference

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    store = DeltaTableStore(settings.warehouse)
    looped, late = "2026-11-22", DAY
    for day in (looped, late):
        landing.write_batch(simulate_flowers(20, day, seed=1), day)
        score_day_locally(store, settings, day, CHAMPION, model)
    loop = landing.day_dir(looped) / "loop.csv"
    os.symlink(loop, loop)  # a file the looped day was not scored with: it needs a run too
    landing.write_batch(simulate_flowers(5, late, seed=2), late)  # the late day no longer adds up
    repairs, stuck, failed = inference._days_to_repair(settings, [looped, late], set(), {})
    assert sorted(day for day, _ in repairs) == [looped, late] and not failed, failed

    original = LandingArea.scan_day

    def unlistable(self, day):
        if day == looped:
            raise PermissionError(f"cannot list {day}")
        return original(self, day)

    monkeypatch.setattr(LandingArea, "scan_day", unlistable)
    repairs, stuck, failed = inference._days_to_repair(settings, [looped, late], set(), {})
    assert [day for day, _ in repairs] == [late], (repairs, stuck, failed)
    assert [day for day, _ in failed] == [looped]


def test_rows_under_marker_names_are_quarantined_not_ignored(tmp_path, model):
    """A _SUCCESS holding a CSV, a .crc with rows, a batch under _temporary: each is a rejects
    row naming the file, not a name in files_ignored while its rows vanish."""
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    landing.write_batch(simulate_flowers(20, DAY, seed=1), DAY)
    folder = landing.day_dir(DAY)
    simulate_flowers(1000, DAY, seed=2).to_csv(folder / "_SUCCESS", index=False)
    simulate_flowers(1000, DAY, seed=3).to_csv(folder / ".x.crc", index=False)
    (folder / "_temporary").mkdir()
    simulate_flowers(1000, DAY, seed=4).to_parquet(folder / "_temporary" / "batch-1.parquet")
    store = DeltaTableStore(settings.warehouse)
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert result.files_ignored == () and not result.problems, result
    assert sorted(q.split(":")[0] for q in result.files_quarantined) == [
        ".x.crc",
        "_SUCCESS",
        "_temporary",
    ]
    assert (result.rows_scored, result.rows_rejected) == (20, 0)
    assert store.count(settings.rejects_table) == 3, "one rejects row per file"


def test_duplicates_written_behind_the_scoring_are_counted_here_as_the_engine_counts_them(
    day, model
):
    # Rows appended to the partition by another writer (repeats of scored ids, a repeat of a
    # repeat, ids at both ends of int64) are what the output check must see, by either count.
    from iris_assets.steps.day_scoring import partition_stats

    settings, store = day
    score_day_locally(store, settings, DAY, CHAMPION, model)
    scored = store.read(settings.inference_table, predicate=f"observed_date = '{DAY}'")
    extra = pd.concat([scored.iloc[[0, 0, 7, 499]], scored.iloc[[1, 2]]], ignore_index=True)
    extra.loc[4:, "flower_id"] = [0, 2**63 - 1]
    store.append(settings.inference_table, pd.concat([extra, extra.iloc[4:]], ignore_index=True))
    here = partition_stats(store, settings, DAY, ids_here=True)
    engine = partition_stats(store, settings, DAY)
    assert here == engine
    assert (here.rows, here.duplicate_ids) == (508, 6)


def test_the_one_blas_thread_the_stream_scores_with_gives_the_default_threads_answers():
    # score_day_locally limits BLAS to one thread while it scores (steps/day_scoring.py): the
    # probabilities written must be those the default thread count computes, bit for bit.
    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from iris_assets.core.scoring import predict_frame

    iris = load_iris(as_frame=True)
    X = iris.data.set_axis(list(FEATURE_COLUMNS), axis=1)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, iris.target)
    rng = np.random.default_rng(5)
    rows = pd.DataFrame(rng.normal(4, 2, (300_000, 4)), columns=list(FEATURE_COLUMNS))
    default = predict_frame(pipeline, rows)
    with threadpool_limits(limits=1, user_api="blas"):
        one = predict_frame(pipeline, rows)
    pd.testing.assert_frame_equal(one, default, check_exact=True)
    raw = pipeline.predict_proba(rows)
    with threadpool_limits(limits=1, user_api="blas"):
        np.testing.assert_array_equal(pipeline.predict_proba(rows), raw)
