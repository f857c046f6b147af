"""Scoring a day with Spark on Databricks: the landing rows are never collected to the driver.

The driver only inspects the day's files (``select_day_files`` reads each through once, in
bounded memory, to count its rows and quarantine a bad file whole); the rows are scored on the
executors.

One behaviour with the local path (``steps/day_scoring.py``), shared by construction:

- the same files: ``select_day_files`` lists the day folder (read, or quarantined with a reason)
  and counts its rows from the files; a day without rows fails before anything is written;
- the same rows: each file is read on its own, its columns carried as Spark's text with their
  types beside (``spark_landing.FileLayout``), and on the executors each file's rows are
  turned back into the frame the local reader gives (names, order, Arrow types), so validation
  and the rejects record (``core.reject_record``) see equal frames on both engines;
- the same duplicate policy, the first *valid* occurrence of an id wins: a first pass validates
  every row (``core.validation``, ids parsed exactly as int64), a window over the valid rows
  marks later occurrences as seen, and the second pass (``core.batch_scoring.score_batch`` in
  ``mapInPandas``) rejects those as duplicates;
- the same drift sample: ``core.drift.in_sample`` on the ids, with the fraction from the count;
- the same two commits tagged with the run's token, under the same day lock, with the same
  failpoint between them and the same accounting read back (``core.accounting``).

CSV files are read as RFC 4180 (``multiLine``, ``""`` escapes), as pandas and the ``csv`` module
that counted them read them, so a quoted field spanning lines is one row on both engines.

Each file is read on its own and tagged with its place in the day's order, so nothing depends on
a file-name function (the older one is not available on Unity Catalog / serverless) or on
parsing a path URI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from iris_assets.core.accounting import partition_tags
from iris_assets.core.batch_scoring import SEEN, score_batch
from iris_assets.core.day_lock import DEFAULT_WAIT_SECONDS, day_lock
from iris_assets.core.drift import in_sample, sample_fraction
from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.registry import VersionInfo
from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    INFERENCE_TABLE,
    INFERENCE_TABLE_SCHEMA,
    PRIMARY_KEY,
    REJECTS_TABLE,
    REJECTS_TABLE_SCHEMA,
)
from iris_assets.core.spark_tables import quote, spark_type
from iris_assets.core.validation import validate_measurements
from iris_assets.settings import Settings
from iris_assets.steps.day_scoring import (
    DayFiles,
    ScoredDay,
    audit_day,
    new_run_id,
    partition_stats,
    take_day_files,
    written_row_rejects,
)
from iris_assets.steps.failpoints import failpoint
from iris_assets.steps.spark_landing import FILE, FileLayout, file_frames, read_file

LINE = "_iris_line"
VALID_ID = "_iris_valid_id"
KIND = "_iris_kind"
REJECT_FIELDS = ("raw_flower_id", "reason", "record")


def output_schema() -> str:
    """Spark DDL of what each scored batch yields: inference columns, reject columns, a kind."""
    columns = [f"{quote(f.name)} {spark_type(f)}" for f in INFERENCE_TABLE_SCHEMA]
    columns += [f"{quote(name)} STRING" for name in REJECT_FIELDS]
    columns.append(f"{quote(KIND)} STRING")
    return ", ".join(columns)


def combine(scored: pd.DataFrame, rejects: pd.DataFrame) -> pd.DataFrame:
    """One frame of both outcomes, so a single ``mapInPandas`` pass yields everything."""
    scored = scored.assign(**{name: None for name in REJECT_FIELDS}, **{KIND: "scored"})
    rejected = pd.DataFrame(
        {
            **{name: None for name in INFERENCE_TABLE_SCHEMA.names},
            "raw_flower_id": rejects[PRIMARY_KEY].astype("object"),
            "reason": rejects["reason"],
            "record": rejects["record"],
            KIND: "rejected",
        },
        index=rejects.index,
    )
    columns = [*INFERENCE_TABLE_SCHEMA.names, *REJECT_FIELDS, KIND]
    both = pd.concat([scored[columns], rejected[columns]], ignore_index=True)
    # pandas 3 keeps text in Arrow-backed columns, which pyspark's batch writer cannot take.
    text = [c for c in both.columns if pd.api.types.is_string_dtype(both[c].dtype)]
    return both.astype({c: object for c in text})


def valid_ids(day: str, layouts: tuple[FileLayout, ...]):
    """First pass: each row's exact id when the row is valid (duplicates aside), else null."""

    def mark(batches):
        for raw in batches:
            ids = pd.Series(pd.NA, index=raw.index, dtype="Int64")
            for where, rows in file_frames(raw, layouts):
                rows = rows.assign(_iris_row=where)
                checked = validate_measurements(
                    rows,
                    passthrough=["_iris_row"],
                    observed_on=day,
                    check_duplicates=False,
                    describe=_unspelled,
                )
                ids.iloc[checked.valid["_iris_row"].to_numpy()] = checked.valid[PRIMARY_KEY]
            yield raw.assign(**{VALID_ID: ids})

    return mark


def _unspelled(rows: pd.DataFrame):
    """The first pass only needs which rows are valid: rejects are spelled in the second."""
    return [None] * len(rows), [""] * len(rows)


def batch_scorer(
    model,
    *,
    day: str,
    model_name: str,
    model_version: str,
    predicted_at,
    run_id=None,
    layouts: tuple[FileLayout, ...] = (),
):
    """Second pass, on the executors, one Arrow batch at a time: validate and score each
    file's rows as the local path does (``spark_landing.FileLayout.frame``)."""

    def score_batches(batches):
        for raw in batches:
            seen = raw[SEEN].to_numpy(dtype=bool)
            for where, rows in file_frames(raw, layouts):
                batch = score_batch(
                    rows,
                    model,
                    day=day,
                    model_name=model_name,
                    model_version=model_version,
                    predicted_at=predicted_at,
                    seen=seen[where],
                    run_id=run_id,
                )
                yield combine(batch.scored, batch.rejects)

    return score_batches


SESSION_TIME_ZONE = "spark.sql.session.timeZone"


@contextmanager
def utc_session(spark) -> Iterator[None]:
    """The session's time zone is UTC inside (and restored after).

    Spark renders a timestamp as text, and parses text without an offset, in the session time
    zone; the landing rows are read as text, so outside UTC every ``observed_at`` would move.
    Serverless allows setting this one (``spark.sql.session.timeZone``).
    """
    # The conf is spelled out at each call so the serverless rules test can see which one it is.
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        yield
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)


def read_landing_files(spark, files: DayFiles):
    """(The readable files of the day, all columns as text, each row tagged with file and line;
    each file's ``FileLayout``).

    Timestamps become UTC text whatever the session's time zone (``utc_session`` while the
    plan is analysed; ``score_day_with_spark`` also runs under it, for lazy Spark Connect).
    """
    with utc_session(spark):
        return _read_landing_files(spark, files)


def _read_landing_files(spark, files: DayFiles):
    from pyspark.sql import functions as F

    formats = {str(f.path): f.format for f in files.files if f.readable}
    # One read per file: a multi-file CSV read applies the first file's header to every file,
    # and the file's place in the day's order is then a literal, never parsed from a path URI.
    read = [
        read_file(spark, path, formats[str(path)], position)
        for position, path in enumerate(files.readable)
    ]
    day = read[0][0]
    for frame, _ in read[1:]:
        day = day.unionByName(frame, allowMissingColumns=True)
    layouts = tuple(layout for _, layout in read)
    return day.withColumn(LINE, F.monotonically_increasing_id()), layouts


def mark_seen(frame, day: str, layouts: tuple[FileLayout, ...]):
    """Flag valid rows whose id had a valid occurrence earlier in the day (exact int64 ids)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    schema = StructType([*frame.schema.fields, StructField(VALID_ID, LongType(), True)])
    checked = frame.mapInPandas(valid_ids(day, layouts), schema)
    rank = F.row_number().over(Window.partitionBy(VALID_ID).orderBy(FILE, LINE))
    return checked.withColumn(
        SEEN, F.when(F.col(VALID_ID).isNotNull(), rank > 1).otherwise(F.lit(False))
    )


def day_outcome(
    spark,
    settings: Settings,
    files: DayFiles,
    champion: VersionInfo,
    model,
    at,
    run_id: str | None = None,
):
    """The scored + rejected rows of the day as one Spark frame (column ``KIND``)."""
    landing, layouts = read_landing_files(spark, files)
    scorer = batch_scorer(
        model,
        day=files.day,
        model_name=settings.model_name,
        model_version=champion.version,
        predicted_at=at,
        run_id=run_id,
        layouts=layouts,
    )
    return mark_seen(landing, files.day, layouts).mapInPandas(scorer, output_schema())


def split_outcome(spark, outcome, files: DayFiles, run_id: str | None = None):
    """(inference rows, rejects rows incl. one per quarantined file) as Spark frames."""
    from pyspark.sql import functions as F

    scored = outcome.where(F.col(KIND) == "scored").select(*INFERENCE_TABLE_SCHEMA.names)
    rejects = outcome.where(F.col(KIND) == "rejected").select(
        F.lit("inference").alias("stage"),
        F.lit(files.day).alias("partition"),
        F.col("raw_flower_id").alias(PRIMARY_KEY),
        "reason",
        "record",
        F.current_timestamp().alias("rejected_at"),
        F.lit(run_id).cast("string").alias("run_id"),
    )
    if files.quarantined:
        bad = files.rejects(run_id).astype({"stage": object, "partition": object})
        rejects = rejects.unionByName(spark.createDataFrame(bad, schema=ddl(REJECTS_TABLE_SCHEMA)))
    return scored, rejects


def drift_sample(scored, fraction: float) -> pd.DataFrame:
    """The scored rows ``core.drift.in_sample`` keeps, collected (about 100,000 at most)."""
    columns = [PRIMARY_KEY, *FEATURE_COLUMNS]
    schema = ", ".join(f"{quote(c)} {'BIGINT' if c == PRIMARY_KEY else 'DOUBLE'}" for c in columns)

    def keep(batches):
        for batch in batches:
            yield batch[in_sample(batch[PRIMARY_KEY].to_numpy(dtype=np.int64), fraction)]

    rows = scored.select(*columns).mapInPandas(keep, schema).toPandas()
    rows = rows.sort_values(PRIMARY_KEY)
    return rows[list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)


def stage_name(table: str, run_id: str) -> str:
    """The run's stage of its day's outcome, next to ``table`` (``catalog.schema._iris_stage_...``).
    Per run, so two runs never share one; a run killed mid-way leaves its stage behind."""
    catalog_schema, _, name = table.rpartition(".")
    token = re.sub(r"[^0-9a-z]+", "_", run_id.lower()).strip("_")
    return f"{catalog_schema}._iris_stage_{name}_{token}"


def ddl(schema: pa.Schema) -> str:
    return ", ".join(f"{quote(f.name)} {spark_type(f)}" for f in schema)


def score_day_with_spark(
    store,
    settings: Settings,
    day: str,
    champion: VersionInfo,
    model,
    spark: Any = None,
    run_id: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> ScoredDay:
    """Score ``day`` with Spark into ``store`` (a ``SparkTableStore`` on the same session)."""
    spark = spark or store.spark
    run_id = run_id or new_run_id()
    with utc_session(spark), day_lock(settings.env_home, day, wait_seconds):
        files = take_day_files(store, settings, day, run_id)
        INFERENCE_TABLE.ensure(store, settings.inference_table)
        REJECTS_TABLE.ensure(store, settings.rejects_table)

        at = pd.Timestamp(datetime.now(UTC))
        outcome = day_outcome(spark, settings, files, champion, model, at, run_id)
        # Evaluated once, into a stage both commits read: each commit is its own Spark action,
        # and a lazy outcome would read and score the files again for the second (a file
        # rewritten in between would leave a flower in both tables, another in neither).
        with store.staged(outcome, stage_name(settings.inference_table, run_id)) as evaluated:
            scored, rejects = split_outcome(spark, evaluated, files, run_id)
            version = store.replace_partition(
                settings.inference_table,
                scored,
                "observed_date",
                day,
                partition_tags(day, run_id, files.fingerprint),
            )
            failpoint("score:partition_committed")
            store.replace_where(settings.rejects_table, rejects, rejects_slice("inference", day))

        # Still under the lock: the next run of the day must not replace what this run reads.
        where = f"observed_date = '{day}'"
        written_rows = spark.table(settings.inference_table).where(where)
        written = partition_stats(store, settings, day)
        return ScoredDay(
            landing_rows=files.landing_rows,
            rows_scored=written.rows,
            rows_rejected=written_row_rejects(store, settings, files),
            table_version=version,
            prediction_counts=store.group_counts(settings.inference_table, "species_name", where),
            reject_reasons=store.group_counts(
                settings.rejects_table, "reason", rejects_slice("inference", day), limit=10
            ),
            features_sample=drift_sample(written_rows, sample_fraction(files.landing_rows)),
            written=written,
            files_quarantined=tuple(f"{f.path.name}: {f.problem}" for f in files.quarantined),
            files_ignored=files.ignored,
            run_id=run_id,
            problems=tuple(audit_day(store, settings, files, run_id)),
        )
