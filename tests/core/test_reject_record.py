"""The canonical rejects record: one spelling of a value, whatever engine held it and how."""

import datetime as dt
import json
import math
import struct
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from iris_assets.core.reject_record import (
    arrow_kind,
    canonical_text,
    canonical_value,
    record_json,
    spark_kind,
)
from iris_assets.core.validation import describe_rows

# (kind, the typed value the local reader holds, Spark's text of it, the record's value)
SPELLINGS = [
    ("float64", -0.0, "-0.0", -0.0),
    ("float64", 1e20, "1.0E20", 1e20),
    ("float64", 5e-324, "4.9E-324", 5e-324),
    ("float64", 0.1 + 0.2, "0.30000000000000004", 0.30000000000000004),
    ("float64", math.inf, "Infinity", "inf"),
    ("float64", -math.inf, "-Infinity", "-inf"),
    ("float64", math.nan, "NaN", None),
    ("float32", np.float32(5.1), "5.1", 5.1),
    ("float32", np.float32(-0.1), "-0.1", -0.1),
    ("float32", np.float32(3.4028235e38), "3.4028235E38", 3.4028235e38),
    ("float32", np.float32(1e-45), "1.4E-45", 1e-45),
    ("integer", np.int64(2**63 - 1), "9223372036854775807", 2**63 - 1),
    ("integer", np.uint64(2**64 - 1), "18446744073709551615", 2**64 - 1),
    ("decimal", Decimal("18446744073709551615"), "18446744073709551615", 2**64 - 1),
    ("decimal", Decimal("5.00"), "5.00", "5.00"),
    ("decimal", Decimal("1E-7"), "0.0000001", "0.0000001"),
    ("boolean", np.True_, "true", True),
    ("text", "", None, None),
    ("text", " 5 ", " 5 ", " 5 "),
    ("date", dt.date(2026, 11, 24), "2026-11-24", "2026-11-24"),
    ("binary", b"caf\xc3\xa9", "café", "café"),
    (
        "timestamp",
        pd.Timestamp("2026-11-24T05:00:00.000001", tz="Europe/Paris"),
        "2026-11-24 04:00:00.000001",
        "2026-11-24T04:00:00.000001Z",
    ),
    (
        "timestamp",
        pd.Timestamp("2026-11-24T03:00:00Z"),
        "2026-11-24 03:00:00",
        "2026-11-24T03:00:00Z",
    ),
    (
        "timestamp_ntz",
        pd.Timestamp("2026-11-24 10:00:00.5"),
        "2026-11-24 10:00:00.5",
        "2026-11-24T10:00:00.500000",
    ),
]


@pytest.mark.parametrize(("kind", "typed", "text", "expected"), SPELLINGS)
def test_a_typed_value_and_spark_text_of_it_are_one_record_value(kind, typed, text, expected):
    assert json.dumps(canonical_value(typed, kind)) == json.dumps(expected)
    assert json.dumps(canonical_value(text, kind)) == json.dumps(expected)


def test_float32_values_are_the_shortest_decimal_that_reads_back():
    rng = np.random.default_rng(3)
    singles = rng.standard_normal(2000).astype(np.float32) * np.float32(10.0) ** rng.integers(
        -40, 38, 2000
    ).astype(np.float32)
    for single in singles[np.isfinite(singles)]:
        value = canonical_value(single, "float32")
        assert struct.unpack("<f", struct.pack("<f", value))[0] == single
        assert len(repr(value)) <= len(repr(float(single)))
        assert canonical_value(str(single), "float32") == value


def test_missing_values_of_any_kind_are_null():
    for missing in (None, math.nan, np.nan, pd.NA, pd.NaT, np.float32("nan")):
        for kind in (None, "text", "float64", "integer", "timestamp"):
            assert canonical_value(missing, kind) is None


def test_a_value_its_kind_cannot_hold_stays_text():
    assert canonical_value("abc", "float64") == "abc"
    assert canonical_value("yesterday", "timestamp") == "yesterday"
    assert canonical_text(7.0, None) == "7.0" and canonical_text(None) is None


def test_kinds_of_spark_and_arrow_types_agree():
    pairs = [
        ("string", pa.string()),
        ("bigint", pa.int64()),
        ("tinyint", pa.int8()),
        ("double", pa.float64()),
        ("float", pa.float32()),
        ("boolean", pa.bool_()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("timestamp_ntz", pa.timestamp("us")),
        ("date", pa.date32()),
        ("decimal(10,2)", pa.decimal128(10, 2)),
        ("binary", pa.binary()),
    ]
    for spark, arrow in pairs:
        assert spark_kind(spark) == arrow_kind(arrow), spark
    for odd in (
        pa.list_(pa.int64()),
        pa.struct([("a", pa.int64())]),
        pa.float16(),
        pa.time64("us"),
    ):
        assert arrow_kind(odd) is None
    assert spark_kind("array<bigint>") is None and spark_kind("map<string,int>") is None


def test_records_keep_order_repeats_and_unicode_without_spaces():
    assert record_json([("b", 1), ("a", "é\n"), ("b", None)]) == '{"b":1,"a":"é\\n","b":null}'


def test_a_frame_is_described_by_its_dtypes_not_its_python_values():
    frame = pd.DataFrame(
        {
            "flower_id": pd.array([1, None], dtype="Int64"),
            "w": np.array([5.1, -0.0], dtype=np.float32),
            "t": pd.to_datetime(["2026-11-24 01:00", None]).astype("datetime64[us]"),
            "s": pd.Series(["", "x"], dtype="str"),
        }
    )
    ids, records = describe_rows(frame)
    assert ids == ["1", None]
    assert records == [
        '{"flower_id":1,"w":5.1,"t":"2026-11-24T01:00:00","s":null}',
        '{"flower_id":null,"w":-0.0,"t":null,"s":"x"}',
    ]


def test_the_record_is_what_json_dumps_writes():
    values = [
        None,
        True,
        False,
        0,
        -(2**70),
        1e20,
        -0.0,
        5e-324,
        0.1,
        "",
        'q"\\\n\x00é\u2028',
        "inf",
    ]
    pairs = [(f'k{i}\n"', v) for i, v in enumerate(values)]
    expected = json.dumps(dict(pairs), ensure_ascii=False, separators=(",", ":"))
    assert record_json(pairs) == expected
    assert json.loads(record_json(pairs)) == dict(pairs)
