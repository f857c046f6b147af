"""Picks the table store for the target: deltalake files locally, Spark SQL on Databricks."""

from __future__ import annotations

from iris_assets.core.tables import DeltaTableStore, TableStore
from iris_assets.settings import Settings


def spark_session():
    """The session Databricks serverless provides to a task (pyspark is not a local dependency)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


def table_store(settings: Settings) -> TableStore:
    if settings.is_databricks:
        from iris_assets.core.spark_tables import SparkTableStore

        return SparkTableStore(spark_session())
    return DeltaTableStore(settings.warehouse)
