"""Picks the table store for the target: deltalake files locally, Spark SQL on Databricks.

Each store's engine is imported only when it is picked: a Databricks task has Spark and no
deltalake, a local step has deltalake and needs no Spark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iris_assets.settings import Settings

if TYPE_CHECKING:
    from iris_assets.core.tables import TableStore


def spark_session():
    """The session Databricks serverless provides to a task (pyspark is not a local dependency)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


def table_store(settings: Settings) -> TableStore:
    if settings.is_databricks:
        from iris_assets.core.spark_tables import SparkTableStore

        return SparkTableStore(spark_session())
    from iris_assets.core.tables import DeltaTableStore

    return DeltaTableStore(settings.warehouse)
