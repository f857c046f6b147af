"""Label files from a careless or hostile collector, read by the real landing code from disk."""

import json

import pandas as pd
import pytest

from iris_assets.core.labels import LabelFileError, copy_label_file, read_labelled_day
from iris_assets.core.landing import LandingArea
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.validation import ID_RULE

DAY = "2026-11-22"
IDS = [7399529022260737, 7399529022260738, 1000, 1001, 1002, 1003]


@pytest.fixture
def scored():
    """The day's inference rows for the flowers of IDS."""
    return pd.DataFrame(
        {
            "flower_id": pd.Series(IDS, dtype="int64"),
            **{c: [1.0 + i / 10 for i in range(len(IDS))] for c in FEATURE_COLUMNS},
            "prediction": pd.Series([0] * len(IDS), dtype="int64"),
            "model_version": "1",
        }
    )


def land_text(root, name: str, data: bytes):
    folder = LandingArea(root).day_dir(DAY)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def test_fractional_and_exponent_ids_never_land_on_another_flower(tmp_path, scored):
    land_text(
        tmp_path,
        "batch-1.csv",
        b"flower_id,species\n"
        b"7399529022260737.6,setosa\n"  # a float would round it onto ...738
        b"7399529022260738.0,setosa\n"
        b"1.0e3,setosa\n"
        b"+1001,setosa\n"
        b"01002,setosa\n"
        b"1003,setosa\n",
    )
    day = read_labelled_day(tmp_path, DAY, scored)
    assert day.labelled["flower_id"].tolist() == [1003]
    assert day.rejects["reason"].tolist() == [ID_RULE] * 5
    assert day.landing_rows == len(day.labelled) + day.rows_rejected


def test_conflicting_labels_say_they_disagree_and_which_was_kept(tmp_path, scored):
    LandingArea(tmp_path).day_dir(DAY).mkdir(parents=True)
    land_text(tmp_path, "batch-20261122T010000Z-a.csv", b"flower_id,species\n1000,setosa\n")
    land_text(
        tmp_path,
        "batch-20261122T020000Z-b.csv",
        b"flower_id,species\n1000,virginica\n1001,versicolor\n1001,1\n",
    )
    day = read_labelled_day(tmp_path, DAY, scored)
    kept = day.labelled.set_index("flower_id")["species_name"].to_dict()
    assert kept == {1000: "setosa", 1001: "versicolor"}, "the oldest batch's label counts"
    reasons = dict(zip(day.rejects["flower_id"], day.rejects["reason"], strict=True))
    assert reasons["1000"].startswith("duplicate flower_id: the labels disagree, kept setosa")
    assert "batch-20261122T010000Z-a.csv" in reasons["1000"] and "not virginica" in reasons["1000"]
    assert reasons["1001"] == "duplicate flower_id: the same label as the one kept"


@pytest.mark.parametrize(
    "data",
    [
        b"flower_id,species\n1000,setosa\n1001,vers\xe9icolor\n",  # not UTF-8 after the header
        b'flower_id,species\n1000,setosa\n1001,"versicolor\n1002,setosa\n',  # unterminated quote
    ],
    ids=["non-utf8-after-header", "unterminated-quote"],
)
def test_a_broken_label_file_is_quarantined_whole(tmp_path, scored, data):
    land_text(tmp_path, "batch-1.csv", data)
    land_text(tmp_path, "batch-2.csv", b"flower_id,species\n1003,virginica\n")
    day = read_labelled_day(tmp_path, DAY, scored)
    assert [f.path.name for f in day.files_quarantined] == ["batch-1.csv"]
    assert day.labelled["flower_id"].tolist() == [1003], "nothing of the broken file is used"
    [reject] = day.rejects.to_dict("records")
    assert "batch-1.csv" in reject["reason"] and json.loads(reject["record"]) == {
        "file": "batch-1.csv"
    }


def test_a_quoted_newline_is_one_record_and_accounted_for(tmp_path, scored):
    """Legal CSV: the line count and the record count differ, the accounting does not."""
    land_text(
        tmp_path, "batch-1.csv", b'flower_id,species,note\n1000,setosa,"two\nlines"\n1001,x,\n'
    )
    day = read_labelled_day(tmp_path, DAY, scored)
    assert not day.files_quarantined
    assert day.landing_rows == 2 and day.labelled["flower_id"].tolist() == [1000]
    assert day.rows_rejected == 1


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        (b"flower_id,label\n1000,setosa\n", "species"),
        (b"id,species\n1000,setosa\n", "flower_id"),
        (b"a,b\n1,2\n", "flower_id or species"),
    ],
)
def test_a_label_file_without_its_columns_is_refused_before_copying(tmp_path, data, missing):
    source = tmp_path / "mine.csv"
    source.write_bytes(data)
    with pytest.raises(LabelFileError, match=f"has no {missing} column"):
        copy_label_file(source, tmp_path / "landing", DAY)
    assert not (tmp_path / "landing").exists() or not any((tmp_path / "landing").rglob("*.csv"))


def test_a_parquet_label_file_without_species_is_refused(tmp_path):
    source = tmp_path / "mine.parquet"
    pd.DataFrame({"flower_id": [1000]}).to_parquet(source)
    with pytest.raises(LabelFileError, match="has no species column"):
        copy_label_file(source, tmp_path / "landing", DAY)


def test_a_label_csv_with_a_byte_order_mark_is_copied_and_read(tmp_path, scored):
    # Excel's "CSV UTF-8" starts with a BOM; the landing reads such a file, so `iris label`
    # must not refuse it as "has no flower_id column".
    source = tmp_path / "excel.csv"
    source.write_bytes(b"\xef\xbb\xbfflower_id,species\r\n1003,setosa\r\n")
    path, rows = copy_label_file(source, tmp_path, DAY)
    assert rows == 1 and path.read_bytes() == source.read_bytes(), "copied byte for byte"
    day = read_labelled_day(tmp_path, DAY, scored)
    assert day.labelled["flower_id"].tolist() == [1003] and day.rows_rejected == 0
