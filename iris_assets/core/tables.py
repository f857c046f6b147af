"""The table store: named Delta tables, created from the Arrow contracts, written idempotently.

``TableStore`` is what the steps program against; ``DeltaTableStore`` keeps the tables as local
Delta tables (``deltalake``) under ``warehouse/<catalog>/<schema>/<table>``, the layout of
``Settings.table_path``. Data handed in is cast to the table's schema first, so callers may pass
pandas frames with loose dtypes (nanosecond or naive timestamps, pandas strings, nullable ints).

Reads go through deltalake's own engine (DataFusion) rather than a threaded pyarrow dataset scan,
which can abort a short-lived process at exit.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

try:  # the local engine; a Databricks task has Spark and no deltalake, and uses only the API here
    from deltalake import CommitProperties, DeltaTable, QueryBuilder, write_deltalake
    from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
except ModuleNotFoundError as missing:
    _NO_DELTALAKE: ModuleNotFoundError | None = missing
else:
    _NO_DELTALAKE = None

TableData = pd.DataFrame | pa.Table
# Writes also take an iterable of frames: written as one stream, in one commit, in bounded memory.
StreamData = TableData | Iterable[pd.DataFrame | pa.Table | pa.RecordBatch]
# ... or a function that produces the data (called once per attempt), so a conflicted commit of a
# stream can be written again (``DeltaTableStore.replace_where``).
DataSource = StreamData | Callable[[], StreamData]

# A replace whose commit lost a race with another writer is retried this many times.
COMMIT_RETRIES = 6

_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_CONSTRAINT_KEY = "delta.constraints."
# One DataFusion partition keeps reads in file order, so the same table version reads the same.
_READ_CONFIG = {"datafusion.execution.target_partitions": "1"}


TAG_PREFIX = "iris."  # commit metadata keys written by ``replace_where(tags=...)``


class TableError(RuntimeError):
    """A table operation failed: missing table, data that does not fit, or a rejected write."""


@runtime_checkable
class TableStore(Protocol):
    """Named tables ("catalog.schema.table") with upsert, partition replace and plain reads."""

    def exists(self, name: str) -> bool: ...

    def ensure_table(
        self,
        name: str,
        schema: pa.Schema,
        *,
        partition_by: list[str] | None = None,
        constraints: dict[str, str] | None = None,
        primary_key: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> None: ...

    def merge_upsert(
        self,
        name: str,
        data: TableData,
        key: str,
        *,
        compare: list[str] | None = None,
        whole: tuple[str, str] | None = None,
    ) -> dict[str, int]: ...

    def replace_where(
        self, name: str, data: TableData, predicate: str, tags: dict[str, str] | None = None
    ) -> int: ...

    def replace_partition(
        self,
        name: str,
        data: StreamData,
        column: str,
        value: str,
        tags: dict[str, str] | None = None,
    ) -> int: ...

    def commit_tags(self, name: str) -> list[dict[str, str]]: ...

    def append(self, name: str, data: TableData) -> int: ...

    def read(
        self,
        name: str,
        columns: list[str] | None = None,
        predicate: str | None = None,
        *,
        order_by: str | list[str] | None = None,
        version: int | None = None,
    ) -> pd.DataFrame: ...

    def properties(self, name: str) -> dict[str, str]: ...

    def version(self, name: str) -> int: ...

    def count(self, name: str, predicate: str | None = None) -> int: ...

    def distinct(self, name: str, column: str) -> list[str]: ...

    def aggregate(self, name: str, select: str, predicate: str | None = None) -> dict[str, Any]: ...

    def group_counts(
        self, name: str, column: str, predicate: str | None = None, limit: int | None = None
    ) -> dict[str, int]: ...

    def group_rows(
        self, name: str, columns: list[str], predicate: str | None = None
    ) -> list[dict[str, Any]]: ...

    def compact(self, name: str) -> dict[str, Any]: ...

    def compact_if_fragmented(self, name: str, max_files: int = 64) -> dict[str, Any] | None: ...


def current_version(store: TableStore, name: str) -> str | None:
    """The table's current version as text; None while it does not exist."""
    return str(store.version(name)) if store.exists(name) else None


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (case-sensitive, any characters)."""
    return '"' + name.replace('"', '""') + '"'


def _column_array(data: pd.Series, field: pa.Field) -> pa.Array:
    array = pa.array(data, from_pandas=True)
    return _cast(array, field)


def _cast(array: pa.Array | pa.ChunkedArray, field: pa.Field) -> pa.Array | pa.ChunkedArray:
    if array.type == field.type:
        return array
    # Timestamps arrive in nanoseconds from pandas: sub-microsecond digits are dropped, not refused.
    safe = not pa.types.is_timestamp(field.type)
    if (
        pa.types.is_timestamp(array.type)
        and pa.types.is_timestamp(field.type)
        and array.type.tz is None
        and field.type.tz is not None
    ):
        # A naive timestamp is taken to be UTC, the only zone the tables use.
        array = pc.assume_timezone(array, "UTC")
    return pc.cast(array, field.type, safe=safe)


def _constraints(table: DeltaTable) -> dict[str, str]:
    """The table's CHECK constraints, name -> SQL expression."""
    return {
        key[len(_CONSTRAINT_KEY) :]: value
        for key, value in table.metadata().configuration.items()
        if key.startswith(_CONSTRAINT_KEY) and value is not None
    }


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _cast_for_pandas(array: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    # The engine returns string views; pandas converts those faster than it converts plain strings.
    if _is_text(array.type) and _is_text(field.type):
        return array
    return _cast(array, field)


class DeltaTableStore:
    """Delta tables under ``warehouse/<catalog>/<schema>/<table>``."""

    def __init__(self, warehouse: Path | str):
        if _NO_DELTALAKE is not None:
            raise TableError(f"the local table store needs deltalake: {_NO_DELTALAKE}")
        self.warehouse = Path(warehouse)

    # --- names and handles -----------------------------------------------------------------
    def path(self, name: str) -> Path:
        parts = name.split(".")
        if len(parts) != 3 or not all(_NAME_PART.match(p) for p in parts):
            raise TableError(
                f"table name {name!r} is not catalog.schema.table "
                "(letters, digits, '_' and '-' in each part)"
            )
        return self.warehouse.joinpath(*parts)

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(str(self.path(name)))

    def _table(self, name: str, version: int | None = None) -> DeltaTable:
        path = self.path(name)
        try:
            return DeltaTable(str(path), version=version)
        except TableNotFoundError:
            raise TableError(
                f"table {name} does not exist (no Delta table at {path}); "
                "create it with ensure_table first"
            ) from None
        except DeltaError as exc:
            raise TableError(
                f"table {name} has no readable version {version} (vacuumed, or not yet "
                f"written; the table is at version {self.version(name)}): {exc}"
            ) from exc

    def properties(self, name: str) -> dict[str, str]:
        """The table's properties (Delta configuration), e.g. the split it was created with."""
        return self._configuration(self._table(name))

    @staticmethod
    def _configuration(table: DeltaTable) -> dict[str, str]:
        return {k: v for k, v in table.metadata().configuration.items() if v is not None}

    @staticmethod
    def _schema(table: DeltaTable) -> pa.Schema:
        return pa.schema(table.schema().to_arrow())

    # --- creating --------------------------------------------------------------------------
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
        """Create the table if missing; add any CHECK constraint it does not have yet.

        deltalake has no primary-key constraint: the key must be NOT NULL in the schema, and
        ``merge_upsert`` keeps it unique. ``properties`` (e.g. Change Data Feed) apply on creation.
        """
        if primary_key and schema.field(primary_key).nullable:
            raise TableError(f"{name}: primary key {primary_key} must be NOT NULL in the schema")
        partition_by = list(partition_by or [])
        unknown = [c for c in partition_by if c not in schema.names]
        if unknown:
            raise TableError(f"{name}: partition columns {unknown} are not in the schema")
        path = self.path(name)
        # deltalake takes only Delta's own properties on creation; the project's (the split
        # fraction) are set in the next commit, and again by any run that finds the table
        # still at that first, empty version (a crash in between).
        delta_properties = {k: v for k, v in (properties or {}).items() if k.startswith("delta.")}
        own_properties = {k: v for k, v in (properties or {}).items() if k not in delta_properties}
        if self.exists(name):
            table = DeltaTable(str(path))
            self._check_layout(name, table, schema, partition_by)
            self._add_new_columns(name, table, schema)
        else:
            path.mkdir(parents=True, exist_ok=True)
            table = DeltaTable.create(
                str(path),
                schema,
                mode="ignore",
                partition_by=partition_by or None,
                name=name,
                configuration=delta_properties or None,
            )
        missing = {k: v for k, v in own_properties.items() if k not in self._configuration(table)}
        if missing and table.version() == 0:
            table.alter.set_table_properties(missing, raise_if_not_exists=False)
        present = {k.lower(): v for k, v in _constraints(table).items()}
        for constraint, expression in (constraints or {}).items():
            existing = present.get(constraint.lower())
            if existing is not None:
                if " ".join(existing.split()) != " ".join(expression.split()):
                    raise TableError(
                        f"{name}: constraint {constraint} is {existing!r}, expected "
                        f"{expression!r}; drop it (DeltaTable.alter.drop_constraint) to change it"
                    )
                continue
            try:
                table.alter.add_constraint({constraint: expression})
            except DeltaError as exc:
                raise TableError(f"{name}: cannot add constraint {constraint} ({exc})") from exc

    def _add_new_columns(self, name: str, table: DeltaTable, schema: pa.Schema) -> None:
        """Add the schema's nullable columns a table made by an older release does not have."""
        from deltalake.schema import Field

        have = set(self._schema(table).names)
        new = [f for f in schema if f.name not in have and f.nullable]
        if not new:
            return
        try:
            table.alter.add_columns([Field.from_arrow(f) for f in new])
        except DeltaError as exc:
            raise TableError(f"{name}: cannot add columns {[f.name for f in new]}: {exc}") from exc
        table.update_incremental()

    def _check_layout(
        self, name: str, table: DeltaTable, schema: pa.Schema, partition_by: list[str]
    ) -> None:
        existing = self._schema(table)
        differences = []
        for field in schema:
            if field.name not in existing.names:
                if not field.nullable:  # a new nullable column is added (_add_new_columns)
                    differences.append(f"missing column {field.name}")
                continue
            have = existing.field(field.name)
            if have.type != field.type or have.nullable != field.nullable:
                differences.append(
                    f"{field.name} is {have.type}{'' if have.nullable else ' NOT NULL'}, "
                    f"expected {field.type}{'' if field.nullable else ' NOT NULL'}"
                )
        extra = [n for n in existing.names if n not in schema.names]
        if extra:
            differences.append(f"unexpected columns {extra}")
        if partition_by and list(table.metadata().partition_columns) != partition_by:
            differences.append(
                f"partitioned by {list(table.metadata().partition_columns)}, "
                f"expected {partition_by}"
            )
        if differences:
            raise TableError(
                f"table {name} exists with a different layout: {'; '.join(differences)}"
            )

    # --- writing ---------------------------------------------------------------------------
    def _conform(self, name: str, schema: pa.Schema, data: TableData) -> pa.Table:
        """``data`` as an Arrow table of exactly ``schema``, or a TableError saying why not."""
        if isinstance(data, pd.DataFrame):
            present = {str(c) for c in data.columns}
            columns = {c: data[c] for c in schema.names if c in present}
            rows = len(data)
            convert = _column_array
        elif isinstance(data, pa.Table | pa.RecordBatch):
            data = pa.table(data)
            columns = {c: data.column(c) for c in schema.names if c in data.column_names}
            rows = data.num_rows
            convert = _cast
        else:
            raise TableError(f"{name}: cannot write {type(data).__name__}, give a DataFrame")
        arrays = []
        for field in schema:
            if field.name not in columns:
                if not field.nullable:
                    raise TableError(f"{name}: data has no column {field.name} (NOT NULL)")
                arrays.append(pa.nulls(rows, field.type))
                continue
            try:
                array = convert(columns[field.name], field)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise TableError(
                    f"{name}: column {field.name} cannot be stored as {field.type}: {exc}"
                ) from exc
            if not field.nullable and array.null_count:
                raise TableError(
                    f"{name}: column {field.name} is NOT NULL but {array.null_count} of "
                    f"{rows} rows are null"
                )
            arrays.append(array)
        arrays = [pa.chunked_array([a]) if isinstance(a, pa.Array) else a for a in arrays]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _source(self, name: str, schema: pa.Schema, data: StreamData):
        if isinstance(data, pd.DataFrame | pa.Table | pa.RecordBatch):
            return self._conform(name, schema, data)
        batches = (
            batch for frame in data for batch in self._conform(name, schema, frame).to_batches()
        )
        return pa.RecordBatchReader.from_batches(schema, batches)

    def _rejected(self, name: str, action: str, table: DeltaTable, exc: Exception) -> TableError:
        rules = "; ".join(f"{k}: {v}" for k, v in _constraints(table).items()) or "none"
        return TableError(f"{action} into {name} was rejected (CHECK constraints: {rules}): {exc}")

    def _write(self, name: str, action: str, table: DeltaTable, write) -> None:
        try:
            write()
        except CommitFailedError as exc:
            raise self._conflicted(name, action, 0) from exc
        except DeltaError as exc:
            raise self._rejected(name, action, table, exc) from exc

    def merge_upsert(
        self,
        name: str,
        data: TableData,
        key: str,
        *,
        compare: list[str] | None = None,
        whole: tuple[str, str] | None = None,
        retries: int = COMMIT_RETRIES,
    ) -> dict[str, int]:
        """MERGE on ``key``: update matched rows whose ``compare`` columns changed, insert the rest.

        ``compare`` names the data columns (default: every column but the key); bookkeeping
        columns left out of it, such as ``ingested_at``, are written only when the row changes.
        Delta has no primary key, so the source is first reduced to one row per key (the last
        occurrence wins). Source rows equal to their target row are dropped before the MERGE,
        and when none is left nothing is committed: re-merging unchanged data is a no-op (same
        table version). ``whole=(column, value)`` says ``data`` is everything that value of the
        column offers: target rows with that value whose key ``data`` lacks are deleted in the
        same commit (``WHEN NOT MATCHED BY SOURCE``). Returns inserted, updated, deleted,
        deduplicated (source rows dropped) and the table version the merge committed (the
        latest version when it committed nothing).

        A MERGE that conflicts with a concurrent commit (Delta's optimistic concurrency: another
        source's ingest appended rows after this one read the table) is computed again from the
        source rows against a fresh snapshot, up to ``retries`` times after a short random
        back-off, and only then reported as a conflict (the table unchanged by this call).
        """
        table = self._table(name)
        schema = self._schema(table)
        compare = [n for n in schema.names if n != key] if compare is None else list(compare)
        unknown = [
            c for c in [key, *compare, *(whole[:1] if whole else ())] if c not in schema.names
        ]
        if unknown:
            raise TableError(f"{name}: merge columns {unknown} are not columns of the table")
        source = self._conform(name, schema, data)
        if source.column(key).null_count:
            raise TableError(f"{name}: {source.column(key).null_count} rows have a null {key}")
        keys = source.column(key).to_pandas()
        last = ~keys.duplicated(keep="last").to_numpy()
        deduplicated = int(len(last) - last.sum())
        if deduplicated:
            source = source.filter(pa.array(last))
        for attempt in range(retries + 1):
            try:
                merged = self._merge_once(name, table, source, key, compare, whole)
            except CommitFailedError as exc:
                if attempt == retries:
                    raise self._conflicted(name, "merge", attempt) from exc
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
                table = self._table(name)  # the snapshot with the commit that won
            except DeltaError as exc:
                raise self._rejected(name, "merge", table, exc) from exc
            else:
                return {**merged, "deduplicated": deduplicated}
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _merge_once(
        self,
        name: str,
        table: DeltaTable,
        source: pa.Table,
        key: str,
        compare: list[str],
        whole: tuple[str, str] | None,
    ) -> dict[str, int]:
        """One MERGE of ``source`` into ``table``'s snapshot (no commit when no row differs and
        none is missing): inserted, updated, deleted and the table version after it."""
        changed_rows = self._differs(name, source, key, compare)
        missing = self._missing(name, source, key, whole) if whole else 0
        if not changed_rows.any() and not missing:
            # The rows were read at the latest version, which a concurrent writer may have moved.
            return {"inserted": 0, "updated": 0, "deleted": 0, "version": self.version(name)}
        if not whole:  # NOT MATCHED BY SOURCE needs every source row, changed or not
            source = source.filter(pa.array(changed_rows))
        k = sql_identifier(key)
        changed = " OR ".join(
            f"(t.{c} IS DISTINCT FROM s.{c})" for c in (sql_identifier(n) for n in compare)
        )
        merger = table.merge(source, predicate=f"t.{k} = s.{k}", source_alias="s", target_alias="t")
        if changed:
            # Checked again inside the MERGE: a concurrent writer may have made the row equal.
            merger = merger.when_matched_update_all(predicate=changed)
        merger = merger.when_not_matched_insert_all()
        if whole:
            column, value = whole
            merger = merger.when_not_matched_by_source_delete(
                predicate=f"t.{sql_identifier(column)} = {sql_string(value)}"
            )
        metrics = merger.execute()
        return {
            "inserted": int(metrics.get("num_target_rows_inserted", 0)),
            "updated": int(metrics.get("num_target_rows_updated", 0)),
            "deleted": int(metrics.get("num_target_rows_deleted", 0)),
            "version": int(table.version()),  # this merge's commit
        }

    def _missing(self, name: str, source: pa.Table, key: str, whole: tuple[str, str]) -> int:
        """Target rows of ``whole``'s (column, value) whose key ``source`` no longer has."""
        column, value = whole
        held = self.read(name, [key], predicate=f"{sql_identifier(column)} = {sql_string(value)}")
        offered = set(source.column(key).to_pylist())
        return int((~held[key].isin(offered)).sum())

    def _differs(self, name: str, source: pa.Table, key: str, compare: list[str]):
        """Per source row: True when its key is new or a ``compare`` column differs (null-safe)."""
        if source.num_rows == 0:
            return np.zeros(0, dtype=bool)
        target = self.read(name, [key, *compare])
        incoming = source.select([key, *compare]).to_pandas()
        joined = incoming.merge(
            target, on=key, how="left", suffixes=("", "__target"), indicator=True
        )
        differs = (joined["_merge"] == "left_only").to_numpy().copy()
        for column in compare:
            new, old = joined[column], joined[f"{column}__target"]
            same = (new == old) | (new.isna() & old.isna())
            differs |= ~same.fillna(False).to_numpy(dtype=bool)
        return differs

    def replace_where(
        self,
        name: str,
        data: DataSource,
        predicate: str,
        tags: dict[str, str] | None = None,
        *,
        retries: int = COMMIT_RETRIES,
    ) -> int:
        """Atomically replace the rows matching ``predicate`` with ``data`` (one commit).

        Every row of ``data`` must match the predicate; rows outside it are untouched. ``data``
        may be an iterable of frames: it is streamed, and an error while producing it leaves the
        table as it was. ``tags`` go into the commit's metadata (``commit_tags`` reads them
        back), so a commit that wrote no rows still says who made it.

        A commit that conflicts with a concurrent writer (Delta's optimistic concurrency: two
        days' rejects in one file after a compaction, say) is written again from a fresh
        snapshot, up to ``retries`` times after a short random back-off, when ``data`` can be
        produced again: a frame, an Arrow table, a list, or a function returning the data
        (called once per attempt). Before a retry the commits that won are looked at: one that
        carries this write's ``tags`` (its run token) means the write already landed, and it is
        not written twice. A one-shot iterator is not retried (its rows are spent).
        """
        repeatable = callable(data) or isinstance(
            data, pd.DataFrame | pa.Table | pa.RecordBatch | list | tuple
        )
        properties = CommitProperties(custom_metadata=dict(tags)) if tags else None
        action = f"replace where {predicate}"
        for attempt in range(retries + 1):
            table = self._table(name)
            start = table.version()
            source = self._source(name, self._schema(table), data() if callable(data) else data)
            try:
                write_deltalake(
                    table,
                    source,
                    mode="overwrite",
                    predicate=predicate,
                    commit_properties=properties,
                )
            except CommitFailedError as exc:
                landed = self._landed(name, start, tags) if tags else None
                if landed is not None:
                    return landed
                if not repeatable or attempt == retries:
                    raise self._conflicted(name, action, attempt) from exc
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
            except DeltaError as exc:
                raise self._rejected(name, action, table, exc) from exc
            else:
                return int(table.version())  # this commit's (the handle follows its own writes)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _landed(self, name: str, version: int, tags: dict[str, str]) -> int | None:
        """The version of the newest commit after ``version`` that carries every one of
        ``tags`` (this write, landed after all); None when there is none."""
        table = self._table(name)
        newer = int(table.version()) - version
        if newer <= 0:
            return None
        for commit in table.history(limit=newer):  # newest first
            if all(str(commit.get(k)) == v for k, v in tags.items()):
                return int(commit["version"])
        return None

    @staticmethod
    def _conflicted(name: str, action: str, retried: int) -> TableError:
        tried = f" (tried {retried + 1} times)" if retried else ""
        return TableError(
            f"{action} into {name} conflicted with a concurrent write to the same rows and "
            f"was not committed{tried} (the table is unchanged): run it again"
        )

    def replace_partition(
        self,
        name: str,
        data: DataSource,
        column: str,
        value: str,
        tags: dict[str, str] | None = None,
    ) -> int:
        """Replace the rows whose ``column`` equals ``value`` (a partition, typically)."""
        predicate = f"{sql_identifier(column)} = {sql_string(value)}"
        return self.replace_where(name, data, predicate, tags)

    def commit_tags(self, name: str) -> list[dict[str, str]]:
        """The ``iris.*`` tags of each commit, newest first (commits without tags give {})."""
        return [
            {k: str(v) for k, v in commit.items() if k.startswith(TAG_PREFIX)}
            for commit in self._table(name).history()
        ]

    def append(self, name: str, data: TableData) -> int:
        table = self._table(name)
        source = self._conform(name, self._schema(table), data)
        if source.num_rows == 0:
            return int(table.version())
        self._write(name, "append", table, lambda: write_deltalake(table, source, mode="append"))
        return int(table.version())  # this commit's, whatever another writer committed since

    # --- reading ---------------------------------------------------------------------------
    def _query(self, name: str, sql: str, table: DeltaTable | None = None) -> pa.Table:
        """``sql`` over the table as ``tbl``: ``table`` when the caller has it open already (a
        version of it, say), else its current version."""
        table = self._table(name) if table is None else table
        try:
            reader = QueryBuilder(_READ_CONFIG).register("tbl", table).execute(sql)
            return pa.table(reader)
        except Exception as exc:
            # DataFusion planning errors (unknown column, bad predicate) are not DeltaErrors.
            raise TableError(f"query on {name} failed: {exc}") from exc

    def read(
        self,
        name: str,
        columns: list[str] | None = None,
        predicate: str | None = None,
        *,
        order_by: str | list[str] | None = None,
        version: int | None = None,
    ) -> pd.DataFrame:
        """Rows of the table (optionally only ``columns``, rows matching ``predicate``).

        ``version`` reads the table as it was at that commit (Delta time travel). Without
        ``order_by`` rows come in storage order, which is stable for one table version but
        changes when the table is rewritten.
        """
        table = self._table(name, version)
        schema = self._schema(table)
        columns = list(schema.names if columns is None else columns)
        keys = [order_by] if isinstance(order_by, str) else list(order_by or [])
        unknown = [c for c in [*columns, *keys] if c not in schema.names]
        if unknown:
            raise TableError(f"{name} has no columns {unknown}; it has {schema.names}")
        select = ", ".join(sql_identifier(c) for c in columns) or "1 AS _unused"
        sql = f"SELECT {select} FROM tbl"
        if predicate:
            sql += f" WHERE {predicate}"
        if keys:
            sql += " ORDER BY " + ", ".join(sql_identifier(k) for k in keys)
        result = self._query(name, sql, table=table)
        if not columns:
            return pd.DataFrame(index=pd.RangeIndex(result.num_rows))
        arrays = [
            _cast_for_pandas(result.column(i), schema.field(c)) for i, c in enumerate(columns)
        ]
        return pa.Table.from_arrays(arrays, names=columns).to_pandas()

    def version(self, name: str) -> int:
        return int(self._table(name).version())

    def count(self, name: str, predicate: str | None = None) -> int:
        sql = "SELECT COUNT(*) AS n FROM tbl"
        if predicate:
            sql += f" WHERE {predicate}"
        return int(self._query(name, sql).column("n")[0].as_py())

    def distinct(self, name: str, column: str) -> list[str]:
        """The distinct non-null values of ``column``, sorted, as text (partition listing)."""
        table = self._table(name)
        if column not in self._schema(table).names:
            raise TableError(f"{name} has no column {column}")
        c = sql_identifier(column)
        sql = f"SELECT DISTINCT {c} AS v FROM tbl WHERE {c} IS NOT NULL"
        values = self._query(name, sql, table=table)
        return [str(v) for v in sorted(values.column("v").to_pylist())]

    def aggregate(self, name: str, select: str, predicate: str | None = None) -> dict[str, Any]:
        """One row of aggregates, e.g. ``select="COUNT(*) AS n"``, computed by the engine."""
        sql = f"SELECT {select} FROM tbl" + (f" WHERE {predicate}" if predicate else "")
        [row] = self._query(name, sql).to_pylist()
        return row

    def group_counts(
        self, name: str, column: str, predicate: str | None = None, limit: int | None = None
    ) -> dict[str, int]:
        """Rows per value of ``column``, most frequent first."""
        c = sql_identifier(column)
        sql = f"SELECT {c} AS value, COUNT(*) AS n FROM tbl"
        sql += (f" WHERE {predicate}" if predicate else "") + f" GROUP BY {c} ORDER BY n DESC"
        sql += f" LIMIT {int(limit)}" if limit else ""
        return {str(r["value"]): int(r["n"]) for r in self._query(name, sql).to_pylist()}

    def group_rows(
        self, name: str, columns: list[str], predicate: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows per distinct combination of ``columns`` (nulls included): the columns and ``n``."""
        keys = ", ".join(sql_identifier(c) for c in columns)
        sql = f"SELECT {keys}, COUNT(*) AS n FROM tbl"
        sql += (f" WHERE {predicate}" if predicate else "") + f" GROUP BY {keys}"
        return self._query(name, sql).to_pylist()

    def compact_if_fragmented(self, name: str, max_files: int = 64) -> dict[str, Any] | None:
        """Compact when the table has more than ``max_files`` data files; None when it had not.

        Every daily run adds files (each partition replace, each rejects slice); without this,
        reads slow down as the days pile up. Compaction is upkeep: when a concurrent writer
        commits first (another day's run replacing files this would rewrite), it is given up and
        None returned; the next run compacts.
        """
        if len(self._table(name).file_uris()) <= max_files:
            return None
        try:
            return self._compact(name)
        except CommitFailedError:
            return None

    def compact(self, name: str) -> dict[str, Any]:
        """Rewrite small files into larger ones (no vacuum); deltalake's metrics."""
        try:
            return self._compact(name)
        except CommitFailedError as exc:
            raise self._conflicted(name, "compaction", 0) from exc

    def _compact(self, name: str) -> dict[str, Any]:
        table = self._table(name)
        try:
            return dict(table.optimize.compact())
        except CommitFailedError:
            raise
        except DeltaError as exc:
            raise TableError(f"compacting {name} failed: {exc}") from exc
