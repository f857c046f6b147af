"""The landing area for newly collected, unidentified flowers, and a simulator that fills it.

Collectors drop batch files, one folder per observed day::

    root/observed_date=YYYY-MM-DD/batch-<UTC timestamp>-<8 hex>.parquet   (or .csv)

A batch appears whole or not at all (written under a hidden temporary name, then renamed).

Which files of a day folder are read (``scan_day``, the one rule both engines use): every regular
file whose name ends in ``.parquet`` or ``.csv`` (any case: ``flowers.csv`` and
``batch-x.PARQUET`` are read), in name order (batch names start with their UTC time, so this is
write order). Known markers and in-flight files are ignored, not read, and reported by name
(``LandingArea.ignored``: the run's metadata and log list them), each only in the shape its writer
gives it, so a marker's name cannot hide rows: ``_SUCCESS`` empty (or one JSON object, as an S3A
committer writes), ``_started_<id>`` and ``_committed_<id>`` (Databricks' commit protocol, ``<id>``
decimal, ``vacuum<id>`` too) empty or one JSON object, ``.<name>.crc`` starting with Hadoop's
checksum header ``crc\\0``, ``_temporary`` a folder holding no file (a file there is a write that
has not finished or was abandoned: the folder is quarantined naming it), and ``.<name>.tmp``
(files still being written, such as ``write_batch``'s temporaries, renamed when whole). An entry
named like a marker but not in its shape is quarantined with what is wrong. Anything else is
quarantined too: it becomes a rejects row naming the file and why, never silently skipped. That
covers any other name starting with ``.`` or
``_`` (hidden, or a marker this rule does not know), another extension, a folder, a link that
leads outside the landing area or cannot be resolved (a loop), a Parquet file whose footer or
any page cannot be decoded, and a CSV that is not UTF-8 throughout or has a record with more
fields than its header.
Every file is read through once when it is inspected, so a file is either read whole or
quarantined whole, and one bad file never fails the day.
Landing rows are counted from the files themselves (``LandingFile.rows``: the Parquet footer, the
CSV's records as the ``csv`` module parses them, so a quoted field spanning lines is one row),
independently of the scoring that reads them.
A day's ``fingerprint`` changes when one of its (non-ignored) entries appears, disappears or is
written to: names, sizes, mtimes, ctimes and inodes, so a file rewritten in place with its size
and mtime kept (``cp -p``, ``touch -r``, an rsync that keeps times) still changes it (its ctime
moves; a rename onto it changes the inode).
Reading is deliberately loose: CSV values stay text, a column missing from one batch is null
there, extra columns are kept, so that validation, not the reader, decides what is scoreable.
``observed_at`` is passed to validation as it arrived (``iter_files``), which rejects text that is
not a timestamp; ``read_day`` parses it to UTC timestamps for readers that want them.

Simulated flower ids are ``date.toordinal() * 10**10 + a random block start + row number``: unique
within a batch, disjoint between days, below 2**53 so exact wherever they pass through a float,
and two batches of the same day collide only if their random blocks overlap (probability about
(rows1 + rows2) / 10**10).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api import types as ptypes

from iris_assets.core.reject_record import arrow_kind, unsupported_kind
from iris_assets.core.schema import FEATURE_COLUMNS, LANDING_COLUMNS, PRIMARY_KEY

FORMATS = ("parquet", "csv")
IDS_PER_DAY = 10**10
# Drifted flowers have petals this much longer and wider than the training data's.
PETAL_DRIFT = 1.3

_DAY_FOLDER = re.compile(r"^observed_date=(\d{4}-\d{2}-\d{2})$")
# Names in a day folder that are not data: (pattern, what it is, what its content must be).
# Checked on content too, so a name cannot hide rows (see ``marker_problem``).
_MARKERS = (
    (re.compile(r"^_SUCCESS$"), "a job's success marker", "success"),
    # The DBIO commit protocol's names: _started_<txn id>, _committed_<txn id> (and
    # _committed_vacuum<id>), the id a decimal number.
    (re.compile(r"^_(committed|started)_(vacuum)?\d+$"), "a Databricks commit marker", "json"),
    (re.compile(r"^_temporary$"), "a Spark or Hadoop job's in-progress folder", "temporary"),
    (re.compile(r"^\..+\.crc$"), "a Hadoop checksum file", "crc"),
    (re.compile(r"^\..+\.tmp$"), "a file still being written", None),
)
_MARKER_BYTES = 4 * 1024 * 1024  # commit markers list the files of a commit: a day's few files
_CRC_MAGIC = b"crc\0"  # the header of every Hadoop ChecksumFileSystem .crc file
SUFFIXES = {".parquet": "parquet", ".csv": "csv"}
_MICROS_PER_DAY = 86_400 * 1_000_000
OBSERVED_AT_DTYPE = "datetime64[us, UTC]"


def iso_day(day: dt.date | str) -> str:
    """``day`` as YYYY-MM-DD; a ValueError for anything that is not a calendar date."""
    if isinstance(day, dt.datetime):
        return day.date().isoformat()
    if isinstance(day, dt.date):
        return day.isoformat()
    text = str(day).strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"{day!r} is not a date (YYYY-MM-DD)")
    return dt.date.fromisoformat(text).isoformat()


@lru_cache(maxsize=1)
def iris_class_statistics() -> tuple[np.ndarray, np.ndarray]:
    """Per-species means and standard deviations (3 x 4) of the Iris data bundled with sklearn.

    Read from sklearn's data file without importing sklearn (~1.7 s of CPU in an orchestrator
    that otherwise never needs it); ``load_iris`` reads the same file.
    """
    package = importlib.util.find_spec("sklearn")
    folder = (package.submodule_search_locations or [None])[0] if package else None
    bundled = Path(folder) / "datasets" / "data" / "iris.csv" if folder else None
    if bundled is not None and bundled.is_file():
        rows = np.loadtxt(bundled, delimiter=",", skiprows=1, dtype=np.float64)
        data, target = rows[:, :4], rows[:, 4].astype(np.int64)
    else:
        from sklearn.datasets import load_iris

        iris = load_iris()
        data, target = iris.data, iris.target
    means = np.stack([data[target == k].mean(axis=0) for k in range(3)])
    stds = np.stack([data[target == k].std(axis=0, ddof=1) for k in range(3)])
    return means, stds


def simulate_flowers(
    rows: int, date: dt.date | str, *, seed: int | None = None, drift: bool = False
) -> pd.DataFrame:
    """``rows`` unidentified flowers observed on ``date`` (columns ``LANDING_COLUMNS``).

    Each flower is drawn from one species, chosen uniformly, with that species' Iris means and
    standard deviations; the species is not in the output. Measurements are rounded to 0.1 cm and
    never below 0.1 cm. ``drift`` makes petals 30% longer and wider.
    """
    if rows < 0 or rows > IDS_PER_DAY:
        raise ValueError(f"rows must be between 0 and {IDS_PER_DAY}, got {rows}")
    day = dt.date.fromisoformat(iso_day(date))
    rng = np.random.default_rng(seed)
    means, stds = iris_class_statistics()
    species = rng.integers(0, 3, size=rows)
    values = rng.standard_normal((rows, len(FEATURE_COLUMNS)))
    values *= stds[species]
    values += means[species]
    if drift:
        petals = [FEATURE_COLUMNS.index(c) for c in FEATURE_COLUMNS if c.startswith("petal")]
        values[:, petals] *= PETAL_DRIFT
    values = np.maximum(np.round(values, 1), 0.1)
    start = day.toordinal() * IDS_PER_DAY + int(rng.integers(0, IDS_PER_DAY - rows + 1))
    midnight = np.datetime64(day.isoformat(), "us").astype(np.int64)
    micros = midnight + rng.integers(0, _MICROS_PER_DAY, size=rows)
    observed_at = pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC")
    frame = pd.DataFrame(
        {
            PRIMARY_KEY: np.arange(start, start + rows, dtype=np.int64),
            **{c: values[:, i] for i, c in enumerate(FEATURE_COLUMNS)},
            "observed_at": observed_at,
        }
    )
    return frame[list(LANDING_COLUMNS)]


def _empty_landing() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in LANDING_COLUMNS})
    frame["observed_at"] = pd.Series([], dtype=OBSERVED_AT_DTYPE)
    return frame


class LandingArea:
    """Batch files of observed flowers under ``root``, one folder per observed day."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def day_dir(self, date: dt.date | str) -> Path:
        return self.root / f"observed_date={iso_day(date)}"

    def write_batch(self, df: pd.DataFrame, date: dt.date | str, fmt: str = "parquet") -> Path:
        """Write one batch file for ``date`` atomically; returns its path."""
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
        folder = self.day_dir(date)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = folder / f"batch-{stamp}-{secrets.token_hex(4)}.{fmt}"
        # Hidden and without the batch suffix, so readers never pick up a half-written file.
        temporary = folder / f".{final.name}.{secrets.token_hex(4)}.tmp"
        try:
            if fmt == "parquet":
                pq.write_table(pa.Table.from_pandas(df, preserve_index=False), temporary)
            else:
                df.to_csv(temporary, index=False)
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        return final

    def ignored(self, date: dt.date | str) -> list[str]:
        """The day folder's markers and in-flight files, ``"name (what it is)"``, in name order."""
        folder = self.day_dir(date)
        if not folder.is_dir():
            return []
        return [f"{p.name} ({kind})" for p in sorted(folder.iterdir()) if (kind := marker_kind(p))]

    def days(self) -> list[str]:
        """ISO dates whose folder holds an entry of the day, oldest first (files are not read)."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _DAY_FOLDER.match(entry.name)
            if match and entry.is_dir() and self._entries(entry):
                found.append(match.group(1))
        return sorted(found)

    def scan_day(self, date: dt.date | str) -> list[LandingFile]:
        """Every file of the day folder, in name order, each readable or with its problem."""
        return [inspect_file(p, self.root) for p in self._entries(self.day_dir(date))]

    @staticmethod
    def _entries(folder: Path) -> list[Path]:
        """The day folder's entries that are part of the day (not markers), in name order."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if not marker_kind(p))

    def batch_files(self, date: dt.date | str) -> list[Path]:
        """The day's readable batch files, in the order they are read."""
        return [f.path for f in self.scan_day(date) if f.readable]

    def read_day(self, date: dt.date | str) -> pd.DataFrame:
        """All batches of ``date`` in one frame: ``LANDING_COLUMNS`` first, then any extras."""
        frames = [f for f in self.iter_day(date) if len(f)]
        for frame in frames:
            frame["observed_at"] = utc_timestamps(frame["observed_at"])
        if not frames:
            return _empty_landing()
        day = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        day = day.reset_index(drop=True)
        for column in LANDING_COLUMNS:
            if column not in day.columns:
                day[column] = None
        extras = [c for c in day.columns if c not in LANDING_COLUMNS]
        return day[[*LANDING_COLUMNS, *extras]]

    def iter_day(self, date: dt.date | str, batch_rows: int = 250_000) -> Iterator[pd.DataFrame]:
        """The day's rows in chunks of at most ``batch_rows``, file by file, in bounded memory.

        Every chunk has ``LANDING_COLUMNS`` first (null where its file lacks one), then the
        file's extra columns; ``observed_at`` as ``iter_files`` gives it.
        """
        yield from iter_files(self.batch_files(date), batch_rows)

    def count(self, date: dt.date | str) -> int:
        """Rows in the day's readable files, counted from the files (footer, CSV records)."""
        return sum(f.rows or 0 for f in self.scan_day(date))

    def fingerprint(self, date: dt.date | str) -> str:
        """Changes whenever an entry of the day appears, disappears or is written to."""
        folder = self.day_dir(date)
        return _fingerprint(
            folder,
            self._entries(folder),
            lambda s: f"{s.st_size}:{s.st_mtime_ns}:{s.st_ctime_ns}:{s.st_ino}",
        )

    def mtime_fingerprint(self, date: dt.date | str) -> str | None:
        """The fingerprint of earlier releases (names, sizes and mtimes of the names without a
        leading ``.`` or ``_``): a sensor cursor holding it reads as "unchanged since". None
        when the day has an entry that release skipped (``_late.csv``): it was never reported,
        so the day must be looked at again."""
        folder = self.day_dir(date)
        entries = self._entries(folder)
        if any(p.name.startswith((".", "_")) for p in entries):
            return None
        return _fingerprint(folder, entries, lambda s: f"{s.st_size}:{s.st_mtime_ns}")


def _fingerprint(folder: Path, entries: list[Path], describe) -> str:
    if not folder.is_dir():
        return ""
    parts = []
    for path in entries:
        try:
            info = path.stat()
        except OSError:  # a dangling link, say: scan_day quarantines it; it must not stop this
            parts.append(f"{path.name}:unreadable")
            continue
        parts.append(f"{path.name}:{describe(info)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LandingFile:
    """One entry of a day folder: how it is read and how many rows it holds, or its problem."""

    path: Path
    format: str | None
    rows: int | None
    problem: str | None = None

    @property
    def readable(self) -> bool:
        return self.problem is None


def _marker(name: str) -> tuple[str, str | None] | None:
    return next(((kind, rule) for pattern, kind, rule in _MARKERS if pattern.match(name)), None)


def marker_kind(path: Path) -> str | None:
    """What a marker or in-flight entry of a day folder is (``_MARKERS``); None for entries
    that are part of the day, including one named like a marker whose content is not one."""
    marker = _marker(path.name)
    if marker is None or marker_problem(path) is not None:
        return None
    return marker[0]


def marker_problem(path: Path) -> str | None:
    """Why an entry named like a marker is not that marker (None when it is, or is no marker).

    ``_SUCCESS`` is empty (or the JSON object an S3A committer writes), commit markers are
    empty or one JSON object, a ``.crc`` starts with Hadoop's checksum header, ``_temporary``
    is a folder holding no file (a file there is a write that has not finished or was
    abandoned, never data of the day)."""
    marker = _marker(path.name)
    if marker is None or marker[1] is None:
        return None
    kind, rule = marker
    try:
        info = path.lstat()
        if rule == "temporary":
            if not stat.S_ISDIR(info.st_mode):
                return f"{path.name} is named like {kind} but is not a folder"
            held = [
                os.path.relpath(os.path.join(top, name), path)
                for top, _, names in os.walk(path)
                for name in names
            ]
            if held:
                return (
                    f"{path.name} holds {len(held)} file(s) of a write that has not finished or "
                    f"was abandoned ({', '.join(sorted(held)[:3])}): they are not read; move "
                    "them out of _temporary once whole to have them read"
                )
            return None
        if not stat.S_ISREG(info.st_mode):
            return f"{path.name} is named like {kind} but is not a regular file"
        if rule == "crc":
            with open(path, "rb") as handle:
                if handle.read(len(_CRC_MAGIC)) != _CRC_MAGIC:
                    return f"{path.name} is named like {kind} but lacks its 'crc\\0' header"
            return None
        if info.st_size == 0:
            return None
        if info.st_size > _MARKER_BYTES:
            return f"{path.name} is named like {kind} but holds {info.st_size} bytes"
        content = json.loads(path.read_bytes())
    except OSError as exc:
        return f"{path.name} is named like {kind} but cannot be read: {exc}"
    except ValueError:
        content = None
    if not isinstance(content, dict):
        return f"{path.name} is named like {kind} but is neither empty nor one JSON object"
    return None


def inspect_file(path: Path, root: Path | None = None) -> LandingFile:
    """Classify one entry of a day folder, read it through once and count its rows.

    ``root`` is the landing area: an entry that resolves outside it (a link to elsewhere) is
    refused, so collectors cannot make the pipeline read files it was never given.
    """
    fmt = SUFFIXES.get(path.suffix.lower())
    # Checked on every entry, not only links: the day folder itself may be a link elsewhere.
    try:
        inside = root is None or path.resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError) as exc:  # a link loop: RuntimeError on 3.11, OSError later
        return LandingFile(path, fmt, None, f"unresolvable link {path.name}: {exc}")
    if not inside:
        return LandingFile(
            path, fmt, None, f"refused link {path.name}: it points outside the landing area"
        )
    problem = marker_problem(path)
    if problem is not None:
        return LandingFile(path, None, None, f"not a marker: {problem}")
    if path.name.startswith((".", "_")):
        return LandingFile(
            path,
            None,
            None,
            f"unrecognised name {path.name}: hidden or marker names are not read, and this is "
            "no known marker (_SUCCESS, _committed_<id>, _started_<id>, _temporary, .*.crc, "
            ".*.tmp): "
            "rename "
            "it without the leading '.' or '_' to have it read",
        )
    if not path.is_file():
        return LandingFile(path, None, None, f"unrecognised entry {path.name}: not a file")
    if fmt is None:
        return LandingFile(
            path,
            None,
            None,
            f"unrecognised file {path.name}: only .parquet and .csv files are read",
        )
    try:
        rows = _parquet_rows(path) if fmt == "parquet" else _csv_rows(path)
    except Exception as exc:
        return LandingFile(path, fmt, None, f"unreadable {fmt} file {path.name}: {exc}")
    return LandingFile(path, fmt, rows)


def check_column_names(names: list[str]) -> None:
    """Column names are exact and case-sensitive, the same on both engines.

    Spark matches names ignoring case and renames duplicates, pandas does neither; so a file
    whose names repeat (ignoring case), or that spells a landing column in another case
    (``FLOWER_ID``), is refused whole rather than read two ways.
    """
    seen: dict[str, str] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            # pandas calls it "Unnamed: <n>", Spark "_c<n>": the record could not say one name.
            raise ValueError(f"column {position} has no name")
        if name.lower() in seen:
            raise ValueError(
                f"column {name!r} repeats {seen[name.lower()]!r}: names must differ in more "
                "than case"
            )
        seen[name.lower()] = name
    expected = {c.lower(): c for c in LANDING_COLUMNS}
    for name in names:
        if name.lower() in expected and name != expected[name.lower()]:
            raise ValueError(
                f"column {name!r} is not {expected[name.lower()]!r}: column names are exact and "
                "case-sensitive"
            )


def _parquet_rows(path: Path) -> int:
    """Rows in the footer, after decoding every page (a corrupt page raises here, not mid-day)."""
    parquet = pq.ParquetFile(path)
    nanos = [
        f.name
        for f in parquet.schema_arrow
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns"
    ]
    if nanos:
        # Spark cannot read them, and a day must not fail on one file: both engines refuse it.
        raise ValueError(
            f"column(s) {', '.join(nanos)} hold nanosecond timestamps, which Spark cannot "
            "read: write them in microseconds (pandas: .astype('datetime64[us, UTC]'))"
        )
    check_column_names(parquet.schema_arrow.names)
    # Nested and other values have no one spelling in the rejects record on both engines.
    odd = unsupported_kind((f.name, arrow_kind(f.type)) for f in parquet.schema_arrow)
    if odd:
        raise ValueError(odd)
    decoded = sum(b.num_rows for b in parquet.iter_batches(batch_size=65_536, use_threads=False))
    if decoded != parquet.metadata.num_rows:
        raise ValueError(
            f"the footer says {parquet.metadata.num_rows} rows, the pages hold {decoded}"
        )
    return decoded


def _csv_rows(path: Path) -> int:
    """Records after the header, as the ``csv`` module parses them (blank lines are not records).

    Raises on a byte sequence that is not UTF-8 anywhere in the file, and on a record with more
    fields than the header (a reader would have to drop or shift values).
    """
    # pandas (and Spark) read a field of any length; the csv module stops at 128 KiB by default.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as handle:
        # As pandas reads them: an empty line, or one of only spaces and tabs, is not a record.
        records = (r for r in csv.reader(handle, strict=True) if r and not _blank_record(r))
        header = next(records, None)
        if header is None:
            return 0
        check_column_names(header)
        rows = 0
        for rows, record in enumerate(records, start=1):  # noqa: B007
            if len(record) > len(header):
                raise ValueError(
                    f"record {rows} has {len(record)} fields, the header has {len(header)}"
                )
        return rows


def _blank_record(record: list[str]) -> bool:
    """A blank line, not a record: a first field of only spaces and tabs, quoted or not, and
    nothing else. The same rule drops such rows from both readers (``drop_blank_records`` and
    the Spark path), so the count and the scoring agree."""
    return (
        bool(record)
        and record[0] != ""
        and not record[0].strip(" \t")
        and all(f == "" for f in record[1:])
    )


def drop_blank_records(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (CSV text) without the rows ``_blank_record`` says are blank lines."""
    if frame.empty or not len(frame.columns):
        return frame
    first = frame.iloc[:, 0].fillna("").astype(str)
    rest_empty = frame.iloc[:, 1:].fillna("").astype(str).eq("").all(axis=1)
    blank = first.ne("") & first.str.strip(" \t").eq("") & rest_empty
    return frame[~blank.to_numpy()] if blank.any() else frame


def iter_files(paths: list[Path], batch_rows: int = 250_000) -> Iterator[pd.DataFrame]:
    """The rows of ``paths`` in chunks: ``LANDING_COLUMNS`` first, then the file's extras.

    ``observed_at`` stays as it arrived (text is validation's to judge), except that timestamps
    are converted to UTC microseconds.
    """
    for path in paths:
        for chunk in _iter_batch(path, batch_rows):
            if not len(chunk.columns):
                continue
            for column in LANDING_COLUMNS:
                if column not in chunk.columns:
                    chunk[column] = None
            if ptypes.is_datetime64_any_dtype(chunk["observed_at"].dtype):
                chunk["observed_at"] = utc_timestamps(chunk["observed_at"])
            extras = [c for c in chunk.columns if c not in LANDING_COLUMNS]
            yield chunk[[*LANDING_COLUMNS, *extras]].reset_index(drop=True)


_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


def nullable_integers(kind: pa.DataType):
    """Integer columns stay integers when some values are null (pandas would make them floats,
    and a float column does not hold ids: ``core.validation.ID_RULE``)."""
    return _NULLABLE_INTEGERS.get(kind)


def _iter_batch(path: Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    if path.suffix.lower() == ".csv":
        try:
            for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=batch_rows):
                yield drop_blank_records(chunk)
        except pd.errors.EmptyDataError:
            return
        return
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_rows, use_threads=False):
        # The file's columns as Spark sees them: pandas metadata would turn a stored index
        # (``to_parquet(index=True)``, even a ``flower_id`` one) into a frame index, and drop it.
        yield batch.to_pandas(types_mapper=nullable_integers, ignore_metadata=True)


def utc_timestamps(values: pd.Series) -> pd.Series:
    """``values`` as UTC microsecond timestamps; text that is not a timestamp becomes missing."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return values.dt.tz_convert("UTC").astype(OBSERVED_AT_DTYPE)
