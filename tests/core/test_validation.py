import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from iris_assets.core.schema import FEATURE_COLUMNS, SPECIES_NAMES
from iris_assets.core.validation import ID_RULE, REJECT_COLUMNS, validate_measurements

GOOD = {
    "flower_id": 1,
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def frame(*rows: dict, dtype=None) -> pd.DataFrame:
    return pd.DataFrame(
        [{**GOOD, "flower_id": i + 1, **r} for i, r in enumerate(rows)], dtype=dtype
    )


def check_counts(raw: pd.DataFrame, result) -> None:
    assert len(result.valid) + len(result.rejects) == len(raw)
    assert list(result.rejects.columns) == list(REJECT_COLUMNS)


def only_reason(raw: pd.DataFrame, **kwargs) -> str:
    result = validate_measurements(raw, **kwargs)
    check_counts(raw, result)
    assert len(result.rejects) == 1, result.rejects
    return result.rejects["reason"].iloc[0]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "sepal_length_cm is missing"),
        (np.nan, "sepal_length_cm is missing"),
        ("", "sepal_length_cm is missing"),
        ("  ", "sepal_length_cm is missing"),
        ("abc", "sepal_length_cm is not a number"),
        ("5,1", "sepal_length_cm is not a number"),
        ("inf", "sepal_length_cm is not finite"),
        ("-inf", "sepal_length_cm is not finite"),
        ("NaN", "sepal_length_cm is not finite"),
        (np.inf, "sepal_length_cm is not finite"),
        (-1, "sepal_length_cm must be positive"),
        ("0", "sepal_length_cm must be positive"),
        (0.0, "sepal_length_cm must be positive"),
        (1e9, "sepal_length_cm exceeds 50 cm"),
        ("50.1", "sepal_length_cm exceeds 50 cm"),
    ],
)
def test_bad_measurement(value, reason):
    raw = frame({}, {"sepal_length_cm": value}, dtype=object)
    assert only_reason(raw) == reason


@pytest.mark.parametrize("value", [" 5.0 ", "5", 5, 50.0, "1e1", 0.1])
def test_good_measurement_spellings(value):
    raw = frame({"sepal_length_cm": value}, dtype=object)
    result = validate_measurements(raw)
    assert len(result.valid) == 1 and result.rejects.empty
    assert result.valid["sepal_length_cm"].iloc[0] == float(str(value).strip())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7),
        ("0", 0),
        (7, 7),
        ("9007199254740993", 2**53 + 1),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_canonical_ids_are_accepted(value, expected):
    result = validate_measurements(frame({"flower_id": value}, dtype=object))
    assert result.valid["flower_id"].tolist() == [expected]
    assert result.valid["flower_id"].dtype == np.int64


@pytest.mark.parametrize(
    "value",
    # Each of these names some number, but not one way: "007" and "7" would be two spellings of
    # one flower, "1e3" and "5.0" go through a float. The rule has one spelling per id.
    [
        "1e3",
        "+8",
        "007",
        " 5",
        "5 ",
        "5.0",
        "7.5",
        7.5,
        7.0,
        "-3",
        -3,
        "x",
        "inf",
        "0x1F",
        "9223372036854775808",
        "１２",
    ],
)
def test_non_canonical_ids_are_rejected_with_the_rule(value):
    raw = frame({"flower_id": value}, dtype=object)
    assert only_reason(raw) == ID_RULE
    assert "canonical" in ID_RULE and "leading zeros" in ID_RULE


def test_a_float_id_column_is_rejected_even_when_whole():
    raw = frame({"flower_id": 5.0})
    assert raw["flower_id"].dtype == np.float64
    assert only_reason(raw) == ID_RULE


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "flower_id is missing"), ("", "flower_id is missing"), ("  ", "flower_id is missing")],
)
def test_missing_ids(value, reason):
    raw = frame({"flower_id": value}, dtype=object)
    assert only_reason(raw) == reason


def test_big_ids_stay_exact_next_to_a_bad_row():
    # A failing row must not push the other ids through float64 (2**53 + 1 is not a float).
    raw = pd.DataFrame(
        {**{c: ["1", "1"] for c in FEATURE_COLUMNS}, "flower_id": ["9007199254740993", "x"]}
    )
    result = validate_measurements(raw)
    assert result.valid["flower_id"].tolist() == [9007199254740993]


def test_all_reasons_of_a_row_are_joined():
    raw = frame({"flower_id": "-1", "sepal_width_cm": "abc", "petal_width_cm": 0}, dtype=object)
    assert only_reason(raw) == (
        f"{ID_RULE}; sepal_width_cm is not a number; petal_width_cm must be positive"
    )


def test_duplicates_first_wins_among_otherwise_valid_rows():
    raw = frame(
        {"flower_id": 5, "sepal_length_cm": -1},  # invalid: does not claim the id
        {"flower_id": 5},
        {"flower_id": 5, "sepal_length_cm": 4.0},
        {"flower_id": 6},
    )
    result = validate_measurements(raw)
    check_counts(raw, result)
    assert result.valid["flower_id"].tolist() == [5, 6]
    assert result.valid["sepal_length_cm"].tolist() == [5.1, 5.1]
    assert result.rejects["reason"].tolist() == [
        "sepal_length_cm must be positive",
        "duplicate flower_id",
    ]


def test_missing_column_rejects_every_row_and_loses_nothing():
    raw = frame({}, {}, {}).drop(columns=["petal_width_cm"])
    result = validate_measurements(raw)
    check_counts(raw, result)
    assert result.valid.empty
    assert set(result.rejects["reason"]) == {"missing column: petal_width_cm"}
    assert result.rejects["flower_id"].tolist() == ["1", "2", "3"]


def test_extra_columns_are_ignored_but_recorded():
    raw = frame({"note": "hello", "weight_g": 3})
    result = validate_measurements(raw)
    assert list(result.valid.columns) == ["flower_id", *FEATURE_COLUMNS]
    bad = frame({"note": 'say "hi"\n', "sepal_length_cm": -2})
    record = json.loads(validate_measurements(bad).rejects["record"].iloc[0])
    assert record == {**GOOD, "note": 'say "hi"\n', "sepal_length_cm": -2}


def test_record_keeps_raw_values_json_safe():
    raw = pd.DataFrame(
        {
            "flower_id": ["12", "13"],
            "sepal_length_cm": [np.inf, np.nan],
            "sepal_width_cm": ["abc", "3"],
            "petal_length_cm": [1.5, 1.5],
            "petal_width_cm": ["0.2", "0.2"],
            "observed_at": pd.to_datetime(["2026-01-02T03:04:05Z", None], utc=True),
        }
    )
    rejects = validate_measurements(raw).rejects
    first, second = (json.loads(r) for r in rejects["record"])
    assert first["sepal_length_cm"] == "inf" and first["sepal_width_cm"] == "abc"
    assert first["flower_id"] == "12" and first["petal_length_cm"] == 1.5
    assert first["observed_at"].startswith("2026-01-02")
    assert second["sepal_length_cm"] is None and second["observed_at"] is None
    assert rejects["flower_id"].tolist() == ["12", "13"]


def test_reject_ids_are_raw_text_or_none():
    raw = pd.DataFrame(
        {"flower_id": [7.0, np.nan, 8.5], **{c: [-1.0] * 3 for c in FEATURE_COLUMNS}}
    )
    assert validate_measurements(raw).rejects["flower_id"].tolist() == ["7.0", None, "8.5"]


def test_csv_style_all_text_input():
    raw = pd.DataFrame(
        {
            "flower_id": ["1", "2", "3", "4"],
            "sepal_length_cm": ["5.1", "", "4.9", "4.7"],
            "sepal_width_cm": ["3.5", "3.0", "NA", "3.2"],
            "petal_length_cm": ["1.4", "1.4", "1.4", "1.3"],
            "petal_width_cm": ["0.2", "0.2", "0.2", "0.2"],
        },
        dtype=str,
    )
    result = validate_measurements(raw)
    check_counts(raw, result)
    assert result.valid["flower_id"].tolist() == [1, 4]
    assert result.valid.dtypes.tolist() == [np.int64] + [np.float64] * 4
    assert result.rejects["reason"].tolist() == [
        "sepal_length_cm is missing",
        "sepal_width_cm is not a number",
    ]


def test_typed_and_arrow_backed_inputs():
    data = {"flower_id": [1, 2], **{c: [1.5, 2.5] for c in FEATURE_COLUMNS}}
    for raw in (
        pd.DataFrame(data),
        pd.DataFrame(data).astype({"flower_id": "Int64"}),
        pd.DataFrame(data).astype(dict.fromkeys(FEATURE_COLUMNS, "float32")),
        pa.table(data).to_pandas(types_mapper=pd.ArrowDtype),
        pd.DataFrame(data).astype(str).astype(pd.ArrowDtype(pa.string())),
    ):
        result = validate_measurements(raw)
        assert result.valid["flower_id"].tolist() == [1, 2]
        assert result.valid["petal_width_cm"].tolist() == [1.5, 2.5]
        assert result.valid["flower_id"].dtype == np.int64


def test_empty_and_columnless_frames():
    for raw in (
        pd.DataFrame(),
        pd.DataFrame(columns=["flower_id", *FEATURE_COLUMNS]),
        pd.DataFrame(index=range(3)),
    ):
        result = validate_measurements(raw, require_label=True)
        check_counts(raw, result)
        assert "flower_id" in result.valid.columns and "species_name" in result.valid.columns
    columnless = validate_measurements(pd.DataFrame(index=range(2))).rejects
    assert columnless["flower_id"].tolist() == [None, None]
    assert columnless["record"].tolist() == ["{}", "{}"]
    assert columnless["reason"].iloc[0].startswith("missing column: flower_id; missing column:")


def test_labels_normalised():
    raw = frame(
        {"species": 0},
        {"species": "Versicolor"},
        {"species": " VIRGINICA "},
        {"species": "2"},
        {"species": 1.0},
        dtype=object,
    )
    result = validate_measurements(raw, require_label=True)
    assert result.rejects.empty
    assert result.valid["species"].tolist() == [0, 1, 2, 2, 1]
    assert result.valid["species"].dtype == np.int64
    assert result.valid["species_name"].tolist() == [SPECIES_NAMES[i] for i in (0, 1, 2, 2, 1)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "species is missing"),
        ("", "species is missing"),
        (3, "species is not one of 0, 1, 2, setosa, versicolor, virginica"),
        ("rose", "species is not one of 0, 1, 2, setosa, versicolor, virginica"),
        (1.5, "species is not one of 0, 1, 2, setosa, versicolor, virginica"),
    ],
)
def test_bad_labels(value, reason):
    raw = frame({"species": 0}, {"species": value}, dtype=object)
    assert only_reason(raw, require_label=True) == reason


def test_label_column_required_only_when_asked():
    raw = frame({})
    assert only_reason(raw, require_label=True) == "missing column: species"
    assert "species" not in validate_measurements(raw).valid.columns


def test_passthrough_carried_unchanged_in_order():
    stamps = pd.to_datetime(
        ["2026-01-01T01:00Z", "2026-01-01T02:00Z", "2026-01-01T03:00Z"], utc=True
    )
    raw = frame({}, {"sepal_length_cm": -1}, {}).assign(observed_at=stamps, note=["a", "b", "c"])
    result = validate_measurements(raw, passthrough=["observed_at", "absent"])
    assert list(result.valid.columns) == ["flower_id", *FEATURE_COLUMNS, "observed_at"]
    assert result.valid["observed_at"].tolist() == [stamps[0], stamps[2]]
    assert result.valid["observed_at"].dtype == raw["observed_at"].dtype
    assert list(result.valid.index) == [0, 1]


def test_counts_add_up_on_a_mixed_corpus():
    rng = np.random.default_rng(3)
    n = 5_000
    raw = pd.DataFrame(
        {
            "flower_id": rng.integers(0, 3_000, n).astype(str).astype(object),
            **{c: rng.uniform(0.5, 8, n).round(1).astype(object) for c in FEATURE_COLUMNS},
        }
    )
    junk = ["", "abc", "inf", None, "-1", "0", "1e9", "NaN"]
    for column in raw.columns:
        rows = rng.choice(n, 200, replace=False)
        raw.loc[rows, column] = rng.choice(np.array(junk, dtype=object), 200)
    result = validate_measurements(raw)
    check_counts(raw, result)
    assert result.valid["flower_id"].is_unique
    assert (result.valid[list(FEATURE_COLUMNS)] > 0).all().all()
    assert result.rejects["reason"].str.len().gt(0).all()


def test_one_million_valid_rows():
    n = 1_000_000
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        {
            "flower_id": np.arange(n),
            **{c: rng.uniform(0.1, 8, n).round(1) for c in FEATURE_COLUMNS},
            "observed_at": pd.Timestamp("2026-01-01", tz="UTC"),
        }
    )
    started = time.perf_counter()
    result = validate_measurements(raw, passthrough=["observed_at"])
    elapsed = time.perf_counter() - started
    print(f"\nvalidate_measurements: 1,000,000 typed rows in {elapsed:.2f} s")
    assert len(result.valid) == n and result.rejects.empty

    text = raw.drop(columns=["observed_at"]).astype(str)
    started = time.perf_counter()
    result = validate_measurements(text)
    elapsed = time.perf_counter() - started
    print(f"validate_measurements: 1,000,000 rows of CSV text in {elapsed:.2f} s")
    assert len(result.valid) == n and result.rejects.empty
