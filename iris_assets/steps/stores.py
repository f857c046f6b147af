"""Picks the table store for the target: Delta files via deltalake locally."""

from __future__ import annotations

from iris_assets.core.tables import DeltaTableStore, TableStore
from iris_assets.settings import Settings


def table_store(settings: Settings) -> TableStore:
    if settings.is_databricks:
        raise NotImplementedError(
            "the Spark table store for IRIS_TARGET=databricks is not built yet; "
            "use IRIS_TARGET=local"
        )
    return DeltaTableStore(settings.warehouse)
