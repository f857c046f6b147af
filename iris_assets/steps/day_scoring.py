"""Scoring one day locally, streamed: bounded memory however many flowers landed that day.

Chunks of the landing files are validated and scored one at a time and written as one stream,
so the inference partition is replaced in a single Delta commit (a run killed halfway leaves the
old partition). Rejects are spooled to a local Parquet file and replace their slice afterwards.
Both commits carry the run's token (``new_run_id``); a run killed between them leaves a day whose
partition and rejects disagree, which the output check reports (``core.accounting``) and the
next run of the day repairs. One run scores a day at a time (``core.day_lock``), and audits and
reads back the summary the checks need (aggregates of the written tables) before it lets go.

Shared with the Spark path (``steps/spark_scoring.py``): which files are read and how many rows
they hold (``select_day_files``, counted from the files, never from the scoring), the markers
ignored by name (``LandingArea.ignored``, listed in the run's metadata), the refusal to replace a
partition when the day has no landing rows (``take_day_files``: its unreadable files are still
reported in the rejects table, and the day's existing partition is kept), the rejects rows for
files that cannot be read, the day's fingerprint in the partition commit (which the landing
sensor compares with the folder), and what the output check compares.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from iris_assets.core.accounting import (
    day_problems,
    other_runs_rejects,
    partition_tags,
    read_accounts,
)
from iris_assets.core.batch_scoring import ScoredBatch, score_stream
from iris_assets.core.day_lock import DEFAULT_WAIT_SECONDS, day_lock
from iris_assets.core.drift import in_sample, sample_fraction
from iris_assets.core.landing import LandingArea, LandingFile, iter_files
from iris_assets.core.quarantine import rejects_rows, rejects_slice
from iris_assets.core.read_ahead import read_ahead
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
    ignored: tuple[str, ...] = ()  # markers and in-flight files, "name (what it is)"
    fingerprint: str = ""  # LandingArea.fingerprint, taken before the files were read

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


def scan_day_files(settings: Settings, day: str) -> DayFiles:
    """The day's files (``LandingArea.scan_day``), its ignored markers and its fingerprint."""
    landing = LandingArea(settings.landing_dir)
    # Taken first: a file that changes while the day is read changes the folder's fingerprint
    # away from the one the commit records, so the landing sensor scores the day again.
    fingerprint = landing.fingerprint(day)
    return DayFiles(
        day,
        landing.day_dir(day),
        landing.scan_day(day),
        tuple(landing.ignored(day)),
        fingerprint,
    )


def no_landing_data(files: DayFiles) -> NoLandingData:
    found = ", ".join(f"{f.path.name} ({f.problem or 'no rows'})" for f in files.files)
    reported = (
        f" The {len(files.quarantined)} unreadable file(s) are in the rejects table."
        if files.quarantined
        else ""
    )
    ignored = f" Ignored: {', '.join(files.ignored)}." if files.ignored else ""
    return NoLandingData(
        f"no landing rows for {files.day} in {files.folder} "
        f"({'files: ' + found if found else 'no files'}): nothing was scored and the "
        f"existing partition, if any, is kept.{reported}{ignored} Run the day again once its "
        "files have arrived (landing_files_sensor does this when the folder changes)."
    )


def select_day_files(settings: Settings, day: str) -> DayFiles:
    """The day's files (``scan_day_files``); NoLandingData when they hold no rows."""
    selected = scan_day_files(settings, day)
    if selected.landing_rows == 0:
        raise no_landing_data(selected)
    return selected


def take_day_files(
    store: TableStore,
    settings: Settings,
    day: str,
    run_id: str,
    scanned: DayFiles | None = None,
) -> DayFiles:
    """``select_day_files`` for a run that holds the day's lock, so it may write (``scanned``:
    the day as ``scan_day_files`` just found it under that lock).

    A day without landing rows whose folder holds unreadable files still reports them: one
    rejects row per file, by this run, in place of the rows other runs than the partition's
    writer left for the day (so re-running it does not pile them up). The partition is not
    touched. The day then no longer adds up (its partition and its rejects are by different
    runs, its partition's rows are not in the files any more), which the output check and the
    landing sensor's audit report. Then NoLandingData, naming the files.
    """
    files = scanned if scanned is not None else scan_day_files(settings, day)
    if files.landing_rows:
        return files
    if files.quarantined:
        REJECTS_TABLE.ensure(store, settings.rejects_table)
        account = (
            read_accounts(store, settings.inference_table, settings.rejects_table, day).get(day)
            if store.exists(settings.inference_table)
            else None
        )
        writers = account.writers if account is not None else set()
        rows = pa.Table.from_pandas(
            files.rejects(run_id), schema=REJECTS_TABLE_SCHEMA, preserve_index=False
        )
        store.replace_where(
            settings.rejects_table,
            rows,
            other_runs_rejects(day, writers),
            tags=partition_tags(day, run_id),
        )
    raise no_landing_data(files)


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
    files_ignored: tuple[str, ...] = ()  # markers and in-flight files, "name (what it is)"
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


def partition_stats(
    store: TableStore, settings: Settings, day: str, *, ids_here: bool = False
) -> PartitionStats:
    """The partition as stored, aggregated by the engine. ``ids_here``: duplicate ids are
    counted by reading the partition's ids into this process and sorting them (the local path:
    a tenth of the CPU of DataFusion's ``COUNT(DISTINCT)``, 160 MB for 10 million ids), not by
    the engine (Spark: the ids stay on the executors)."""
    distinct = "" if ids_here else f"COUNT(*) - COUNT(DISTINCT {PRIMARY_KEY}) AS duplicate_ids, "
    predicate = f"observed_date = '{day}'"
    row = store.aggregate(
        settings.inference_table,
        f"COUNT(*) AS n_rows, {distinct}"
        "SUM(CASE WHEN probability < 0 OR probability > 1 THEN 1 ELSE 0 END) AS out_of_range, "
        "SUM(CASE WHEN prediction IS NULL OR species_name IS NULL OR model_version IS NULL "
        "THEN 1 ELSE 0 END) AS null_predictions",
        predicate=predicate,
    )
    if ids_here:
        ids = store.read(settings.inference_table, [PRIMARY_KEY], predicate)[PRIMARY_KEY]
        row["duplicate_ids"] = duplicate_count(ids)
    return PartitionStats(
        rows=int(row["n_rows"] or 0),
        duplicate_ids=int(row["duplicate_ids"] or 0),
        probabilities_out_of_range=int(row["out_of_range"] or 0),
        null_predictions=int(row["null_predictions"] or 0),
    )


def duplicate_count(ids: pd.Series) -> int:
    """``COUNT(*) - COUNT(DISTINCT id)``: rows minus distinct non-null ids, exact as int64."""
    values = np.sort(ids.dropna().to_numpy(dtype=np.int64), kind="stable")
    distinct = int(np.count_nonzero(values[1:] != values[:-1])) + 1 if len(values) else 0
    return len(ids) - distinct


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
        scanned = scan_day_files(settings, day)
        # A model still loading (``steps/score.py`` loads it while the files are inspected) is
        # waited for before anything is written: a model that cannot be loaded writes nothing.
        model = model.result() if isinstance(model, Future) else model
        files = take_day_files(store, settings, day, run_id, scanned)
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
                    read_ahead(iter_files(files.readable, batch_rows)),
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

            # One BLAS thread: a 250k x 4 product is too small to share, and OpenBLAS's
            # spinning threads took the cores the read-ahead and the Delta writer need
            # (10M rows: 24.9 -> 18.3 CPU s, 14.8 -> 11.8 s; bench/results/batch.md).
            with threadpool_limits(limits=1, user_api="blas"):
                version = store.replace_partition(
                    settings.inference_table,
                    scored_chunks,
                    "observed_date",
                    day,
                    tags=partition_tags(day, run_id, files.fingerprint),
                )
            failpoint("score:partition_committed")
            store.replace_where(
                settings.rejects_table,
                spool.batches,
                rejects_slice("inference", day),
                tags=partition_tags(day, run_id),
            )
        # Still under the lock: a run of the day that takes it next would otherwise replace
        # what this run audits and reads back (its problems and stats would be the other's).
        for table in (settings.inference_table, settings.rejects_table):
            store.compact_if_fragmented(table)
        # Independent queries of the stored tables (DataFusion releases the GIL): side by side
        # they took 0.8 s of a 10M-row day where one after the other took 1.5 s.
        with ThreadPoolExecutor(3, thread_name_prefix="iris-read-back") as reads:
            rejected = reads.submit(written_row_rejects, store, settings, files)
            written = reads.submit(partition_stats, store, settings, day, ids_here=True)
            problems = reads.submit(audit_day, store, settings, files, run_id)
            return ScoredDay(
                landing_rows=files.landing_rows,
                rows_scored=tally.scored,
                rows_rejected=rejected.result(),
                table_version=version,
                prediction_counts=dict(tally.predictions.most_common()),
                reject_reasons=dict(tally.reasons.most_common(10)),
                features_sample=tally.sample,
                written=written.result(),
                files_quarantined=tuple(f"{f.path.name}: {f.problem}" for f in files.quarantined),
                files_ignored=files.ignored,
                run_id=run_id,
                problems=tuple(problems.result()),
            )


def written_row_rejects(store: TableStore, settings: Settings, files: DayFiles) -> int:
    """Row rejects of the day as stored (the slice minus its one row per quarantined file)."""
    stored = store.count(settings.rejects_table, rejects_slice("inference", files.day))
    return stored - len(files.quarantined)
