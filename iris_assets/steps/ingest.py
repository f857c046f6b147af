"""Ingest step: source rows -> validated, split, MERGE-upserted into the feature table.

Malformed source rows are quarantined in the rejects table with a reason; nothing is dropped.
Identity (``core.identity``): a row keeps its ``flower_id``, or gets one derived from its content
when the file has none. An id already held by a different flower from another source is rejected
with a reason, never overwritten; the source that delivered a flower may correct it (a source is
known by its resolved path, ``source_identity``), and a correction keeps the flower's split.
A source is ingested whole: rows it held and no longer offers (a deleted or corrected label
batch, a row edited away) are removed in the same MERGE, but only as a deliberate retraction
(``core.retraction``): a source that suddenly offers nothing, or would lose most of its rows, is
refused before the MERGE unless the run says ``retract_missing`` or the source is the
labelled-flowers file. A flower another source holds with the same content stays that source's
unless its file is gone (renamed or deleted). Unchanged rows are not rewritten (the MERGE compares
the data columns and the source only), so re-ingesting the same data commits nothing. The split
fraction is fixed in the table's properties when it is created.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from iris_assets.core.identity import DERIVED_ID_BASE, foreign_conflicts
from iris_assets.core.label_evidence import SOURCE_SHA256
from iris_assets.core.quarantine import rejects_rows, replace_slice_if_changed
from iris_assets.core.retraction import held_elsewhere, planned_removal, refuse_unless_deliberate
from iris_assets.core.schema import (
    FEATURE_DATA_COLUMNS,
    FEATURE_TABLE,
    FEATURE_TABLE_SCHEMA,
    PRIMARY_KEY,
    REJECTS_TABLE,
    SPECIES_NAMES,
    TEST,
    TRAIN,
)
from iris_assets.core.source import BUNDLED_SOURCE, SourceError, load_source
from iris_assets.core.split import check_split, split_by_measurements, split_properties
from iris_assets.core.validation import validate_measurements
from iris_assets.steps.bootstrap import Step, json_value, open_step, path_value
from iris_assets.steps.failpoints import failpoint
from iris_assets.steps.performance import labelled_flowers_path
from iris_assets.steps.stores import table_store


def source_identity(source_path: str | None) -> str:
    """The name a source is known by: its absolute, resolved path (``./x.csv`` is ``x.csv``)."""
    if not source_path or not str(source_path).strip():
        return BUNDLED_SOURCE
    return str(Path(source_path).expanduser().resolve())


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_source(source_path: str | None, attempts: int = 3) -> tuple[pd.DataFrame, str | None]:
    """(the source's rows, the content hash of the file they were read from, or None).

    The hash goes in the materialization (``source_sha256``): ``retraining_sensor`` counts a
    ``model_performance`` report's label evidence as taken in only by an ingest of exactly the
    file that report wrote. The file is hashed before and after it is read; a file replaced
    meanwhile (``model_performance`` rewrites it whole) is read again, and gets no hash if it
    never holds still, so an uncertain read never spends evidence."""
    if not source_path or not str(source_path).strip():
        return load_source(source_path), None
    for _ in range(attempts):
        if not Path(source_path).is_file():
            break  # load_source says why
        before = file_sha256(source_path)
        raw = load_source(source_path)
        if file_sha256(source_path) == before:
            return raw, before
    return load_source(source_path), None


def keep_held_split(held: pd.DataFrame, features: pd.DataFrame, proposed: pd.Series) -> pd.Series:
    """The split of each row: the one its id already has, else ``proposed`` (from its content).

    The split is a property of the flower, fixed when it first arrives: a corrected measurement
    must not move a flower between train and test.
    """
    existing = held.set_index(PRIMARY_KEY)["split"]
    kept = features[PRIMARY_KEY].map(existing)
    return kept.where(kept.notna(), proposed).astype(object)


def refuse_conflicts(
    held: pd.DataFrame, features: pd.DataFrame, source_name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to merge, rejects) after refusing ids another source holds with other content."""
    owners = foreign_conflicts(held, features, source_name, FEATURE_DATA_COLUMNS)
    conflict = owners.notna().to_numpy()
    refused = features[conflict]
    rejects = pd.DataFrame(
        {
            PRIMARY_KEY: refused[PRIMARY_KEY].astype(str).astype(object),
            "reason": [
                f"{PRIMARY_KEY} {i} already holds a different flower from {owner}; only that "
                "source may change it (give this row an unused flower_id, or leave the "
                "flower_id column out to derive ids from content)"
                for i, owner in zip(refused[PRIMARY_KEY], owners[conflict], strict=True)
            ],
            "record": [
                json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
                for row in refused[[PRIMARY_KEY, *FEATURE_DATA_COLUMNS[:-1]]].to_dict("records")
            ],
        }
    )
    return features[~conflict], rejects


def ingest(step: Step) -> None:
    settings, config = step.settings, step.config
    source_path = config.get("source_path") or None
    source_name = source_identity(source_path)
    test_fraction = float(config.get("test_fraction", 0.3))
    store = table_store(settings)

    FEATURE_TABLE.ensure(store, settings.feature_table, split_properties(test_fraction))
    REJECTS_TABLE.ensure(store, settings.rejects_table)
    check_split(settings.feature_table, store.properties(settings.feature_table), test_fraction)

    try:
        raw, content = read_source(source_path)
    except PermissionError as denied:  # a Unity Catalog volume these credentials lack a grant on
        raise SourceError(
            f"source {source_path} cannot be read with these credentials ({denied.strerror}): on "
            "Databricks grant READ VOLUME on its volume to the identity the steps run as"
        ) from None
    checked = validate_measurements(
        raw, require_label=True, derive_missing_ids=True, id_below=DERIVED_ID_BASE
    )
    features = checked.valid.copy()
    held = store.read(settings.feature_table, [PRIMARY_KEY, *FEATURE_DATA_COLUMNS, "source"])
    features["split"] = keep_held_split(
        held, features, split_by_measurements(features, test_fraction)
    )
    features["source"] = source_name
    features["ingested_at"] = pd.Timestamp(datetime.now(UTC))
    features = features[FEATURE_TABLE_SCHEMA.names]
    features, conflicts = refuse_conflicts(held, features, source_name)
    rejects = pd.concat([checked.rejects, conflicts], ignore_index=True)
    shared = held_elsewhere(held, features, source_name).to_numpy()
    features = features[~shared]
    removal = planned_removal(held, features, source_name)
    # The labelled-flowers file is rewritten from the labels landing area, where deleting a
    # batch is the deliberate act; any other source retracts in bulk only when the run says so.
    deliberate = bool(config.get("retract_missing")) or source_name == source_identity(
        str(labelled_flowers_path(settings))
    )
    replace_slice_if_changed(
        store,
        settings.rejects_table,
        rejects_rows(rejects, "ingest", source_name),
        "ingest",
        source_name,
    )
    refuse_unless_deliberate(removal, rejected=len(rejects), deliberate=deliberate)

    failpoint("ingest:before_merge")
    # The source is taken whole: its rows it no longer offers leave the table in the same commit.
    # ``source`` is compared too, so a flower whose holder's file is gone becomes this one's (a
    # renamed file takes its flowers with it, and its later deletions reach them).
    merged = store.merge_upsert(
        settings.feature_table,
        features,
        key=PRIMARY_KEY,
        compare=[*FEATURE_DATA_COLUMNS, "source"],
        whole=("source", source_name),
    )
    failpoint("ingest:merged")
    if merged["deleted"]:
        step.pipes.log.warning(
            f"removed {merged['deleted']} of the {removal.held} flowers {source_name} delivered "
            f"(no longer in it; flower_id {', '.join(map(str, removal.sample))}"
            f"{', ...' if merged['deleted'] > len(removal.sample) else ''})"
        )
    step.log(
        f"ingested {len(features)} rows from {source_name} into {settings.feature_table} "
        f"({merged['inserted']} new, {merged['updated']} updated, {merged['deleted']} no longer "
        f"in the source removed, {len(rejects)} rejected)"
    )

    table = store.read(settings.feature_table)
    report_feature_checks(step, table, rejected=len(rejects), source_name=source_name)
    step.pipes.report_asset_materialization(
        metadata={
            "table": settings.feature_table,
            "path": path_value(str(settings.table_path(settings.feature_table))),
            "source": source_name,
            **({SOURCE_SHA256: content} if content else {}),
            "source_rows": len(raw),
            "rows_ingested": len(features),
            "rows_rejected": len(rejects),
            "rows_conflicting": len(conflicts),
            "rows_inserted": merged["inserted"],
            "rows_updated": merged["updated"],
            "rows_removed": merged["deleted"],
            "rows_held_by_other_sources": int(shared.sum()),
            "dagster/row_count": len(table),
            "delta_version": merged["version"],
            "test_fraction": test_fraction,
            "split_counts": json_value(table["split"].value_counts().to_dict()),
            "species_counts": json_value(table["species_name"].value_counts().to_dict()),
        },
        data_version=str(merged["version"]),
    )


def report_feature_checks(step: Step, table: pd.DataFrame, rejected: int, source_name: str):
    duplicates = int(table[PRIMARY_KEY].duplicated().sum())
    problems = []
    if duplicates:
        problems.append(f"{duplicates} duplicate {PRIMARY_KEY} values")
    if table.isna().any().any():
        problems.append("null values in the table")
    for split in (TRAIN, TEST):
        present = set(table.loc[table["split"] == split, "species_name"])
        missing = sorted(set(SPECIES_NAMES) - present)
        if missing:
            problems.append(f"the {split} split has no {', '.join(missing)}")
    step.pipes.report_asset_check(
        "feature_table_valid",
        passed=not problems,
        severity="ERROR",
        metadata={"rows": len(table), "problems": json_value(problems)},
    )
    step.pipes.report_asset_check(
        "source_rows_accepted",
        passed=rejected == 0,
        severity="WARN",
        metadata={
            "rows_rejected": rejected,
            "source": source_name,
            "where": f"rejects table, stage = 'ingest', partition = '{source_name}'",
        },
    )


def main() -> None:
    with open_step() as step:
        ingest(step)


if __name__ == "__main__":
    main()
