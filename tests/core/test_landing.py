import datetime as dt

import numpy as np
import pandas as pd
import pytest

from iris_assets.core.landing import LandingArea, iso_day, simulate_flowers
from iris_assets.core.schema import FEATURE_COLUMNS, LANDING_COLUMNS
from iris_assets.core.validation import validate_measurements

DAY = "2026-03-14"


@pytest.fixture
def area(tmp_path) -> LandingArea:
    return LandingArea(tmp_path / "landing")


def test_simulate_shape_types_and_ranges():
    flowers = simulate_flowers(5_000, DAY, seed=1)
    assert list(flowers.columns) == list(LANDING_COLUMNS)
    assert len(flowers) == 5_000 and flowers["flower_id"].is_unique
    assert flowers["flower_id"].dtype == np.int64
    assert flowers["flower_id"].max() < 2**53
    assert str(flowers["observed_at"].dtype) == "datetime64[us, UTC]"
    assert (flowers["observed_at"].dt.date == dt.date.fromisoformat(DAY)).all()
    measurements = flowers[list(FEATURE_COLUMNS)]
    assert (measurements > 0).all().all()
    assert np.allclose(measurements, measurements.round(1))
    assert "species" not in flowers.columns
    # Unidentified flowers from the three species: petal lengths are spread over all of them.
    assert flowers["petal_length_cm"].min() < 2.0 and flowers["petal_length_cm"].max() > 5.5
    assert validate_measurements(flowers).rejects.empty


def test_simulate_is_deterministic_with_a_seed():
    first = simulate_flowers(1_000, DAY, seed=42)
    pd.testing.assert_frame_equal(first, simulate_flowers(1_000, DAY, seed=42))
    assert not first.equals(simulate_flowers(1_000, DAY, seed=43))


def test_simulated_ids_do_not_repeat_across_days():
    days = [simulate_flowers(2_000, f"2026-03-{d:02d}", seed=5) for d in (1, 2, 3)]
    ids = pd.concat([d["flower_id"] for d in days])
    assert ids.is_unique


def test_drift_moves_petals():
    normal = simulate_flowers(20_000, DAY, seed=3).mean(numeric_only=True)
    drifted = simulate_flowers(20_000, DAY, seed=3, drift=True).mean(numeric_only=True)
    assert drifted["petal_length_cm"] > normal["petal_length_cm"] * 1.2
    assert drifted["petal_width_cm"] > normal["petal_width_cm"] * 1.2
    assert abs(drifted["sepal_length_cm"] - normal["sepal_length_cm"]) < 0.05


def test_simulate_zero_rows_and_bad_dates():
    assert list(simulate_flowers(0, DAY).columns) == list(LANDING_COLUMNS)
    with pytest.raises(ValueError):
        simulate_flowers(1, "14/03/2026")
    assert iso_day(dt.date(2026, 3, 14)) == iso_day(dt.datetime(2026, 3, 14, 5)) == DAY


def test_parquet_and_csv_round_trip(area):
    flowers = simulate_flowers(100, DAY, seed=9)
    first = area.write_batch(flowers.iloc[:60], DAY)
    second = area.write_batch(flowers.iloc[60:], dt.date.fromisoformat(DAY), fmt="csv")
    assert first.parent.name == f"observed_date={DAY}"
    assert first.name.startswith("batch-") and first.suffix == ".parquet"
    assert second.suffix == ".csv"
    assert area.batch_files(DAY) == [first, second]
    assert area.days() == [DAY]
    assert area.count(DAY) == 100

    day = area.read_day(DAY)
    assert list(day.columns) == list(LANDING_COLUMNS) and len(day) == 100
    assert str(day["observed_at"].dtype) == "datetime64[us, UTC]"
    assert day["observed_at"].tolist() == flowers["observed_at"].tolist()
    result = validate_measurements(day, passthrough=["observed_at"])
    assert result.rejects.empty
    pd.testing.assert_frame_equal(result.valid, flowers, check_dtype=True)


def test_csv_text_survives_to_validation(area, tmp_path):
    (area.day_dir(DAY)).mkdir(parents=True)
    text = (
        "flower_id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,observed_at,note\n"
        "1,5.1,3.5,1.4,0.2,2026-03-14T08:00:00Z,ok\n"
        "2,abc,3.5,,0.2,not a time,NA\n"
        "3,NaN,3.5,1.4,0.2,,\n"
    )
    (area.day_dir(DAY) / "batch-20260314T080000000000Z-0123abcd.csv").write_text(text)
    day = area.read_day(DAY)
    assert day["sepal_length_cm"].tolist() == ["5.1", "abc", "NaN"]
    assert day["petal_length_cm"].tolist() == ["1.4", "", "1.4"]
    assert day["note"].tolist() == ["ok", "NA", ""]
    assert day["observed_at"].isna().tolist() == [False, True, True]
    result = validate_measurements(day)
    assert result.rejects["reason"].tolist() == [
        "sepal_length_cm is not a number; petal_length_cm is missing",
        "sepal_length_cm is not finite",
    ]


def test_batches_with_different_columns(area):
    flowers = simulate_flowers(4, DAY, seed=2)
    area.write_batch(flowers.iloc[:2].drop(columns=["observed_at"]), DAY)
    area.write_batch(flowers.iloc[2:].assign(collector="kew"), DAY)
    day = area.read_day(DAY)
    assert list(day.columns) == [*LANDING_COLUMNS, "collector"]
    assert day["observed_at"].isna().tolist() == [True, True, False, False]
    assert day["collector"].tolist()[2:] == ["kew", "kew"]


def test_atomic_write_leaves_no_temporary_files(area, monkeypatch):
    area.write_batch(simulate_flowers(10, DAY, seed=1), DAY)
    area.write_batch(simulate_flowers(10, DAY, seed=2), DAY, fmt="csv")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("iris_assets.core.landing.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        area.write_batch(simulate_flowers(10, DAY, seed=3), DAY)
    names = sorted(p.name for p in area.day_dir(DAY).iterdir())
    assert len(names) == 2 and all(n.startswith("batch-") for n in names)
    assert area.count(DAY) == 20


def test_half_written_files_are_not_batches_and_other_files_are_reported(area):
    area.day_dir(DAY).mkdir(parents=True)
    (area.day_dir(DAY) / ".batch-x.parquet.1234.tmp").write_bytes(b"partial")
    assert area.scan_day(DAY) == [] and area.days() == []
    (area.day_dir(DAY) / "notes.txt").write_text("hello")
    [notes] = area.scan_day(DAY)
    assert not notes.readable and "unrecognised file notes.txt" in notes.problem
    assert area.batch_files(DAY) == [] and area.days() == [DAY], "reported, not invisible"


def test_every_csv_or_parquet_name_is_read_and_counted_from_the_file(area):
    flowers = simulate_flowers(7, DAY, seed=9)
    folder = area.day_dir(DAY)
    folder.mkdir(parents=True)
    flowers.to_csv(folder / "flowers.csv", index=False)
    flowers.iloc[:3].to_parquet(folder / "batch-x.PARQUET")
    (folder / "broken.parquet").write_bytes(b"not parquet at all")
    (folder / "latin1.csv").write_bytes("flower_id,caf\xe9\n".encode("latin-1"))
    scanned = {f.path.name: f for f in area.scan_day(DAY)}
    assert (scanned["flowers.csv"].rows, scanned["batch-x.PARQUET"].rows) == (7, 3)
    assert "unreadable parquet file broken.parquet" in scanned["broken.parquet"].problem
    assert "unreadable csv file latin1.csv" in scanned["latin1.csv"].problem
    assert area.count(DAY) == 10 == len(area.read_day(DAY))
    before = area.fingerprint(DAY)
    area.write_batch(flowers.iloc[:1], DAY)
    assert area.fingerprint(DAY) != before, "a late file changes the day's fingerprint"


def test_a_dangling_link_in_a_day_is_reported_and_does_not_stop_the_fingerprint(area):
    area.write_batch(simulate_flowers(3, DAY, seed=1), DAY)
    before = area.fingerprint(DAY)
    (area.day_dir(DAY) / "dangling.csv").symlink_to("/nonexistent/flowers.csv")
    assert area.fingerprint(DAY) != before
    scanned = {f.path.name: f for f in area.scan_day(DAY)}
    assert scanned["dangling.csv"].problem


def test_empty_and_absent_days(area):
    for day in (area.read_day(DAY), area.read_day("2030-01-01")):
        assert list(day.columns) == list(LANDING_COLUMNS) and day.empty
    assert area.count(DAY) == 0 and area.days() == []
    area.day_dir(DAY).mkdir(parents=True)
    (area.day_dir(DAY) / "batch-20260314T000000000000Z-00000000.csv").write_text("")
    assert area.read_day(DAY).empty and area.count(DAY) == 0
    result = validate_measurements(area.read_day(DAY), passthrough=["observed_at"])
    assert result.valid.empty and result.rejects.empty


def test_observed_at_is_always_utc_microseconds(area):
    flowers = simulate_flowers(3, DAY, seed=4)
    area.write_batch(flowers.drop(columns=["observed_at"]), DAY, fmt="csv")
    assert str(area.read_day(DAY)["observed_at"].dtype) == "datetime64[us, UTC]"
    assert str(area.read_day("2030-01-01")["observed_at"].dtype) == "datetime64[us, UTC]"
    local = flowers.assign(observed_at=flowers["observed_at"].dt.tz_convert("Europe/Paris"))
    area.write_batch(local, "2026-03-15")
    back = area.read_day("2026-03-15")["observed_at"]
    assert str(back.dtype) == "datetime64[us, UTC]"
    assert back.tolist() == flowers["observed_at"].tolist()


def test_a_linked_day_folder_is_refused_too(area, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    simulate_flowers(4, DAY, seed=1).to_csv(outside / "batch-1.csv", index=False)
    area.root.mkdir(parents=True, exist_ok=True)
    area.day_dir(DAY).symlink_to(outside, target_is_directory=True)
    [linked] = area.scan_day(DAY)
    assert linked.problem == "refused link batch-1.csv: it points outside the landing area"
    assert area.count(DAY) == 0


def test_a_link_out_of_the_landing_area_is_refused_and_one_inside_is_read(area, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    simulate_flowers(4, DAY, seed=1).to_csv(outside / "secrets.csv", index=False)
    area.write_batch(simulate_flowers(3, DAY, seed=2), DAY)
    inside = area.write_batch(simulate_flowers(2, "2026-03-15", seed=3), "2026-03-15")
    (area.day_dir(DAY) / "stolen.csv").symlink_to(outside / "secrets.csv")
    (area.day_dir(DAY) / "shared.parquet").symlink_to(inside)
    scanned = {f.path.name: f for f in area.scan_day(DAY)}
    assert scanned["stolen.csv"].problem == (
        "refused link stolen.csv: it points outside the landing area"
    )
    assert scanned["shared.parquet"].readable and scanned["shared.parquet"].rows == 2
    assert area.count(DAY) == 5


def test_csv_rows_are_records_not_lines(area):
    folder = area.day_dir(DAY)
    folder.mkdir(parents=True)
    flowers = simulate_flowers(4, DAY, seed=5).assign(note=["a\nb", "", 'c ""d""\n\ne', "\n"])
    flowers.to_csv(folder / "notes.csv", index=False)
    text = (folder / "notes.csv").read_text()
    assert text.count("\n") > 5, "more lines than rows"
    header, rest = text.split("\n", 1)
    # Blank lines, and lines of only spaces or tabs, are not rows (as pandas reads them);
    # a line of empty fields is one.
    spaced = f"{header}\n \n\t\n{rest}\n\n" + "," * 6 + "\n"
    (folder / "blank-lines.csv").write_text(spaced)
    scanned = {f.path.name: f for f in area.scan_day(DAY)}
    assert (scanned["notes.csv"].rows, scanned["blank-lines.csv"].rows) == (4, 5)
    assert len(area.read_day(DAY)) == 9


def test_a_csv_record_wider_than_its_header_quarantines_the_file(area):
    folder = area.day_dir(DAY)
    folder.mkdir(parents=True)
    (folder / "wide.csv").write_text("flower_id,sepal_length_cm\n1,5.1\n2,5.2,extra\n")
    [wide] = area.scan_day(DAY)
    assert wide.problem == "unreadable csv file wide.csv: record 2 has 3 fields, the header has 2"


def test_a_csv_field_longer_than_the_csv_modules_default_limit_is_read_not_quarantined(area):
    day = "2026-11-24"
    rows = simulate_flowers(2, day, seed=3).assign(note=["x" * (200 * 1024), "short"])
    folder = area.day_dir(day)
    folder.mkdir(parents=True)
    rows.to_csv(folder / "batch-long.csv", index=False)
    [found] = area.scan_day(day)
    assert (found.problem, found.rows) == (None, 2)


def test_column_names_are_exact_and_a_repeated_name_costs_the_file(area):
    day = "2026-11-24"
    folder = area.day_dir(day)
    folder.mkdir(parents=True)
    rows = simulate_flowers(1, day, seed=3)
    rows.rename(columns={"flower_id": "FLOWER_ID"}).to_csv(folder / "a.csv", index=False)
    text = rows.to_csv(index=False).splitlines()
    (folder / "b.csv").write_text(f"{text[0]},flower_id\n{text[1]},9\n")
    rows.rename(columns={"observed_at": "Observed_At"}).to_parquet(folder / "c.parquet")
    problems = {f.path.name: f.problem for f in area.scan_day(day)}
    assert "'FLOWER_ID' is not 'flower_id'" in problems["a.csv"]
    assert "'flower_id' repeats 'flower_id'" in problems["b.csv"]
    assert "'Observed_At' is not 'observed_at'" in problems["c.parquet"]


def _rewrite_keeping_size_and_mtime(path, replacement: bytes, *, rename: bool) -> None:
    """Overwrite ``path`` with same-size bytes and give it back its mtime, as ``cp -p`` (in
    place, same inode) or an rsync that keeps times (a temporary renamed over it) would."""
    import os
    import shutil
    import time

    before = path.stat()
    assert len(replacement) == before.st_size
    time.sleep(0.05)  # the rewrite comes later than the scan, as it does in life
    side = path.with_name(f".{path.name}.rsync")
    side.write_bytes(replacement)
    os.utime(side, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -r
    if rename:
        os.replace(side, path)
    else:
        shutil.copy2(side, path)  # cp -p: the bytes into the same inode, then the times
        side.unlink()
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("rename", [False, True], ids=["cp -p", "rsync --times"])
def test_a_file_rewritten_with_its_size_and_mtime_kept_changes_the_fingerprint(area, rename):
    flowers = simulate_flowers(5, DAY, seed=1)
    path = area.write_batch(flowers, DAY, fmt="csv")
    before = area.fingerprint(DAY)
    changed = flowers.assign(sepal_length_cm=flowers["sepal_length_cm"][::-1].to_numpy())
    text = changed.to_csv(index=False).encode()
    assert text != path.read_bytes()
    _rewrite_keeping_size_and_mtime(path, text, rename=rename)
    assert area.fingerprint(DAY) != before, "changed data must make the day score again"


def test_markers_are_ignored_by_name_and_other_hidden_names_are_quarantined(area):
    area.write_batch(simulate_flowers(4, DAY, seed=1), DAY)
    folder = area.day_dir(DAY)
    before = area.fingerprint(DAY)
    for marker in ("_SUCCESS", "_committed_123", "_started_123"):
        (folder / marker).write_text("")
    (folder / "_committed_vacuum456").write_text('{"added":[],"removed":[]}')
    # Hadoop's header (magic, bytes per checksum), then one CRC32 per chunk.
    (folder / ".batch-1.parquet.crc").write_bytes(b"crc\0" + (512).to_bytes(4, "big") + b"\1" * 4)
    (folder / "_temporary" / "0" / "_temporary").mkdir(parents=True)  # no file yet
    (folder / ".batch-x.parquet.0a1b2c3d.tmp").write_bytes(b"half a file")
    assert area.fingerprint(DAY) == before, "markers are not data: the day did not change"
    assert area.ignored(DAY) == [
        ".batch-1.parquet.crc (a Hadoop checksum file)",
        ".batch-x.parquet.0a1b2c3d.tmp (a file still being written)",
        "_SUCCESS (a job's success marker)",
        "_committed_123 (a Databricks commit marker)",
        "_committed_vacuum456 (a Databricks commit marker)",
        "_started_123 (a Databricks commit marker)",
        "_temporary (a Spark or Hadoop job's in-progress folder)",
    ]
    assert [f.path.name for f in area.scan_day(DAY)] == [area.batch_files(DAY)[0].name]

    simulate_flowers(3, DAY, seed=2).to_csv(folder / "_late.csv", index=False)
    simulate_flowers(3, DAY, seed=3).to_parquet(folder / ".hidden.parquet")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    problems = {f.path.name: f.problem for f in area.scan_day(DAY) if not f.readable}
    assert sorted(problems) == [".DS_Store", ".hidden.parquet", "_late.csv"]
    assert all("rename it without the leading" in p for p in problems.values())
    assert area.count(DAY) == 4, "a hidden data file is reported, not read"
    assert area.fingerprint(DAY) != before, "an unknown hidden file is part of the day"


def test_a_name_of_a_marker_cannot_hide_rows(area):
    """Markers are checked on content: rows under a marker's name are quarantined, not ignored."""
    area.write_batch(simulate_flowers(4, DAY, seed=1), DAY)
    folder = area.day_dir(DAY)
    before = area.fingerprint(DAY)
    simulate_flowers(1000, DAY, seed=2).to_csv(folder / "_SUCCESS", index=False)
    simulate_flowers(1000, DAY, seed=3).to_csv(folder / ".x.crc", index=False)
    (folder / ".empty.crc").write_bytes(b"")
    simulate_flowers(1000, DAY, seed=3).to_csv(folder / "_committed_7", index=False)
    simulate_flowers(1000, DAY, seed=3).to_csv(folder / "_committed_flowers.csv", index=False)
    (folder / "_started_8").mkdir()
    (folder / "_temporary" / "0").mkdir(parents=True)
    simulate_flowers(1000, DAY, seed=4).to_parquet(folder / "_temporary" / "0" / "part-1.parquet")
    assert area.ignored(DAY) == []
    problems = {f.path.name: f.problem for f in area.scan_day(DAY) if not f.readable}
    assert sorted(problems) == [
        ".empty.crc",
        ".x.crc",
        "_SUCCESS",
        "_committed_7",
        "_committed_flowers.csv",
        "_started_8",
        "_temporary",
    ]
    assert "neither empty nor one JSON object" in problems["_SUCCESS"]
    assert "checksum header" in problems[".x.crc"] or "'crc" in problems[".x.crc"]
    assert "0/part-1.parquet" in problems["_temporary"] and "not finished" in problems["_temporary"]
    assert "not a regular file" in problems["_started_8"]
    assert area.fingerprint(DAY) != before, "rows under a marker's name are part of the day"


def test_a_day_of_markers_only_is_not_a_day(area):
    area.day_dir(DAY).mkdir(parents=True)
    (area.day_dir(DAY) / "_SUCCESS").write_text("")
    assert area.days() == [] and area.scan_day(DAY) == []
    assert area.ignored(DAY) == ["_SUCCESS (a job's success marker)"]
