"""Scoring one day locally, streamed: bounded memory however many flowers landed that day.

Chunks of the landing files are validated and scored one at a time and written as one stream,
so the inference partition is replaced in a single Delta commit (a run killed halfway leaves the
old partition). Rejects are spooled to a local Parquet file and replace their slice afterwards.
Both commits carry the run's token (``new_run_id``); a run killed between them leaves a day whose
partition and rejects disagree, which the output check reports (``core.accounting``) and the
next run of the day repairs. One run scores a day at a time (``core.day_lock``).
The summary the checks need is read back from the written table with aggregates.

Shared with the Spark path (``steps/spark_scoring.py``): which files are read and how many rows
they hold (``select_day_files``, counted from the files, never from the scoring), the refusal
to replace a partition when the day has no landing rows, the rejects rows for files that cannot
be read, and what the output check compares.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from iris_assets.core.accounting import day_problems, partition_tags, read_accounts
from iris_assets.core.batch_scoring import ScoredBatch, score_stream
from iris_assets.core.day_lock import DEFAULT_WAIT_SECONDS, day_lock
from iris_assets.core.drift import in_sample, sample_fraction
from iris_assets.core.landing import LandingArea, LandingFile, iter_files
from iris_assets.core.quarantine import rejects_rows, rejects_slice
from iris_assets.core.registry import VersionInfo
from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    INFERENCE_TABLE,
    PRIMARY_KEY,
    REJECTS_TABLE,
    REJECTS_TABLE_SCHEMA,
)
from iris_assets.core.tables import TableStore
from iris_assets.settings import Settings
from iris_assets.steps.failpoints import failpoint


@dataclass(frozen=True)
class PartitionStats:
    """What the written partition holds, as the output check sees it."""

    rows: int
    duplicate_ids: int
    probabilities_out_of_range: int
    null_predictions: int


class NoLandingData(RuntimeError):
    """The day has no landing rows: scoring it would replace its partition with nothing."""


@dataclass(frozen=True)
class DayFiles:
    """The day folder as both engines read it: the readable files and the quarantined ones."""

    day: str
    folder: Path
    files: list[LandingFile]

    @property
    def readable(self) -> list[Path]:
        return [f.path for f in self.files if f.readable]

    @property
    def quarantined(self) -> list[LandingFile]:
        return [f for f in self.files if not f.readable]

    @property
    def landing_rows(self) -> int:
        """Rows of the readable files, from their footers and CSV records."""
        return sum(f.rows or 0 for f in self.files if f.readable)

    def rejects(self, run_id: str | None = None) -> pd.DataFrame:
        """One rejects row per quarantined file: the file and why it was not read."""
        bad = self.quarantined
        return pd.DataFrame(
            {
                "stage": "inference",
                "partition": self.day,
                PRIMARY_KEY: pd.Series([None] * len(bad), dtype=object),
                "reason": [f.problem for f in bad],
                "record": [json.dumps({"file": f.path.name}) for f in bad],
                "rejected_at": pd.Timestamp(datetime.now(UTC)),
                "run_id": pd.Series([run_id] * len(bad), dtype=object),
            }
        )[REJECTS_TABLE_SCHEMA.names]


def select_day_files(settings: Settings, day: str) -> DayFiles:
    """The day's files (``LandingArea.scan_day``); NoLandingData when they hold no rows."""
    landing = LandingArea(settings.landing_dir)
    selected = DayFiles(day, landing.day_dir(day), landing.scan_day(day))
    if selected.landing_rows == 0:
        found = ", ".join(f"{f.path.name} ({f.problem or 'no rows'})" for f in selected.files)
        raise NoLandingData(
            f"no landing rows for {day} in {selected.folder} "
            f"({'files: ' + found if found else 'no files'}): nothing was scored and the "
            "existing partition, if any, is kept. Run the day again once its files have "
            "arrived (landing_files_sensor does this when the folder changes)."
        )
    return selected


@dataclass(frozen=True)
class ScoredDay:
    landing_rows: int  # counted from the files, independently of the scoring
    rows_scored: int
    rows_rejected: int  # row rejects in the rejects table, read back after the write
    table_version: int
    prediction_counts: dict[str, int]
    reject_reasons: dict[str, int]
    features_sample: pd.DataFrame  # scored measurements (a uniform sample when large), for drift
    written: PartitionStats
    files_quarantined: tuple[str, ...] = ()  # "name: reason" of each file that was not read
    run_id: str = ""  # the token both commits carry
    problems: tuple[str, ...] = ()  # how the stored day fails to add up (core.accounting)


def new_run_id(dagster_run_id: str | None = None) -> str:
    """The token of one scoring attempt: the Dagster run id (when there is one) and a nonce."""
    nonce = secrets.token_hex(4)
    return f"{dagster_run_id}.{nonce}" if dagster_run_id else f"local.{nonce}"


def audit_day(
    store: TableStore, settings: Settings, files: DayFiles, run_id: str | None = None
) -> list[str]:
    """What the output check fails on for the day as stored (after ``run_id``'s commits)."""
    accounts = read_accounts(store, settings.inference_table, settings.rejects_table, files.day)
    account = accounts.get(files.day)
    if account is None:
        return [f"nothing is stored for {files.day}"]
    return day_problems(account, files.landing_rows, len(files.quarantined), run_id)


def partition_stats(store: TableStore, settings: Settings, day: str) -> PartitionStats:
    row = store.aggregate(
        settings.inference_table,
        f"COUNT(*) AS n_rows, COUNT(*) - COUNT(DISTINCT {PRIMARY_KEY}) AS duplicate_ids, "
        "SUM(CASE WHEN probability < 0 OR probability > 1 THEN 1 ELSE 0 END) AS out_of_range, "
        "SUM(CASE WHEN prediction IS NULL OR species_name IS NULL OR model_version IS NULL "
        "THEN 1 ELSE 0 END) AS null_predictions",
        predicate=f"observed_date = '{day}'",
    )
    return PartitionStats(
        rows=int(row["n_rows"] or 0),
        duplicate_ids=int(row["duplicate_ids"] or 0),
        probabilities_out_of_range=int(row["out_of_range"] or 0),
        null_predictions=int(row["null_predictions"] or 0),
    )


class Tally:
    """Running counts over the chunks, and the drift sample (``core.drift.in_sample``)."""

    def __init__(self, sample_fraction: float = 1.0):
        self.scored = self.rejected = 0
        self.predictions: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self._fraction = sample_fraction
        self._samples: list[pd.DataFrame] = []

    def add(self, batch: ScoredBatch) -> None:
        self.scored += len(batch.scored)
        self.rejected += len(batch.rejects)
        self.predictions.update(batch.scored["species_name"].value_counts().to_dict())
        self.reasons.update(batch.rejects["reason"].value_counts().to_dict())
        keep = in_sample(batch.scored[PRIMARY_KEY].to_numpy(), self._fraction)
        if keep.any():
            self._samples.append(batch.scored.loc[keep, [PRIMARY_KEY, *FEATURE_COLUMNS]])

    @property
    def sample(self) -> pd.DataFrame:
        """The sampled scored rows (flower_id and measurements), in id order."""
        if not self._samples:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in FEATURE_COLUMNS})
        rows = pd.concat(self._samples, ignore_index=True).sort_values(PRIMARY_KEY)
        return rows[list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)


class RejectSpool:
    """Rejects of a run, written to a local Parquet file as they come, then streamed back
    (as often as a conflicted commit needs them: ``batches``)."""

    def __init__(self, path: Path):
        self.path = path
        self._writer: pq.ParquetWriter | None = None

    def restart(self) -> None:
        """Forget what was written (the partition's stream is produced again after a conflict)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.path.unlink(missing_ok=True)

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, REJECTS_TABLE_SCHEMA)
        table = pa.Table.from_pandas(frame, schema=REJECTS_TABLE_SCHEMA, preserve_index=False)
        self._writer.write_table(table)

    def batches(self):
        if self._writer is None:
            return
        self._writer.close()
        yield from pq.ParquetFile(self.path).iter_batches(use_threads=False)


def score_day_locally(
    store: TableStore,
    settings: Settings,
    day: str,
    champion: VersionInfo,
    model,
    batch_rows: int = 250_000,
    run_id: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> ScoredDay:
    run_id = run_id or new_run_id()
    with day_lock(settings.env_home, day, wait_seconds):
        files = select_day_files(settings, day)
        INFERENCE_TABLE.ensure(store, settings.inference_table)
        REJECTS_TABLE.ensure(store, settings.rejects_table)
        tally = Tally(sample_fraction(files.landing_rows))
        with tempfile.TemporaryDirectory(dir=settings.env_home, prefix=".spool-") as folder:
            spool = RejectSpool(Path(folder) / "rejects.parquet")

            def scored_chunks():
                # Called once per commit attempt (``replace_where`` retries a conflicted one):
                # each attempt scores the day from the start, counting afresh.
                nonlocal tally
                tally = Tally(sample_fraction(files.landing_rows))
                spool.restart()
                spool.write(files.rejects(run_id))
                for batch in score_stream(
                    iter_files(files.readable, batch_rows),
                    model,
                    day=day,
                    model_name=settings.model_name,
                    model_version=champion.version,
                    predicted_at=pd.Timestamp(datetime.now(UTC)),
                    run_id=run_id,
                ):
                    tally.add(batch)
                    spool.write(rejects_rows(batch.rejects, "inference", day, run_id))
                    yield batch.scored

            version = store.replace_partition(
                settings.inference_table,
                scored_chunks,
                "observed_date",
                day,
                tags=partition_tags(day, run_id),
            )
            failpoint("score:partition_committed")
            store.replace_where(
                settings.rejects_table,
                spool.batches,
                rejects_slice("inference", day),
                tags=partition_tags(day, run_id),
            )
    for table in (settings.inference_table, settings.rejects_table):
        store.compact_if_fragmented(table)
    return ScoredDay(
        landing_rows=files.landing_rows,
        rows_scored=tally.scored,
        rows_rejected=written_row_rejects(store, settings, files),
        table_version=version,
        prediction_counts=dict(tally.predictions.most_common()),
        reject_reasons=dict(tally.reasons.most_common(10)),
        features_sample=tally.sample,
        written=partition_stats(store, settings, day),
        files_quarantined=tuple(f"{f.path.name}: {f.problem}" for f in files.quarantined),
        run_id=run_id,
        problems=tuple(audit_day(store, settings, files, run_id)),
    )


def written_row_rejects(store: TableStore, settings: Settings, files: DayFiles) -> int:
    """Row rejects of the day as stored (the slice minus its one row per quarantined file)."""
    stored = store.count(settings.rejects_table, rejects_slice("inference", files.day))
    return stored - len(files.quarantined)
