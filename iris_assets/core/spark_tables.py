"""The table store on Databricks: Unity Catalog Delta tables written with Spark SQL.

Same contract as ``DeltaTableStore`` (``core.tables.TableStore``), so steps never know which one
they got. Every write is one SQL statement over a temporary view of the data (MERGE, INSERT ...
REPLACE WHERE, INSERT), which keeps each write a single atomic Delta commit and lets data stay a
distributed Spark DataFrame: nothing is collected to the driver except ``read``.
Unity Catalog has what deltalake lacks: a real (informational) PRIMARY KEY constraint and
Change Data Feed on the inference table.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pyarrow as pa

from iris_assets.core.tables import COMMIT_RETRIES, TableError, sql_string

_VIEW_IDS = itertools.count(1)
# The Delta writer option whose text DESCRIBE HISTORY shows as the commit's userMetadata. A
# writer option, not the session conf spark.databricks.delta.commitInfo.userMetadata: serverless
# lets a session set only a few confs (the Spark rules test holds that).
USER_METADATA = "userMetadata"
# How Delta on Spark names a commit that lost to a concurrent one (the exception's class, or the
# error class Spark Connect reports): nothing of it was committed, so it may be written again.
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)


def is_commit_conflict(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}"
    return any(name in text for name in _CONFLICTS)


_SPARK_TYPES = {
    pa.int64(): "BIGINT",
    pa.int32(): "INT",
    pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT",
    pa.string(): "STRING",
    pa.large_string(): "STRING",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
}


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def table_ref(name: str) -> str:
    """``catalog.schema.table`` with each part quoted."""
    parts = name.split(".")
    if len(parts) != 3 or not all(parts):
        raise TableError(f"{name!r} is not a three-level name catalog.schema.table")
    return ".".join(quote(p) for p in parts)


def spark_type(field: pa.Field) -> str:
    if pa.types.is_timestamp(field.type):
        return "TIMESTAMP"
    try:
        return _SPARK_TYPES[field.type]
    except KeyError:
        raise TableError(f"column {field.name}: no Spark type for {field.type}") from None


def create_table_sql(
    name: str,
    schema: pa.Schema,
    *,
    partition_by: list[str] | None = None,
    primary_key: str | None = None,
    properties: dict[str, str] | None = None,
) -> str:
    columns = [
        f"  {quote(f.name)} {spark_type(f)}{'' if f.nullable else ' NOT NULL'}" for f in schema
    ]
    if primary_key:
        if schema.field(primary_key).nullable:
            raise TableError(f"{name}: primary key {primary_key} must be NOT NULL in the schema")
        pk_name = quote(name.split(".")[-1] + "_pk")
        columns.append(f"  CONSTRAINT {pk_name} PRIMARY KEY ({quote(primary_key)})")
    sql = (
        f"CREATE TABLE IF NOT EXISTS {table_ref(name)} (\n"
        + ",\n".join(columns)
        + "\n) USING DELTA"
    )
    if partition_by:
        sql += " PARTITIONED BY (" + ", ".join(quote(c) for c in partition_by) + ")"
    if properties:
        pairs = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in properties.items())
        sql += f" TBLPROPERTIES ({pairs})"
    return sql


def changed_sql(compare: list[str]) -> str:
    """True when any ``compare`` column of target and source differs (null-safe)."""
    return " OR ".join(f"NOT (target.{quote(c)} <=> source.{quote(c)})" for c in compare)


def spark_string(value: str) -> str:
    """``value`` as a Spark SQL string literal, exact for any text (Spark reads backslash escapes:
    a Windows-style path or a ``\\n`` in a file name would otherwise change)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def whole_sql(alias: str, whole: tuple[str, str]) -> str:
    """``alias``'s rows of the (column, value) a whole-source MERGE speaks for."""
    column, value = whole
    return f"{alias}.{quote(column)} = {spark_string(value)}"


def merge_sql(
    name: str, view: str, key: str, compare: list[str], whole: tuple[str, str] | None = None
) -> str:
    """MERGE that updates a matched row only when one of its ``compare`` columns changed.

    With ``whole=(column, value)`` the view is everything that value offers: target rows of it
    the view lacks are deleted in the same commit (Delta's ``WHEN NOT MATCHED BY SOURCE``,
    Databricks Runtime 12.2 and later, so every serverless environment).
    """
    matched = f"WHEN MATCHED AND ({changed_sql(compare)}) THEN UPDATE SET * " if compare else ""
    retract = (
        f" WHEN NOT MATCHED BY SOURCE AND {whole_sql('target', whole)} THEN DELETE" if whole else ""
    )
    return (
        f"MERGE INTO {table_ref(name)} AS target USING {quote(view)} AS source "
        f"ON target.{quote(key)} = source.{quote(key)} "
        f"{matched}WHEN NOT MATCHED THEN INSERT *{retract}"
    )


def pending_sql(name: str, view: str, key: str, compare: list[str]) -> str:
    """How many source rows the MERGE would insert or update."""
    changed = f" OR {changed_sql(compare)}" if compare else ""
    return (
        f"SELECT COUNT(*) AS n FROM {quote(view)} AS source LEFT JOIN {table_ref(name)} AS target "
        f"ON target.{quote(key)} = source.{quote(key)} "
        f"WHERE target.{quote(key)} IS NULL{changed}"
    )


def missing_sql(name: str, view: str, key: str, whole: tuple[str, str]) -> str:
    """How many target rows of ``whole`` the view no longer offers (the MERGE deletes them)."""
    return (
        f"SELECT COUNT(*) AS n FROM {table_ref(name)} AS target LEFT ANTI JOIN {quote(view)} "
        f"AS source ON target.{quote(key)} = source.{quote(key)} "
        f"WHERE {whole_sql('target', whole)}"
    )


def replace_where_sql(name: str, view: str, predicate: str) -> str:
    return f"INSERT INTO {table_ref(name)} REPLACE WHERE {predicate} SELECT * FROM {quote(view)}"


def append_sql(name: str, view: str) -> str:
    return f"INSERT INTO {table_ref(name)} SELECT * FROM {quote(view)}"


def select_sql(
    name: str,
    columns: list[str] | None = None,
    predicate: str | None = None,
    order_by: str | list[str] | None = None,
    version: int | None = None,
) -> str:
    selected = ", ".join(quote(c) for c in columns) if columns else "*"
    sql = f"SELECT {selected} FROM {table_ref(name)}"
    if version is not None:
        sql += f" VERSION AS OF {int(version)}"
    if predicate:
        sql += f" WHERE {predicate}"
    if order_by:
        keys = [order_by] if isinstance(order_by, str) else order_by
        sql += " ORDER BY " + ", ".join(quote(k) for k in keys)
    return sql


class SparkTableStore:
    """Unity Catalog tables through a SparkSession (``spark`` on Databricks serverless)."""

    def __init__(self, spark: Any):
        self.spark = spark

    def _frame(
        self,
        data: Any,
        schema_names: list[str] | None = None,
        key: str | None = None,
        table: str | None = None,
    ):
        """``data`` (pandas, Arrow or Spark) as a Spark DataFrame of the table's columns."""
        if isinstance(data, pa.Table):
            data = data.to_pandas()
        if isinstance(data, pd.DataFrame):
            if key:  # Delta has no primary key: the last occurrence of a key wins
                data = data.drop_duplicates(key, keep="last")
            if table and (data.empty or data.isna().all().any()):
                # Spark infers a column's type from its values: an empty frame (a day without
                # rejects) or an all-null column (a file quarantined whole has no flower_id)
                # has none to infer from, so it gets the table's own types.
                schema = self.spark.table(table).schema
                data = data.reindex(columns=schema.fieldNames()).astype(object)
                frame = self.spark.createDataFrame(data.where(data.notna(), None), schema)
            else:
                frame = self.spark.createDataFrame(data)
        else:
            frame = data.dropDuplicates([key]) if key else data
        if schema_names:
            frame = frame.select(*schema_names)
        return frame

    def _view(
        self,
        data: Any,
        schema_names: list[str] | None = None,
        key: str | None = None,
        table: str | None = None,
    ):
        """Register ``data`` (pandas, Arrow or a Spark DataFrame) as a temporary view."""
        frame = self._frame(data, schema_names, key, table)
        view = f"iris_source_{next(_VIEW_IDS)}"
        frame.createOrReplaceTempView(view)
        return view

    def _columns(self, name: str) -> list[str]:
        return list(self.spark.table(name).columns)

    def _last_commit(self, name: str) -> dict[str, Any]:
        [row] = self.spark.sql(f"DESCRIBE HISTORY {table_ref(name)} LIMIT 1").collect()
        return row.asDict()

    def exists(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    def ensure_table(
        self,
        name: str,
        schema: pa.Schema,
        *,
        partition_by: list[str] | None = None,
        constraints: dict[str, str] | None = None,
        primary_key: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        existed = self.exists(name)
        self.spark.sql(
            create_table_sql(
                name,
                schema,
                partition_by=partition_by,
                primary_key=primary_key,
                properties=properties,
            )
        )
        have = set(self._columns(name)) if existed else set(schema.names)
        new = [f for f in schema if f.name not in have and f.nullable]
        if new:  # a table made by an older release: gain the nullable columns added since
            added = ", ".join(f"{quote(f.name)} {spark_type(f)}" for f in new)
            self.spark.sql(f"ALTER TABLE {table_ref(name)} ADD COLUMNS ({added})")
        existing = {
            row.asDict()["key"].removeprefix("delta.constraints.").lower()
            for row in self.spark.sql(f"SHOW TBLPROPERTIES {table_ref(name)}").collect()
            if row.asDict()["key"].startswith("delta.constraints.")
        }
        for constraint, expression in (constraints or {}).items():
            if constraint.lower() not in existing:
                self.spark.sql(
                    f"ALTER TABLE {table_ref(name)} ADD CONSTRAINT {quote(constraint)} "
                    f"CHECK ({expression})"
                )

    def merge_upsert(
        self,
        name: str,
        data: Any,
        key: str,
        *,
        compare: list[str] | None = None,
        whole: tuple[str, str] | None = None,
    ) -> dict[str, int]:
        """MERGE on ``key``; nothing is committed when no source row is new or changed.

        ``whole=(column, value)``: rows of that value the data lacks are deleted in the same
        MERGE (see ``merge_sql``), and a MERGE with only such rows to delete is committed too.
        """
        columns = self._columns(name)
        compare = [c for c in columns if c != key] if compare is None else list(compare)
        view = self._view(data, columns, key=key, table=name)
        [pending] = self.spark.sql(pending_sql(name, view, key, compare)).collect()
        waiting = int(pending.asDict()["n"])
        if whole:
            [missing] = self.spark.sql(missing_sql(name, view, key, whole)).collect()
            waiting += int(missing.asDict()["n"])
        if waiting == 0:
            return {"inserted": 0, "updated": 0, "deleted": 0, "version": self.version(name)}
        self.spark.sql(merge_sql(name, view, key, compare, whole))
        commit = self._last_commit(name)
        metrics = commit.get("operationMetrics") or {}
        return {
            "inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "updated": int(metrics.get("numTargetRowsUpdated", 0)),
            "deleted": int(metrics.get("numTargetRowsDeleted", 0)),
            "version": int(commit["version"]),
        }

    def replace_where(
        self,
        name: str,
        data: Any,
        predicate: str,
        tags: dict[str, str] | None = None,
        *,
        retries: int = COMMIT_RETRIES,
    ) -> int:
        """Replace the rows matching ``predicate`` with ``data`` in one commit.

        Untagged, it is ``INSERT ... REPLACE WHERE``; with ``tags`` it is the Delta writer's
        ``replaceWhere`` overwrite, whose ``userMetadata`` option carries the tags (JSON).
        A commit that conflicts with a concurrent one is written again, up to ``retries`` times
        after a short random back-off, as ``DeltaTableStore.replace_where`` does; a tagged write
        whose tags a recent commit already carries is not written twice. A Spark frame is
        evaluated again for each attempt, so it must give the same rows each time (scoring
        passes frames over its stage, ``staged``, never over the landing files).
        """
        for attempt in range(retries + 1):
            try:
                return self._replace_where_once(name, data, predicate, tags)
            except Exception as exc:
                if not is_commit_conflict(exc):
                    raise
                if tags and any(
                    all(str(found.get(k)) == v for k, v in tags.items())
                    for found in self.commit_tags(name, limit=attempt + 8)
                ):
                    return int(self._last_commit(name)["version"])
                if attempt == retries:
                    raise TableError(
                        f"replace where {predicate} into {name} conflicted with a concurrent "
                        f"write and was not committed (tried {attempt + 1} times; the table is "
                        "unchanged): run it again"
                    ) from exc
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
        raise AssertionError("unreachable")

    def _replace_where_once(
        self, name: str, data: Any, predicate: str, tags: dict[str, str] | None
    ) -> int:
        if not tags:
            view = self._view(data, self._columns(name), table=name)
            self.spark.sql(replace_where_sql(name, view, predicate))
            return int(self._last_commit(name)["version"])
        frame = self._frame(data, self._columns(name), table=name)
        (
            frame.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", predicate)
            .option(USER_METADATA, json.dumps(dict(tags), sort_keys=True))
            .saveAsTable(table_ref(name))
        )
        return int(self._last_commit(name)["version"])

    def replace_partition(
        self, name: str, data: Any, column: str, value: str, tags: dict[str, str] | None = None
    ) -> int:
        return self.replace_where(name, data, f"{quote(column)} = {sql_string(value)}", tags)

    @contextmanager
    def staged(self, frame: Any, name: str) -> Iterator[Any]:
        """``frame`` evaluated once into the Delta table ``name``, yielded as a frame over it,
        and dropped after. What serverless offers in place of ``cache()``/``persist()`` (not
        supported there): frames over the stage read what was written, never their sources
        again, so writes made from one evaluation agree with each other."""
        frame.write.format("delta").mode("overwrite").saveAsTable(table_ref(name))
        try:
            yield self.spark.table(table_ref(name))
        finally:
            self.spark.sql(f"DROP TABLE IF EXISTS {table_ref(name)}")

    def commit_tags(self, name: str, limit: int | None = None) -> list[dict[str, str]]:
        """The tags each commit's ``userMetadata`` carries, newest first ({} for none)."""
        last = f" LIMIT {int(limit)}" if limit else ""
        rows = self.spark.sql(f"DESCRIBE HISTORY {table_ref(name)}{last}").collect()
        found = []
        for row in sorted((r.asDict() for r in rows), key=lambda r: -int(r["version"])):
            raw = row.get("userMetadata")
            try:
                tags = json.loads(raw) if isinstance(raw, str) else {}
            except ValueError:  # free text another writer put there
                tags = {}
            found.append(tags if isinstance(tags, dict) else {})
        return found

    def append(self, name: str, data: Any) -> int:
        view = self._view(data, self._columns(name), table=name)
        self.spark.sql(append_sql(name, view))
        return int(self._last_commit(name)["version"])

    def read(
        self,
        name: str,
        columns: list[str] | None = None,
        predicate: str | None = None,
        *,
        order_by: str | list[str] | None = None,
        version: int | None = None,
    ) -> pd.DataFrame:
        if not self.exists(name):
            raise TableError(f"table {name} does not exist")
        return self.spark.sql(select_sql(name, columns, predicate, order_by, version)).toPandas()

    def properties(self, name: str) -> dict[str, str]:
        rows = self.spark.sql(f"SHOW TBLPROPERTIES {table_ref(name)}").collect()
        return {row.asDict()["key"]: row.asDict()["value"] for row in rows}

    def version(self, name: str) -> int:
        return int(self._last_commit(name)["version"])

    def count(self, name: str, predicate: str | None = None) -> int:
        where = f" WHERE {predicate}" if predicate else ""
        [row] = self.spark.sql(f"SELECT COUNT(*) AS n FROM {table_ref(name)}{where}").collect()
        return int(row.asDict()["n"])

    def distinct(self, name: str, column: str) -> list[str]:
        rows = self.spark.sql(
            f"SELECT DISTINCT {quote(column)} AS value FROM {table_ref(name)} ORDER BY value"
        ).collect()
        return [str(row.asDict()["value"]) for row in rows]

    def aggregate(self, name: str, select: str, predicate: str | None = None) -> dict[str, Any]:
        where = f" WHERE {predicate}" if predicate else ""
        [row] = self.spark.sql(f"SELECT {select} FROM {table_ref(name)}{where}").collect()
        return row.asDict()

    def group_counts(
        self, name: str, column: str, predicate: str | None = None, limit: int | None = None
    ) -> dict[str, int]:
        sql = f"SELECT {quote(column)} AS value, COUNT(*) AS n FROM {table_ref(name)}"
        sql += (f" WHERE {predicate}" if predicate else "") + f" GROUP BY {quote(column)}"
        sql += " ORDER BY n DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return {
            str(r.asDict()["value"]): int(r.asDict()["n"]) for r in self.spark.sql(sql).collect()
        }

    def group_rows(
        self, name: str, columns: list[str], predicate: str | None = None
    ) -> list[dict[str, Any]]:
        keys = ", ".join(quote(c) for c in columns)
        sql = f"SELECT {keys}, COUNT(*) AS n FROM {table_ref(name)}"
        sql += (f" WHERE {predicate}" if predicate else "") + f" GROUP BY {keys}"
        return [r.asDict() for r in self.spark.sql(sql).collect()]

    def compact_if_fragmented(self, name: str, max_files: int = 64) -> dict[str, Any] | None:
        [detail] = self.spark.sql(f"DESCRIBE DETAIL {table_ref(name)}").collect()
        if int(detail.asDict()["numFiles"]) <= max_files:
            return None
        return self.compact(name)

    def compact(self, name: str) -> dict[str, Any]:
        rows = self.spark.sql(f"OPTIMIZE {table_ref(name)}").collect()
        return rows[0].asDict() if rows else {}
