"""Ingest step: source rows -> validated, split, MERGE-upserted into the feature table.

Malformed source rows are quarantined in the rejects table with a reason; nothing is dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from iris_assets.core.quarantine import rejects_rows, rejects_slice
from iris_assets.core.schema import (
    FEATURE_TABLE,
    FEATURE_TABLE_SCHEMA,
    PRIMARY_KEY,
    REJECTS_TABLE,
    SPECIES_NAMES,
    TEST,
    TRAIN,
)
from iris_assets.core.source import load_source
from iris_assets.core.split import assign_split
from iris_assets.core.validation import validate_measurements
from iris_assets.steps.bootstrap import Step, json_value, open_step, path_value
from iris_assets.steps.failpoints import failpoint
from iris_assets.steps.stores import table_store


def ingest(step: Step) -> None:
    settings, config = step.settings, step.config
    source_path = config.get("source_path") or None
    source_name = str(source_path) if source_path else "sklearn:iris"
    store = table_store(settings)

    raw = load_source(source_path)
    checked = validate_measurements(raw, require_label=True)
    features = checked.valid.copy()
    features["split"] = assign_split(features[PRIMARY_KEY], float(config.get("test_fraction", 0.3)))
    features["ingested_at"] = pd.Timestamp(datetime.now(UTC))
    features = features[FEATURE_TABLE_SCHEMA.names]

    FEATURE_TABLE.ensure(store, settings.feature_table)
    REJECTS_TABLE.ensure(store, settings.rejects_table)
    failpoint("ingest:before_merge")
    merged = store.merge_upsert(settings.feature_table, features, key=PRIMARY_KEY)
    failpoint("ingest:merged")
    store.replace_where(
        settings.rejects_table,
        rejects_rows(checked.rejects, "ingest", source_name),
        rejects_slice("ingest", source_name),
    )
    step.log(
        f"ingested {len(features)} rows from {source_name} into {settings.feature_table} "
        f"({merged['inserted']} new, {merged['updated']} updated, {len(checked.rejects)} rejected)"
    )

    table = store.read(settings.feature_table)
    report_feature_checks(step, table, rejected=len(checked.rejects), source_name=source_name)
    step.pipes.report_asset_materialization(
        metadata={
            "table": settings.feature_table,
            "path": path_value(str(settings.table_path(settings.feature_table))),
            "source": source_name,
            "source_rows": len(raw),
            "rows_ingested": len(features),
            "rows_rejected": len(checked.rejects),
            "rows_inserted": merged["inserted"],
            "rows_updated": merged["updated"],
            "dagster/row_count": len(table),
            "delta_version": merged["version"],
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
