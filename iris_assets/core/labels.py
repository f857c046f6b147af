"""Late ground truth: the ``flower_labels`` landing, its validation and the labelled-rows table.

Collectors learn the species of some flowers after they were scored and drop label batches in
``Settings.labels_landing_dir`` with the same conventions as ``new_flowers``
(``observed_date=YYYY-MM-DD/batch-<UTC time>-<hex>.parquet|csv``, written whole or not at all,
read by ``core.landing``): the day folder is the day the flower was *observed* (its inference
partition), not the day the label arrived. A label row is ``flower_id`` and ``species`` (0-2 or
the species name); other columns (``labelled_at``, a collector's note) are kept in rejects only.

Every landing row ends in exactly one place: the labels table (``flower_labels``: the label
joined with that day's prediction and measurements) or the rejects table (stage ``labels``,
partition = the day) with every reason it failed. ``flower_id`` and ``species`` are checked by
``core.validation.validate_measurements`` itself (the same parsing and wording as the feature
table), then a valid label must name a flower scored that day. A repeated ``flower_id`` in a day
is a duplicate: the first label in file order counts (batch files are named by their landing
time, so the oldest batch), the repeat is quarantined with a reason that says whether the labels
agree and which was kept. A later file cannot overrule an earlier one (a label batch is a
collector's word, not an edit): to correct a label, delete the batch holding the wrong one and
land the right one. Labels are
re-derived from the landing files on every run, so a label quarantined because its day was not
scored yet is accepted once the day is scored.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from iris_assets.core.landing import LandingArea, LandingFile, inspect_file, iso_day, iter_files
from iris_assets.core.quarantine import rejects_rows
from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    LABEL,
    LANDING_COLUMNS,
    PRIMARY_KEY,
    SPECIES_NAMES,
    UTC_TIMESTAMP,
    TableSpec,
)
from iris_assets.core.validation import validate_measurements

STAGE = "labels"
LABEL_COLUMNS: tuple[str, ...] = (PRIMARY_KEY, LABEL)
_ROW = "__label_row"

LABELS_TABLE_SCHEMA = pa.schema(
    [
        pa.field(PRIMARY_KEY, pa.int64(), nullable=False),
        pa.field("observed_date", pa.string(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field("species_name", pa.string(), nullable=False),
        *(pa.field(c, pa.float64(), nullable=False) for c in FEATURE_COLUMNS),
        pa.field("prediction", pa.int64(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("label_file", pa.string(), nullable=False),
        pa.field("labelled_at", UTC_TIMESTAMP, nullable=False),
    ]
)
LABELS_TABLE = TableSpec(LABELS_TABLE_SCHEMA, partition_by=("observed_date",))

# Columns the landing reader adds to every chunk (``core.landing.iter_files``); they are not part
# of a label file unless the file has them.
_READER_COLUMNS = tuple(c for c in LANDING_COLUMNS if c not in LABEL_COLUMNS)


class LabelFileError(ValueError):
    """A file offered as a label batch cannot be read: nothing was copied."""


@dataclass(frozen=True)
class LabelledDay:
    """One day of labels as validated: accepted rows, rejects rows, and what the files held."""

    day: str
    labelled: pd.DataFrame  # LABELS_TABLE_SCHEMA columns
    rejects: pd.DataFrame  # REJECTS_TABLE_SCHEMA columns, row rejects and file rejects
    landing_rows: int  # counted from the files (footers, lines), independently of validation
    files: tuple[LandingFile, ...]

    @property
    def files_quarantined(self) -> list[LandingFile]:
        return [f for f in self.files if not f.readable]

    @property
    def rows_rejected(self) -> int:
        """Rejected label rows (a quarantined file is one more rejects row, not a label row)."""
        return len(self.rejects) - len(self.files_quarantined)


def copy_label_file(source: Path | str, root: Path | str, day: str) -> tuple[Path, int]:
    """Copy ``source`` byte for byte into the day's label folder, whole or not at all.

    A file the landing could not read (unknown suffix, broken Parquet, not UTF-8) is refused
    before anything is copied. Returns the batch's path and its rows.
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise LabelFileError(f"{source} does not exist or is not a file")
    checked = inspect_file(source)
    if not checked.readable:
        raise LabelFileError(f"{checked.problem}: nothing was copied")
    missing = [c for c in LABEL_COLUMNS if c not in _header(source, checked.format)]
    if missing:
        raise LabelFileError(
            f"{source.name} has no {' or '.join(missing)} column: a label file has the columns "
            f"{', '.join(LABEL_COLUMNS)}; nothing was copied"
        )
    if not checked.rows:
        raise LabelFileError(f"{source.name} holds no label rows: nothing was copied")
    folder = LandingArea(root).day_dir(day)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = folder / f"batch-{stamp}-{secrets.token_hex(4)}.{checked.format}"
    temporary = folder / f".{final.name}.{secrets.token_hex(4)}.tmp"
    try:
        shutil.copyfile(source, temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return final, checked.rows or 0


def _header(path: Path, fmt: str | None) -> list[str]:
    """The column names of a file ``inspect_file`` already found readable."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    # utf-8-sig: a byte order mark (Excel's "CSV UTF-8") is not part of the first name.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for record in csv.reader(handle):
            if record and any(field.strip() for field in record):
                return [field.strip() for field in record]
    return []


def labelled_ids(root: Path | str, day: str) -> set[int]:
    """Flower ids that already have a label row in the day's landing files (valid or not)."""
    from iris_assets.core.validation import parse_ids

    found: set[int] = set()
    for chunk in iter_files(LandingArea(root).batch_files(day)):
        ids, usable = parse_ids(chunk[PRIMARY_KEY])
        found.update(int(i) for i in ids[usable])
    return found


def _records(raw: pd.DataFrame) -> list[str]:
    """Each raw row as JSON, without the empty columns the landing reader added."""
    added = [c for c in _READER_COLUMNS if c in raw.columns and raw[c].isna().all()]
    shown = raw.drop(columns=added)
    return [
        json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False, default=str)
        for row in shown.to_dict("records")
    ]


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _labelled_at(raw: pd.DataFrame, now: pd.Timestamp) -> tuple[pd.Series, list[str | None]]:
    """(each row's labelled_at, now where missing; the reason it is refused, or None)."""
    wrong: list[str | None] = [None] * len(raw)
    if "labelled_at" not in raw.columns:
        return pd.Series(now, index=raw.index), wrong
    given = raw["labelled_at"].astype(object)
    blank = given.isna() | given.map(lambda v: isinstance(v, str) and not v.strip())
    # Only text and timestamps can be a time: pandas would read a boolean column as a zone-less
    # NaT column (which cannot be compared with ``now``) and numbers as epochs.
    timelike = given.map(lambda v: isinstance(v, str | datetime | np.datetime64))
    stamps = pd.to_datetime(
        given.where(~blank & timelike), utc=True, errors="coerce", format="ISO8601"
    )
    if stamps.dt.tz is None:  # nothing parsed: an all-NaT column pandas leaves without a zone
        stamps = stamps.dt.tz_localize("UTC")
    for i in np.flatnonzero(stamps.isna().to_numpy() & ~blank.to_numpy()):
        wrong[i] = (
            f"labelled_at {str(given.iloc[i])!r} is not a past ISO 8601 time "
            "(e.g. 2026-11-22T14:05:00Z)"
        )
    for i in np.flatnonzero((stamps > now).to_numpy()):
        wrong[i] = f"labelled_at {stamps.iloc[i].isoformat()} is in the future"
    return stamps.fillna(now), wrong


def validate_labels(
    raw: pd.DataFrame, scored: pd.DataFrame, day: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled rows, rejects) for one day's raw label rows (``raw.label_file`` names each file).

    ``scored`` holds the day's inference rows: ``flower_id``, the measurements, ``prediction``
    and ``model_version``. Rejects have ``flower_id`` (raw text), ``reason`` and ``record``.
    """
    raw = raw.reset_index(drop=True)
    # Placeholder measurements: validation checks a label's id and species exactly as it checks
    # a feature row's; the measurements of a labelled flower are the scored ones, joined below.
    probe = pd.DataFrame({c: raw[c] for c in LABEL_COLUMNS if c in raw.columns})
    for column in FEATURE_COLUMNS:
        probe[column] = 1.0
    probe[_ROW] = np.arange(len(raw))
    checked = validate_measurements(
        probe, require_label=True, passthrough=[_ROW], check_duplicates=False
    )
    valid = checked.valid
    rejected_rows = np.setdiff1d(np.arange(len(raw)), valid[_ROW].to_numpy())
    reasons = list(checked.rejects["reason"])
    ids_text = list(checked.rejects[PRIMARY_KEY])
    now = pd.Timestamp(datetime.now(UTC))

    # A labelled_at that is there but is no time, or is later than now, is refused, never
    # replaced: a missing one is the run's time (the column is optional).
    stamps, wrong_time = _labelled_at(raw, now)
    for i, row in enumerate(rejected_rows):
        if wrong_time[row]:
            reasons[i] = f"{reasons[i]}; {wrong_time[row]}"
    bad_time = np.array([bool(wrong_time[r]) for r in valid[_ROW]], dtype=bool)
    if bad_time.any():
        for row in valid.loc[bad_time, _ROW]:
            ids_text.append(str(valid.loc[valid[_ROW] == row, PRIMARY_KEY].iloc[0]))
            reasons.append(wrong_time[row])
        rejected_rows = np.concatenate([rejected_rows, valid.loc[bad_time, _ROW].to_numpy()])
        valid = valid[~bad_time].reset_index(drop=True)

    # A repeated flower_id: the first valid label in file order (files by name: oldest batch
    # first) counts; each repeat is quarantined saying whether it agrees with the kept one.
    repeat = valid.duplicated(PRIMARY_KEY, keep="first").to_numpy()
    if repeat.any():
        first = valid[~repeat].set_index(PRIMARY_KEY)
        for row in valid[repeat].itertuples(index=False):
            flower = getattr(row, PRIMARY_KEY)
            kept = first.loc[flower]
            kept_file = raw.at[int(kept[_ROW]), "label_file"]
            if int(getattr(row, LABEL)) == int(kept[LABEL]):
                reason = f"duplicate {PRIMARY_KEY}: the same label as the one kept"
            else:
                reason = (
                    f"duplicate {PRIMARY_KEY}: the labels disagree, kept {kept['species_name']} "
                    f"(from {kept_file}), not {row.species_name}; to correct a label, delete "
                    "the batch that holds the wrong one and land the right one"
                )
            ids_text.append(str(flower))
            reasons.append(reason)
        rejected_rows = np.concatenate([rejected_rows, valid.loc[repeat, _ROW].to_numpy()])
        valid = valid[~repeat].reset_index(drop=True)

    joined = valid[[PRIMARY_KEY, LABEL, "species_name", _ROW]].merge(
        scored[[PRIMARY_KEY, *FEATURE_COLUMNS, "prediction", "model_version"]],
        on=PRIMARY_KEY,
        how="left",
    )
    unscored = joined["prediction"].isna().to_numpy()
    for flower in joined.loc[unscored, PRIMARY_KEY]:
        ids_text.append(str(flower))
        reasons.append(
            f"{PRIMARY_KEY} {flower} was not scored on {day}: a label names a flower of that "
            "day's inference partition (score the day first, or check the date)"
        )
    rejected_rows = np.concatenate([rejected_rows, joined.loc[unscored, _ROW].to_numpy()])
    rejects = pd.DataFrame(
        {
            PRIMARY_KEY: pd.Series(ids_text, dtype=object),
            "reason": pd.Series(reasons, dtype=object),
            "record": pd.Series(
                _records(raw.iloc[rejected_rows].drop(columns=["label_file"])), dtype=object
            ),
        }
    )

    kept = joined[~unscored].reset_index(drop=True)
    source_rows = raw.iloc[kept[_ROW].to_numpy()].reset_index(drop=True)
    labelled = pd.DataFrame(
        {
            PRIMARY_KEY: kept[PRIMARY_KEY].astype("int64"),
            "observed_date": day,
            LABEL: kept[LABEL].astype("int64"),
            "species_name": kept["species_name"].astype(str),
            **{c: kept[c].astype("float64") for c in FEATURE_COLUMNS},
            "prediction": kept["prediction"].astype("int64"),
            "model_version": kept["model_version"].astype(str),
            "correct": (kept["prediction"].astype("int64") == kept[LABEL]).astype(bool),
            "label_file": source_rows["label_file"].astype(str),
            "labelled_at": stamps.iloc[kept[_ROW].to_numpy()]
            .reset_index(drop=True)
            .astype("datetime64[us, UTC]"),
        }
    )
    return labelled[LABELS_TABLE_SCHEMA.names], rejects


def read_labelled_day(root: Path | str, day: str, scored: pd.DataFrame) -> LabelledDay:
    """Read, validate and account for every label file of ``day`` (small: labels, not flowers)."""
    day = iso_day(day)
    landing = LandingArea(root)
    files = tuple(landing.scan_day(day))
    frames = []
    for entry in files:
        if not entry.readable:
            continue
        for chunk in iter_files([entry.path]):
            frames.append(chunk.assign(label_file=entry.path.name))
    if frames:
        raw = pd.concat(frames, ignore_index=True)
    else:
        raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in (*LABEL_COLUMNS, "label_file")})
    for column in LABEL_COLUMNS:
        if column not in raw.columns:
            raw[column] = None
    labelled, row_rejects = validate_labels(raw, scored, day)
    quarantined = [f for f in files if not f.readable]
    file_rejects = pd.DataFrame(
        {
            PRIMARY_KEY: pd.Series([None] * len(quarantined), dtype=object),
            "reason": pd.Series([f.problem for f in quarantined], dtype=object),
            "record": pd.Series(
                [json.dumps({"file": f.path.name}) for f in quarantined], dtype=object
            ),
        }
    )
    rejects = rejects_rows(pd.concat([row_rejects, file_rejects], ignore_index=True), STAGE, day)
    landing_rows = sum(f.rows or 0 for f in files if f.readable)
    return LabelledDay(day, labelled, rejects, landing_rows, files)


def simulate_labels(
    scored: pd.DataFrame,
    *,
    rows: int | None = None,
    accuracy_drop: float = 0.0,
    skip: set[int] | frozenset[int] = frozenset(),
    seed: int | None = None,
) -> pd.DataFrame:
    """Labels (``flower_id``, ``species``, ``labelled_at``) for flowers of ``scored``.

    The label is the species whose Iris distribution makes the measurements most likely (what a
    botanist would say for a typical flower); then a share ``accuracy_drop`` of the labels is
    changed to a species the model did not predict, to simulate a model that decays. Flowers in
    ``skip`` (already labelled) are left out; ``rows`` caps how many are labelled.
    """
    from iris_assets.core.landing import iris_class_statistics

    if not 0.0 <= accuracy_drop <= 1.0:
        raise ValueError(f"accuracy_drop must be between 0 and 1, got {accuracy_drop}")
    rng = np.random.default_rng(seed)
    pool = scored[~scored[PRIMARY_KEY].isin(list(skip))]
    if rows is not None:
        pool = pool.iloc[rng.permutation(len(pool))[: max(rows, 0)]]
    pool = pool.sort_values(PRIMARY_KEY).reset_index(drop=True)
    means, stds = iris_class_statistics()
    values = pool[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    z = (values[:, None, :] - means[None, :, :]) / stds[None, :, :]
    log_likelihood = -0.5 * (z**2).sum(axis=2) - np.log(stds).sum(axis=1)[None, :]
    species = log_likelihood.argmax(axis=1).astype(np.int64)
    predicted = pool["prediction"].to_numpy(dtype=np.int64)
    disagree = rng.random(len(pool)) < accuracy_drop
    shift = rng.integers(1, len(SPECIES_NAMES), size=len(pool))
    species = np.where(disagree, (predicted + shift) % len(SPECIES_NAMES), species)
    return pd.DataFrame(
        {
            PRIMARY_KEY: pool[PRIMARY_KEY].astype("int64"),
            LABEL: species,
            "labelled_at": pd.Timestamp(datetime.now(UTC)),
        }
    )


def latest_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per flower of labels-table rows: a flower labelled on several observed days
    counts with its latest day's label (and that day's measurements); in a day there is one."""
    ordered = labels.sort_values(["observed_date", PRIMARY_KEY], kind="stable")
    return ordered.drop_duplicates(PRIMARY_KEY, keep="last").reset_index(drop=True)
