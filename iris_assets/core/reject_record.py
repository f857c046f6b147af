"""The ``record`` of a rejects row: the row as it arrived, as one canonical JSON object.

Both engines quarantine rows, and they hold a row's values differently: the local path has the
file's own types (pandas/Arrow: Parquet doubles, int64, UTC timestamps; CSV text), the Spark path
has every value as Spark's text of it (``1.0E20``, ``2026-11-24 03:00:00``, null for an empty CSV
field). This module is the one definition of what the record says, so the rejects rows of the
two engines are equal byte for byte. Pure Python (no pandas, numpy or pyspark; ``arrow_kind``
imports pyarrow when called), so it runs in a Spark worker as it runs locally. Both engines apply
it to the same frame: the Spark path rebuilds each file's rows as the local reader gives them
(``steps/spark_landing.py``) and both call ``core.validation.describe_rows``.

The rule (``docs/batch.md``, "The rejects record"):

- keys: the columns of the row's own file, in the reader's order (the landing columns first,
  null where the file lacks one, then the file's extra columns as the file spells them); a
  column of another file is never part of a row's record;
- each value by the *kind* of its column in its file (``KINDS``), so text stays text and a
  typed value stays typed whichever engine read it:

  ====================  ==========================================================================
  text                  the text as it arrived; an empty field is ``null`` (readers disagree on
                        empty and missing)
  integer               a JSON integer, exact (any width; decimals of scale 0 too)
  float64 / float32     a JSON number, the shortest decimal that reads back as the same value at
                        the column's precision (``-0.0``, ``1e+20``, ``5.1`` for a float32 5.1);
                        infinity ``"inf"`` / ``"-inf"``; NaN is ``null``
  decimal               text in plain notation, with the column's scale (``"5.00"``)
  boolean               ``true`` / ``false``
  timestamp             ISO 8601 in UTC: ``2026-11-24T03:00:00Z``, with ``.ffffff`` only when
                        the microseconds are not zero
  timestamp_ntz         the same wall time without ``Z`` (a timestamp without a time zone)
  date                  ``2026-11-24``
  binary                the bytes as UTF-8 text (undecodable bytes as U+FFFD)
  ====================  ==========================================================================

- a missing value (null, None, NaN, NaT) is ``null``; the JSON is written without spaces and
  without escaping non-ASCII text.

A column whose kind is none of these (lists, structs, maps, intervals) is refused by the
engines' readers before it reaches a record (``unsupported_kind``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

KINDS = (
    "text",
    "integer",
    "float64",
    "float32",
    "decimal",
    "boolean",
    "timestamp",
    "timestamp_ntz",
    "date",
    "binary",
)

_SPARK_KINDS = {
    "string": "text",
    "varchar": "text",
    "char": "text",
    "tinyint": "integer",
    "smallint": "integer",
    "int": "integer",
    "bigint": "integer",
    "double": "float64",
    "float": "float32",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "timestamp_ltz": "timestamp",
    "timestamp_ntz": "timestamp_ntz",
    "date": "date",
    "binary": "binary",
    "void": "text",
}


def spark_kind(simple_string: str) -> str | None:
    """The kind of a Spark column from its type's ``simpleString()``; None when unsupported."""
    name = simple_string.split("(", 1)[0].strip().lower()
    if name == "decimal":
        return "decimal"
    return _SPARK_KINDS.get(name)


def arrow_kind(arrow_type: Any) -> str | None:
    """The kind of an Arrow column (how the local path reads Parquet); None when unsupported."""
    import pyarrow as pa

    kind = arrow_type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_integer, "integer"),
        (pa.types.is_float32, "float32"),
        (pa.types.is_float64, "float64"),
        (pa.types.is_decimal, "decimal"),
        (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "text"),
        (pa.types.is_null, "text"),
        (lambda t: pa.types.is_timestamp(t) and t.tz is not None, "timestamp"),
        (pa.types.is_timestamp, "timestamp_ntz"),
        (pa.types.is_date, "date"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary"),
    )
    for check, name in checks:
        if check(kind):
            return name
    return None


def unsupported_kind(columns: Iterable[tuple[str, str | None]]) -> str | None:
    """Why a file with these (name, kind) columns cannot be quarantined alike, or None."""
    odd = [name for name, kind in columns if kind is None]
    if not odd:
        return None
    return (
        f"column(s) {', '.join(odd)} hold nested or other values that are not text, numbers, "
        "booleans, dates, timestamps or bytes"
    )


def is_missing(value: object) -> bool:
    """None, NaN, or pandas' NA or NaT."""
    if value is None:
        return True
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return math.isnan(value)  # type: ignore[arg-type]  # numpy's floats too
    # pandas' NA and NaT, without importing pandas: both refuse to be truthy or equal to anything.
    return type(value).__name__ in ("NAType", "NaTType")


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    return text or None


def _integer(value: object) -> int:
    if isinstance(value, str):
        return int(Decimal(value.strip()))
    return int(value)  # type: ignore[call-overload]


def _special(number: float) -> object:
    if math.isnan(number):
        return None
    return "inf" if number > 0 else "-inf"


def _float64(value: object) -> object:
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else _special(number)


def _float32(value: object) -> object:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        return _special(number)
    (single,) = struct.unpack("<f", struct.pack("<f", number))
    for digits in range(1, 10):
        shortest = float(f"{single:.{digits}g}")
        try:
            (back,) = struct.unpack("<f", struct.pack("<f", shortest))
        except OverflowError:  # rounded up past the largest float32
            continue
        if back == single:
            return shortest
    return single


def _decimal(value: object) -> object:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        return _text(value)
    if not number.is_finite():
        return _text(value)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(number)
    return format(number, "f")


def _boolean(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _datetime(value: object) -> dt.datetime:
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.strip())
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    raise TypeError(f"not a timestamp: {value!r}")


def _wall_time(stamp: dt.datetime) -> str:
    text = f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}T"
    text += f"{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d}"
    return text + (f".{stamp.microsecond:06d}" if stamp.microsecond else "")


def _timestamp(value: object) -> str:
    stamp = _datetime(value)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC)
    # Without an offset the value is already UTC: Spark's text of an instant in a UTC session.
    return _wall_time(stamp) + "Z"


def _timestamp_ntz(value: object) -> str:
    return _wall_time(_datetime(value))


def _date(value: object) -> str:
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip()[:10]).isoformat()
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return value.isoformat()  # type: ignore[attr-defined]


_CONVERT: dict[str, Callable[[object], object]] = {
    "text": _text,
    "integer": _integer,
    "float64": _float64,
    "float32": _float32,
    "decimal": _decimal,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "timestamp_ntz": _timestamp_ntz,
    "date": _date,
    "binary": _text,
}


def value_kind(value: object) -> str:
    """The kind of one value of a column without one type (a frame built by hand)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "boolean"
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
        return "integer"
    if type(value).__name__ in ("float32", "float16"):
        return "float32"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return "float64"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dt.datetime):
        return "timestamp" if value.tzinfo is not None else "timestamp_ntz"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, bytes):
        return "binary"
    return "text"


def canonical_value(value: object, kind: str | None = None) -> object:
    """``value`` (typed, or an engine's text of it) as the record holds it (see the rule above).

    ``kind`` is the column's kind in its file; None judges the value on its own. A value its
    kind cannot hold (text in a float column of a frame built by hand) is kept as text.
    """
    if is_missing(value):
        return None
    kind = kind or value_kind(value)
    try:
        return _CONVERT[kind](value)
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return _text(value)


def canonical_text(value: object, kind: str | None = None) -> str | None:
    """The value as text, for the rejects' raw ``flower_id``: JSON's spelling of a non-text."""
    canonical = canonical_value(value, kind)
    if canonical is None or isinstance(canonical, str):
        return canonical
    return json.dumps(canonical)


def _json(value: object) -> str:
    """``json.dumps(value, ensure_ascii=False)`` for a canonical value, without its set-up cost
    (a new encoder per call was most of the record's time)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, int):
        return int.__repr__(value)
    return float.__repr__(value)  # type: ignore[arg-type]  # finite: inf and NaN are text/null


def record_json(pairs: Iterable[tuple[str, object]]) -> str:
    """One record: (key, canonical value) pairs as a JSON object, in order, repeats kept."""
    return "{" + ",".join(f"{encode_basestring(str(k))}:{_json(v)}" for k, v in pairs) + "}"


def records(
    keys: Sequence[str],
    columns: Sequence[Sequence[object]],
    kinds: Sequence[str | None],
    rows: int,
) -> list[str]:
    """The record of each of ``rows`` rows of a table given column-wise (``columns[i]`` holds
    ``keys[i]``, read as ``kinds[i]``)."""
    converted = [
        [_json(canonical_value(value, kind)) for value in column]
        for column, kind in zip(columns, kinds, strict=True)
    ]
    if not converted:
        return ["{}"] * rows
    prefixes = [encode_basestring(str(key)) + ":" for key in keys]
    return [
        "{" + ",".join(p + v for p, v in zip(prefixes, values, strict=True)) + "}"
        for values in zip(*converted, strict=True)
    ]
