"""The day's landing files in Spark, and each file's rows rebuilt as the local reader gives them.

Spark unions the day's files into one frame of text columns (one type per column for every
file). Validation must not judge Spark's text where the local path judges typed values: an
integer ``observed_at`` of 20261124 is refused locally (an epoch number says nothing of its
unit) but its text is an ISO 8601 date; bytes ``b"12"`` are not an id locally but their text is.
So each file's columns keep their kind (``FileLayout``), and on the executors the rows of each
file are turned back into the frame ``core.landing.iter_files`` yields for that file: the same
column names in the same order, the same Arrow types converted to pandas the same way. Both
engines then validate, and spell rejects records (``core.reject_record``), from equal frames.

Spark's text of a value reads back exactly: doubles and floats round-trip, timestamps are
rendered in UTC (``utc_session``) to the microsecond, decimals keep their scale, and bytes are
carried as hex.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

from iris_assets.core.landing import nullable_integers, utc_timestamps
from iris_assets.core.reject_record import is_missing, spark_kind
from iris_assets.core.schema import LANDING_COLUMNS

FILE = "_iris_file"

_ARROW_TYPES = {
    "text": pa.string(),
    "integer": pa.int64(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"),
    "date": pa.date32(),
    "binary": pa.binary(),
}


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


_CAST_KINDS = ("integer", "float64", "float32", "boolean", "timestamp", "timestamp_ntz", "date")

_FROM_TEXT = {
    "text": str,
    "integer": int,
    "float64": float,
    "float32": float,
    "boolean": lambda text: text == "true",
    "timestamp": _utc,
    "timestamp_ntz": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "decimal": Decimal,
    "binary": bytes.fromhex,
}


@dataclass(frozen=True)
class Field:
    """One column of a file: its name there, its column in the day's frame, its Spark type."""

    name: str
    column: str | None  # None: the file lacks this landing column
    spark_type: str = "string"

    @property
    def kind(self) -> str:
        return spark_kind(self.spark_type) or "text"

    def arrow_type(self) -> pa.DataType:
        if self.kind == "decimal":
            precision, scale = self.spark_type.split("(", 1)[1].rstrip(")").split(",")
            return pa.decimal128(int(precision), int(scale))
        return _ARROW_TYPES[self.kind]

    def values(self, texts: pd.Series) -> pa.Array:
        """Spark's text of this column's values, read back as the file held them."""
        kind, arrow_type = self.kind, self.arrow_type()
        text = pa.array(texts, from_pandas=True)
        if pa.types.is_null(text.type):
            return pa.nulls(len(texts), arrow_type)
        if kind == "text":
            return text.cast(pa.string())
        if kind in _CAST_KINDS:
            try:  # Arrow parses Spark's spellings (1.0E20, Infinity, NaN) exactly, in bulk
                if kind == "timestamp":  # UTC text without an offset: the wall time, then UTC
                    return pc.cast(text, pa.timestamp("us")).cast(arrow_type)
                return pc.cast(text, arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        parse = _FROM_TEXT[kind]
        return pa.array([None if is_missing(t) else parse(t) for t in texts], type=arrow_type)


@dataclass(frozen=True)
class FileLayout:
    """One landing file's columns in the local reader's order: the landing columns (``None``
    column where the file lacks one), then the file's extra columns.

    Extra columns are renamed per file in the day's frame (``_iris_x<file>_<n>``), so the
    union of the day's files never merges two files' columns (Spark matches names ignoring
    case: ``EXTRA`` in one file is not ``extra`` in another) and a name Spark would parse (a
    dot, a backtick, one of this module's own column names) is only a name.
    """

    fields: tuple[Field, ...]

    def frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The file's ``rows`` (columns of the day's frame) as ``iter_files`` gives them."""
        typed = [f for f in self.fields if f.column is not None]
        frame = pa.RecordBatch.from_arrays(
            [f.values(rows[f.column]) for f in typed], names=[f.name for f in typed]
        ).to_pandas(types_mapper=nullable_integers, ignore_metadata=True)
        for field in self.fields:
            if field.column is None:
                frame[field.name] = None
        if ptypes.is_datetime64_any_dtype(frame["observed_at"].dtype):
            frame["observed_at"] = utc_timestamps(frame["observed_at"])
        return frame[[f.name for f in self.fields]].set_axis(rows.index)


def file_frames(
    rows: pd.DataFrame, layouts: tuple[FileLayout, ...]
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """(positions in ``rows``, the rows as their file's local frame) for each file in ``rows``."""
    files = rows[FILE].to_numpy(dtype=np.int64)
    for position in np.unique(files):
        where = np.flatnonzero(files == position)
        yield where, layouts[int(position)].frame(rows.iloc[where])


def escaped(name: str) -> str:
    """A column name as Spark reads it literally (a dot or a backtick is part of the name)."""
    return "`" + name.replace("`", "``") + "`"


def blank_record(columns: list[str]):
    """Spark's side of ``core.landing._blank_record``: a first field of only spaces and tabs
    and nothing else is a blank line, not a record (Spark reads such a line as a row)."""
    from pyspark.sql import functions as F

    first = F.col(escaped(columns[0]))
    blank = first.isNotNull() & first.rlike("^[ \\t]+$")
    for column in columns[1:]:
        blank = blank & (F.coalesce(F.col(escaped(column)).cast("string"), F.lit("")) == "")
    return blank


def read_file(spark, path, fmt: str, position: int):
    """(One file as text columns tagged with its place in the day, its ``FileLayout``)."""
    from pyspark.sql import functions as F

    reader = spark.read
    if fmt == "csv":
        reader = reader.options(header=True, multiLine=True, escape='"')
    frame = reader.format(fmt).load(str(path))
    if fmt == "csv" and frame.columns:
        frame = frame.where(~blank_record(frame.columns))
    types = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    extras = [c for c in frame.columns if c not in LANDING_COLUMNS]
    renamed = {c: c for c in LANDING_COLUMNS} | {
        c: f"_iris_x{position}_{n}" for n, c in enumerate(extras)
    }
    fields = [Field(c, c if c in types else None, types.get(c, "string")) for c in LANDING_COLUMNS]
    fields += [Field(c, renamed[c], types[c]) for c in extras]

    def as_text(name: str):
        column = F.col(escaped(name))
        # Bytes as hex: Spark's text of bytes that are not UTF-8 would not read back.
        text = F.hex(column) if types[name] == "binary" else column.cast("string")
        return text.alias(renamed[name])

    selected = frame.select(*[as_text(c) for c in frame.columns], F.lit(position).alias(FILE))
    return selected, FileLayout(tuple(fields))
