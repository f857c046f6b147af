"""Measurement validation: which raw rows are scoreable flowers, and why the others are not.

Every input row ends in exactly one of two frames: ``valid`` (typed, ready for training or scoring)
or ``rejects`` (the raw id, every reason the row failed, and the row as it arrived, as JSON in
``core.reject_record``'s canonical form, the same from both engines). Rows
are checked column by column with vectorised numpy/pandas/arrow operations; Python touches single
values only to describe the rejected rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

from iris_assets.core.identity import derived_ids
from iris_assets.core.reject_record import arrow_kind, canonical_text, records
from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    LABEL,
    MAX_MEASUREMENT_CM,
    PRIMARY_KEY,
    SPECIES_NAMES,
)

REJECT_COLUMNS: tuple[str, ...] = (PRIMARY_KEY, "reason", "record")
OBSERVED_AT_RULE = "observed_at is not a timestamp (ISO 8601, e.g. 2026-11-24T08:00:00Z)"

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MAX_TEXT = str(_INT64_MAX)
# The id rule (``ID_RULE``): an integer column, or text of decimal digits in canonical form.
_CANONICAL_ID = r"^(0|[1-9][0-9]*)$"
ID_RULE = (
    f"{PRIMARY_KEY} is not a non-negative integer in canonical form (an integer column, or "
    "decimal digits without sign, leading zeros, spaces, decimal point or exponent)"
)
_NAN_TEXT = ("nan", "+nan", "-nan")
_LABEL_TEXT = pa.array([*SPECIES_NAMES, *(str(i) for i in range(len(SPECIES_NAMES)))])
_LABEL_VALUE = np.array([*range(len(SPECIES_NAMES)), *range(len(SPECIES_NAMES))], dtype=np.int64)
_SPECIES_NAME = np.array(SPECIES_NAMES, dtype=object)
_LABEL_CHOICES = ", ".join([*(str(i) for i in range(len(SPECIES_NAMES))), *SPECIES_NAMES])


@dataclass(frozen=True)
class ValidationResult:
    """``valid``: typed rows in input order. ``rejects``: flower_id (raw text), reason, record."""

    valid: pd.DataFrame
    rejects: pd.DataFrame


class _Failures:
    """One boolean mask per reason that at least one row has, in the order reasons are reported."""

    def __init__(self, rows: int):
        self.rows = rows
        self.any = np.zeros(rows, dtype=bool)
        self.masks: list[tuple[np.ndarray, str]] = []

    def add(self, mask: np.ndarray, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self.masks.append((mask, reason))
            self.any |= mask

    def add_all(self, reason: str) -> None:
        self.add(np.ones(self.rows, dtype=bool), reason)

    def reasons(self, rows: np.ndarray) -> np.ndarray:
        """The reasons of the given rows, joined with "; " in the order they were added."""
        none = pa.scalar(None, pa.string())
        parts = [pc.if_else(pa.array(mask[rows]), reason, none) for mask, reason in self.masks]
        if not parts:
            return np.full(len(rows), "", dtype=object)
        joined = pc.binary_join_element_wise(*parts, "; ", null_handling="skip")
        return joined.to_numpy(zero_copy_only=False)


def _column(raw: pd.DataFrame, name: str) -> pd.Series | None:
    """The first column called ``name`` (frames built by hand may repeat a name), or None."""
    positions = np.flatnonzero(raw.columns == name)
    return raw.iloc[:, positions[0]] if len(positions) else None


def _is_number_dtype(series: pd.Series) -> bool:
    dtype = series.dtype
    return ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype)


def _is_never_number(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        ptypes.is_bool_dtype(dtype)
        or ptypes.is_datetime64_any_dtype(dtype)
        or ptypes.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)
    )


def _text_array(series: pd.Series, missing: np.ndarray) -> pa.Array:
    """The column as an arrow string array, null where missing; non-text values via ``str``."""
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        array = None
    if array is not None and (
        pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    ):
        return array
    try:
        text = series.astype(object).astype(str).to_numpy(dtype=object)
    except UnicodeDecodeError:  # bytes that are not UTF-8: shown escaped, rejected as not text
        text = np.array([_as_text(value) for value in series.astype(object)], dtype=object)
    return pa.array(text, type=pa.large_string(), mask=missing)


def _as_text(value) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def _unparsed_text(series: pd.Series, rows: np.ndarray) -> pd.Series:
    values = series.iloc[rows].astype(object)
    try:
        text = values.astype(str)
    except UnicodeDecodeError:  # as in ``_text_array``
        text = values.map(_as_text)
    return text.str.strip().str.lower()


def _parse_measurement(series: pd.Series):
    """(values, missing, not_number, not_finite) for one measurement column."""
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    rows = len(series)
    not_number = np.zeros(rows, dtype=bool)
    nan_text = np.zeros(rows, dtype=bool)
    if _is_never_number(series):
        values = np.full(rows, np.nan)
        not_number = ~missing
    elif _is_number_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        parsed = pd.to_numeric(series, errors="coerce")
        values = np.asarray(parsed.to_numpy(dtype=np.float64, na_value=np.nan))
        unparsed = np.flatnonzero(np.isnan(values) & ~missing)
        if len(unparsed):
            text = _unparsed_text(series, unparsed)
            blank = (text == "").to_numpy()
            is_nan = text.isin(_NAN_TEXT).to_numpy()
            missing[unparsed[blank]] = True
            nan_text[unparsed[is_nan]] = True
            not_number[unparsed[~blank & ~is_nan]] = True
    not_finite = np.isinf(values) | nan_text
    return values, missing, not_number, not_finite


def _parse_ids_from_text(series: pd.Series, missing: np.ndarray):
    """(ids, missing, invalid) for a text/object id column: canonical digit strings only."""
    text = _text_array(series, missing)
    canonical = pc.match_substring_regex(text, _CANONICAL_ID)
    length = pc.utf8_length(text)
    fits = pc.or_(
        pc.less(length, 19),
        pc.and_(pc.equal(length, 19), pc.less_equal(text, _INT64_MAX_TEXT)),
    )
    ok = pc.fill_null(pc.and_(canonical, fits), False).to_numpy(zero_copy_only=False)
    ids = pc.cast(pc.if_else(ok, text, "0"), pa.int64()).to_numpy(zero_copy_only=False)
    ids = np.array(ids, dtype=np.int64)
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), False).to_numpy(
        zero_copy_only=False
    )
    missing = missing | blank
    return ids, missing, ~ok & ~missing


def _parse_ids(series: pd.Series):
    """(ids, missing, invalid): ids are int64, 0 wherever missing or invalid (``ID_RULE``)."""
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    rows = len(series)
    if ptypes.is_unsigned_integer_dtype(series.dtype):
        raw = series.to_numpy(dtype=np.uint64, na_value=0)
        invalid = raw > np.uint64(_INT64_MAX)
        return np.where(invalid, 0, raw).astype(np.int64), missing, invalid
    if ptypes.is_integer_dtype(series.dtype) and not ptypes.is_bool_dtype(series.dtype):
        ids = series.to_numpy(dtype=np.int64, na_value=0)
        invalid = ids < 0
        return np.where(invalid, 0, ids), missing, invalid
    if _is_never_number(series) or _is_number_dtype(series):
        # A float (or boolean, or date) column does not hold ids: 5.0 is not written as an id.
        return np.zeros(rows, dtype=np.int64), missing, ~missing
    return _parse_ids_from_text(series, missing)


def parse_ids(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ids, usable) for raw ids of any dtype, exact to int64 (never through a float)."""
    ids, missing, invalid = _parse_ids(series)
    return ids, ~missing & ~invalid


def _parse_timestamps(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(UTC timestamps, unparsable): text is ISO 8601, each value on its own; blank is missing."""
    if ptypes.is_datetime64_any_dtype(series.dtype):
        stamps = pd.to_datetime(series, utc=True)
        return stamps, np.zeros(len(series), dtype=bool)
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    if _is_number_dtype(series) or ptypes.is_bool_dtype(series.dtype):
        # An epoch number says nothing of its unit: refused rather than guessed.
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]"), ~missing
    trimmed = pc.utf8_trim_whitespace(_text_array(series, missing))
    blank = pc.fill_null(pc.equal(trimmed, ""), False).to_numpy(zero_copy_only=False)
    text = series.astype(object).where(~(missing | blank), None)
    stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    unparsable = stamps.isna().to_numpy(dtype=bool) & ~missing & ~blank
    return stamps, unparsable


def _parse_species(series: pd.Series):
    """(labels, missing, invalid): labels are int64 0..2, -1 wherever missing or invalid."""
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    rows = len(series)
    labels = np.full(rows, -1, dtype=np.int64)
    if _is_never_number(series):
        return labels, missing, ~missing
    if _is_number_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        known = np.isin(values, np.arange(len(SPECIES_NAMES), dtype=np.float64))
        labels[known] = values[known].astype(np.int64)
        return labels, missing, ~known & ~missing
    text = pc.utf8_lower(pc.utf8_trim_whitespace(_text_array(series, missing)))
    position = pc.fill_null(pc.index_in(text, value_set=_LABEL_TEXT), -1).to_numpy()
    found = position >= 0
    labels[found] = _LABEL_VALUE[position[found]]
    invalid = np.zeros(rows, dtype=bool)
    rest = np.flatnonzero(~found & ~missing)
    if len(rest):
        # Numbers written as text in another spelling, such as "1.0".
        blank = (_unparsed_text(series, rest) == "").to_numpy()
        values = pd.to_numeric(series.iloc[rest], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        known = np.isin(values, np.arange(len(SPECIES_NAMES), dtype=np.float64))
        labels[rest[known]] = values[known].astype(np.int64)
        missing = missing.copy()
        missing[rest[blank]] = True
        invalid[rest[~blank & ~known]] = True
    return labels, missing, invalid


def column_kind(series: pd.Series) -> str | None:
    """The ``core.reject_record`` kind of a column by its dtype; None: judge each value."""
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype):
        return arrow_kind(dtype.pyarrow_dtype)
    if isinstance(dtype, pd.CategoricalDtype) or ptypes.is_object_dtype(dtype):
        return None
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_integer_dtype(dtype):
        return "integer"
    if ptypes.is_float_dtype(dtype):
        return (
            "float32" if np.dtype(getattr(dtype, "numpy_dtype", dtype)).itemsize <= 4 else "float64"
        )
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp"
    if ptypes.is_datetime64_dtype(dtype):
        return "timestamp_ntz"
    if ptypes.is_string_dtype(dtype):
        return "text"
    return None


def describe_rows(frame: pd.DataFrame) -> tuple[list[str | None], list[str]]:
    """(raw flower_id text, record JSON) of each row, by ``core.reject_record``'s rule.

    The keys are the frame's columns in order; each value is judged by its column's dtype.
    """
    names = [str(name) for name in frame.columns]
    kinds = [column_kind(frame.iloc[:, i]) for i in range(frame.shape[1])]
    columns = [frame.iloc[:, i].tolist() for i in range(frame.shape[1])]
    found = _column(frame, PRIMARY_KEY)
    ids = [None] * len(frame)
    if found is not None:
        position = names.index(PRIMARY_KEY)
        ids = [raw_id_text(v, kinds[position]) for v in columns[position]]
    return ids, records(names, columns, kinds, len(frame))


def raw_id_text(value: object, kind: str | None) -> str | None:
    """The raw ``flower_id`` of a rejects row: its canonical text, None when missing or blank."""
    text = canonical_text(value, kind)
    return None if text is None or not text.strip() else text


# (raw flower_id text, record JSON) of the given rejected rows: ``describe_rows`` by default.
Describe = Callable[[pd.DataFrame], tuple[Sequence[str | None], Sequence[str]]]


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            PRIMARY_KEY: pd.Series([], dtype=object),
            "reason": pd.Series([], dtype=object),
            "record": pd.Series([], dtype=object),
        }
    )


def validate_measurements(
    raw: pd.DataFrame,
    *,
    require_label: bool = False,
    passthrough: Sequence[str] = (),
    seen_column: str | None = None,
    derive_missing_ids: bool = False,
    id_below: int | None = None,
    observed_on: str | None = None,
    check_duplicates: bool = True,
    describe: Describe | None = None,
    seen: np.ndarray | None = None,
) -> ValidationResult:
    """Split ``raw`` into typed valid rows and rejected rows with every reason they failed.

    Valid rows have ``flower_id`` (int64), the four measurements (float64), with
    ``require_label`` also ``species`` (int64 0..2) and ``species_name``, then the
    ``passthrough`` columns that exist in ``raw``, unchanged. Rows keep their input order.

    When ``raw`` is one batch of a larger partition, the caller can name a boolean
    ``seen_column`` marking rows whose flower_id already appeared in an earlier batch: those are
    duplicates too. The column itself is not part of the rejected ``record``. ``seen`` is the
    same marking as an array, which cannot clash with a column of the file.

    With ``derive_missing_ids`` (and ``require_label``) a frame without a ``flower_id`` column
    gets content-derived ids (``core.identity``) instead of being rejected; ``id_below`` rejects
    explicit ids at or above it (ingestion reserves [2**62, 2**63) for derived ids).
    ``observed_on`` (YYYY-MM-DD) rejects rows whose ``observed_at`` is not a timestamp or is on
    another UTC day; a missing (or blank) ``observed_at`` is allowed. ``check_duplicates=False``
    leaves repeated ids to the caller (Spark decides them across the whole day).
    ``describe`` gives the rejected rows' raw id and record (``describe_rows`` by default; the
    Spark path knows each row's file and spells its record from that file's columns).
    """
    if seen is not None:
        seen = np.asarray(seen, dtype=bool)
    elif seen_column is not None and seen_column in raw.columns:
        seen = raw[seen_column].fillna(False).to_numpy(dtype=bool)
        raw = raw.drop(columns=[seen_column])
    rows = len(raw)
    failures = _Failures(rows)
    derive = derive_missing_ids and require_label and _column(raw, PRIMARY_KEY) is None
    required = [PRIMARY_KEY, *FEATURE_COLUMNS, *([LABEL] if require_label else [])]
    columns = {name: _column(raw, name) for name in required}
    for name in required:
        if columns[name] is None and not (derive and name == PRIMARY_KEY):
            failures.add_all(f"missing column: {name}")

    ids = np.zeros(rows, dtype=np.int64)
    if columns[PRIMARY_KEY] is not None:
        ids, missing, invalid = _parse_ids(columns[PRIMARY_KEY])
        failures.add(missing, f"{PRIMARY_KEY} is missing")
        failures.add(invalid, ID_RULE)
        if id_below is not None:
            failures.add(
                ~missing & ~invalid & (ids >= id_below),
                f"{PRIMARY_KEY} must be below {id_below} (larger ids are reserved for ids "
                "derived from content)",
            )

    measurements: dict[str, np.ndarray] = {}
    for name in FEATURE_COLUMNS:
        if columns[name] is None:
            measurements[name] = np.full(rows, np.nan)
            continue
        values, missing, not_number, not_finite = _parse_measurement(columns[name])
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            failures.add(missing, f"{name} is missing")
            failures.add(not_number, f"{name} is not a number")
            failures.add(not_finite, f"{name} is not finite")
            failures.add(finite & (values <= 0), f"{name} must be positive")
            failures.add(
                finite & (values > MAX_MEASUREMENT_CM), f"{name} exceeds {MAX_MEASUREMENT_CM:g} cm"
            )
        measurements[name] = values

    observed = _column(raw, "observed_at") if observed_on is not None else None
    if observed is not None:
        stamps, unparsable = _parse_timestamps(observed)
        failures.add(unparsable, OBSERVED_AT_RULE)
        start = pd.Timestamp(observed_on, tz="UTC")
        inside = (stamps >= start) & (stamps < start + pd.Timedelta(days=1))
        off_day = (stamps.notna() & ~inside).to_numpy(dtype=bool)
        failures.add(off_day, f"observed_at is not on the partition day {observed_on}")

    labels = np.full(rows, -1, dtype=np.int64)
    if require_label and columns[LABEL] is not None:
        labels, missing, invalid = _parse_species(columns[LABEL])
        failures.add(missing, f"{LABEL} is missing")
        failures.add(invalid, f"{LABEL} is not one of {_LABEL_CHOICES}")

    if derive:
        ok = np.flatnonzero(~failures.any)
        values = np.column_stack([measurements[name][ok] for name in FEATURE_COLUMNS])
        ids[ok] = derived_ids(values, labels[ok])

    if check_duplicates and (columns[PRIMARY_KEY] is not None or derive):
        # A row already seen elsewhere is a duplicate whatever its place in this batch, so it
        # must not make the first valid occurrence in this batch look like a repeat.
        earlier = seen & ~failures.any if seen is not None else np.zeros(rows, dtype=bool)
        candidates = np.flatnonzero(~failures.any & ~earlier)
        repeated = pd.Series(ids[candidates]).duplicated(keep="first").to_numpy()
        duplicate = earlier.copy()
        duplicate[candidates[repeated]] = True
        failures.add(duplicate, f"duplicate {PRIMARY_KEY}")

    keep = np.flatnonzero(~failures.any)
    valid = pd.DataFrame(
        {
            PRIMARY_KEY: ids[keep],
            **{name: measurements[name][keep] for name in FEATURE_COLUMNS},
        }
    )
    if require_label:
        valid[LABEL] = labels[keep]
        valid["species_name"] = _SPECIES_NAME[labels[keep]]
    for name in passthrough:
        column = _column(raw, name)
        if column is not None and name not in valid.columns:
            valid[name] = column.iloc[keep].reset_index(drop=True)

    rejected = np.flatnonzero(failures.any)
    if not len(rejected):
        return ValidationResult(valid=valid, rejects=_empty_rejects())
    ids, described = (describe or describe_rows)(raw.iloc[rejected])
    rejects = pd.DataFrame(
        {
            PRIMARY_KEY: pd.Series(list(ids), dtype=object),
            "reason": pd.Series(failures.reasons(rejected), dtype=object),
            "record": pd.Series(list(described), dtype=object),
        }
    )
    return ValidationResult(valid=valid, rejects=rejects)
