"""Scoring a day with Spark on Databricks: the landing files never pass through the driver.

The day's batch files are read as text (CSV and Parquet alike, so a bad value reaches validation
as it arrived), duplicates across files are marked with a window, and each Arrow batch is
validated and scored by ``core.batch_scoring.score_batch`` inside ``mapInPandas`` with the
champion estimator shipped in the closure (a few KB). Scored rows and rejects are then written
with one statement each.

Duplicates across files are decided by the first occurrence in file order, whether or not that
occurrence is valid; within one batch, as locally, the first *valid* occurrence wins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from iris_assets.core.batch_scoring import SEEN, score_batch
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
from iris_assets.core.spark_tables import quote, spark_type, table_ref
from iris_assets.settings import Settings
from iris_assets.steps.day_scoring import DRIFT_SAMPLE_ROWS, ScoredDay, partition_stats

ORDER = "_iris_order"
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


def batch_scorer(model, *, day: str, model_name: str, model_version: str, predicted_at):
    """The function ``mapInPandas`` runs on the executors, one Arrow batch at a time."""

    def score_batches(batches):
        for raw in batches:
            batch = score_batch(
                raw,
                model,
                day=day,
                model_name=model_name,
                model_version=model_version,
                predicted_at=predicted_at,
                seen_column=SEEN,
            )
            yield combine(batch.scored, batch.rejects)

    return score_batches


def read_landing_day(spark, day_dir: Path):
    """Every batch file of one observed day, all columns as text, in file order."""
    from pyspark.sql import functions as F

    frames = []
    for suffix, reader in (
        ("*.parquet", lambda paths: spark.read.parquet(*paths)),
        ("*.csv", lambda paths: spark.read.option("header", True).csv(*paths)),
    ):
        paths = sorted(str(p) for p in day_dir.glob(suffix))
        if paths:
            frame = reader(paths)
            # _metadata.file_path, not input_file_name(): that is not available on Unity Catalog.
            file_path = F.col("_metadata.file_path").alias(ORDER)
            frames.append(
                frame.select(
                    [F.col(c).cast("string").alias(c) for c in frame.columns] + [file_path]
                )
            )
    if not frames:
        return None
    day = frames[0]
    for frame in frames[1:]:
        day = day.unionByName(frame, allowMissingColumns=True)
    return day.withColumn(
        ORDER,
        F.concat_ws("#", F.col(ORDER), F.format_string("%020d", F.monotonically_increasing_id())),
    )


def mark_seen(frame):
    """Flag rows whose flower_id already appeared earlier in the day (ids compared as numbers)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if PRIMARY_KEY not in frame.columns:
        return frame.withColumn(SEEN, F.lit(False))
    key = F.col(PRIMARY_KEY).cast("double")
    rank = F.row_number().over(Window.partitionBy(key).orderBy(ORDER))
    return frame.withColumn(SEEN, F.when(key.isNotNull(), rank > 1).otherwise(F.lit(False)))


def score_frame(spark, settings: Settings, day: str, champion: VersionInfo, model):
    """(landing rows, the scored+rejected frame) for one day; None when the day has no files."""
    landing = read_landing_day(spark, settings.landing_dir / f"observed_date={day}")
    if landing is None:
        return 0, None
    scorer = batch_scorer(
        model,
        day=day,
        model_name=settings.model_name,
        model_version=champion.version,
        predicted_at=pd.Timestamp(datetime.now(UTC)),
    )
    outcome = mark_seen(landing).drop(ORDER).mapInPandas(scorer, output_schema())
    return landing.count(), outcome


def empty_frame(spark, schema: pa.Schema):
    return spark.createDataFrame([], ", ".join(f"{quote(f.name)} {spark_type(f)}" for f in schema))


def score_day_with_spark(
    store, settings: Settings, day: str, champion: VersionInfo, model, spark: Any = None
) -> ScoredDay:
    """Score ``day`` with Spark into ``store`` (a ``SparkTableStore`` on the same session)."""
    from pyspark.sql import functions as F

    spark = spark or store.spark
    INFERENCE_TABLE.ensure(store, settings.inference_table)
    REJECTS_TABLE.ensure(store, settings.rejects_table)

    landing_rows, outcome = score_frame(spark, settings, day, champion, model)
    if outcome is None:
        scored = empty_frame(spark, INFERENCE_TABLE_SCHEMA)
        rejects = empty_frame(spark, REJECTS_TABLE_SCHEMA)
    else:
        scored = outcome.where(F.col(KIND) == "scored").select(*INFERENCE_TABLE_SCHEMA.names)
        rejects = outcome.where(F.col(KIND) == "rejected").select(
            F.lit("inference").alias("stage"),
            F.lit(day).alias("partition"),
            F.col("raw_flower_id").alias(PRIMARY_KEY),
            "reason",
            "record",
            F.current_timestamp().alias("rejected_at"),
        )
    version = store.replace_partition(settings.inference_table, scored, "observed_date", day)
    store.replace_where(settings.rejects_table, rejects, rejects_slice("inference", day))

    where = f"observed_date = '{day}'"
    sample = spark.sql(
        f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {table_ref(settings.inference_table)} "
        f"WHERE {where} LIMIT {DRIFT_SAMPLE_ROWS}"
    ).toPandas()
    written = partition_stats(store, settings, day)
    return ScoredDay(
        landing_rows=landing_rows,
        rows_scored=written.rows,
        rows_rejected=store.count(settings.rejects_table, rejects_slice("inference", day)),
        table_version=version,
        prediction_counts=store.group_counts(settings.inference_table, "species_name", where),
        reject_reasons=store.group_counts(
            settings.rejects_table, "reason", rejects_slice("inference", day), limit=10
        ),
        features_sample=sample,
        written=written,
    )
