"""Performance step: one observed day's labels -> the labels table, rejects, live performance.

For partition D it reads every label file of D (``core.labels``), joins the labels with D's
inference rows, and in this order replaces D in the labels table (``flower_labels``), D's slice
of the rejects table (stage ``labels``) and D in the performance table. It then rewrites the
labelled-flowers file that retraining ingests (``labelled_flowers_path``) from the whole labels
table (deterministic, and written again when another day's run committed meanwhile; its
content hash is reported as ``labelled_flowers_sha256``), computes the evidence of
``retraining_sensor``'s label triggers against ``iris_features`` (``core.label_evidence``: new
labelled flowers, retracted or corrected held ones) and reports it in the materialization, with
the labels- and feature-table versions it read and when it began (so of two days' reports stored
out of order the sensor takes the one that read the newer tables), so the sensor needs no table
of its own on either engine; and reports two checks:
``labels_accounted`` (blocking: labelled + rejected = landing rows, read back from the tables)
and ``live_accuracy`` (warn: ``core.performance.judge_decay``).
Re-running D (more labels arrived, or D was re-scored) replaces all three slices, so a run is
idempotent and never piles rows up.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from iris_assets.core.label_evidence import (
    EVIDENCE_READ_AT,
    FEATURES_VERSION,
    LABELLED_SHA256,
    LABELS_VERSION,
    label_evidence,
)
from iris_assets.core.labels import (
    LABELS_TABLE,
    STAGE,
    LabelledDay,
    latest_labels,
    read_labelled_day,
)
from iris_assets.core.performance import (
    PERFORMANCE_TABLE,
    DecayPolicy,
    day_performance,
    judge_decay,
    trend_markdown,
)
from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.schema import FEATURE_COLUMNS, LABEL, PRIMARY_KEY, REJECTS_TABLE
from iris_assets.core.tables import TableStore, sql_string
from iris_assets.settings import Settings
from iris_assets.steps.bootstrap import Step, json_value, md, open_step, path_value
from iris_assets.steps.stores import table_store

TREND_DAYS = 14


def labelled_flowers_path(settings: Settings) -> Path:
    """The training source retraining ingests: every labelled flower, as a Parquet file."""
    root = (
        Path(settings.landing_volume) if settings.is_databricks else settings.env_home / "landing"
    )
    return root / "labelled_flowers.parquet"


def labelled_source(settings: Settings) -> str:
    """The labelled-flowers file as ``iris_features`` names its source."""
    from iris_assets.steps.ingest import source_identity  # ingest imports this module

    return source_identity(str(labelled_flowers_path(settings)))


def evidence_metadata(evidence) -> dict:
    values = evidence.metadata()
    return {
        key: json_value(value) if isinstance(value, dict) else value
        for key, value in values.items()
    }


def table_version(store: TableStore, name: str) -> int:
    """``name``'s Delta version, or -1 before it exists."""
    return store.version(name) if store.exists(name) else -1


def scored_rows(store: TableStore, settings: Settings, day: str) -> pd.DataFrame:
    columns = [PRIMARY_KEY, *FEATURE_COLUMNS, "prediction", "model_version"]
    if not store.exists(settings.inference_table):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return store.read(
        settings.inference_table, columns, predicate=f"observed_date = {sql_string(day)}"
    )


EXPORT_ATTEMPTS = 5  # each a commit by another day's run in between: more is a storm, not a race


@dataclass(frozen=True)
class Export:
    """``labelled_flowers.parquet`` as written: the labels-table version it was read at."""

    path: Path
    rows: int
    sha256: str
    labels_version: int


def export_labelled_flowers(store: TableStore, settings: Settings) -> Export:
    """Write all labelled flowers (id, measurements, species) whole, for ``iris_features``:
    one row per flower (``latest_labels``), ordered by id, from one version of the labels table
    (no commit between the version read before and after: no time travel, which a Spark
    session without Delta's catalog lacks).

    Two days' runs at once each replace their own day, then write this file from the whole
    table: a slower run could put back a file read before the other's commit. The file is a
    function of the table version (same rows, same order, same bytes), and after writing it the
    labels table must still be at the version it was read from, else it is written again from
    the newer one; so the last writer always writes the complete file. Write-then-compare rather
    than a lock: it holds on Databricks too, where runs are tasks on different machines."""
    path = labelled_flowers_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [PRIMARY_KEY, *FEATURE_COLUMNS, LABEL, "observed_date"]
    for _ in range(EXPORT_ATTEMPTS):
        version = store.version(settings.labels_table)
        rows = store.read(settings.labels_table, columns)
        flowers = latest_labels(rows).drop(columns="observed_date")
        flowers = flowers.sort_values(PRIMARY_KEY, kind="stable").reset_index(drop=True)
        content = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(flowers, preserve_index=False), content)
        data = content.getvalue().to_pybytes()
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        if store.version(settings.labels_table) == version:
            break
    return Export(path, len(flowers), hashlib.sha256(data).hexdigest(), version)


def performance(step: Step) -> None:
    settings = step.settings
    day = step.config.get("date") or step.pipes.partition_key
    if not day:
        raise ValueError("model_performance is partitioned by day: give a partition (YYYY-MM-DD)")
    day = date.fromisoformat(day).isoformat()
    policy = DecayPolicy(**step.config.get("policy", {}))
    store = table_store(settings)
    for spec, name in (
        (LABELS_TABLE, settings.labels_table),
        (REJECTS_TABLE, settings.rejects_table),
        (PERFORMANCE_TABLE, settings.performance_table),
    ):
        spec.ensure(store, name)

    scored = scored_rows(store, settings, day)
    labels = read_labelled_day(settings.labels_landing_dir, day, scored)
    store.replace_partition(settings.labels_table, labels.labelled, "observed_date", day)
    store.replace_where(settings.rejects_table, labels.rejects, rejects_slice(STAGE, day))
    computed_at = pd.Timestamp(datetime.now(UTC))
    by_version = scored["model_version"].astype(str).value_counts().to_dict()
    rows = day_performance(day, by_version, labels.labelled, computed_at, policy.confidence)
    version = store.replace_partition(settings.performance_table, rows, "observed_date", day)
    for _ in range(EXPORT_ATTEMPTS):
        read_at = time.time()
        features_version = table_version(store, settings.feature_table)
        export = export_labelled_flowers(store, settings)
        evidence = label_evidence(store, settings, labelled_source(settings))
        # The evidence is reported with the file's hash: both from the same labels version, and
        # with the versions it read (no commit to either table in between).
        if store.version(settings.labels_table) == export.labels_version and (
            table_version(store, settings.feature_table) == features_version
        ):
            break
    for table in (settings.labels_table, settings.performance_table, settings.rejects_table):
        store.compact_if_fragmented(table)

    stored_labels = store.count(settings.labels_table, f"observed_date = {sql_string(day)}")
    stored_rejects = store.count(settings.rejects_table, rejects_slice(STAGE, day))
    step.log(
        f"{day}: {labels.landing_rows} label rows -> {stored_labels} labelled, "
        f"{labels.rows_rejected} rejected; {len(scored)} scored"
    )
    report_accounting(step, labels, stored_labels, stored_rejects)
    verdicts = report_live_accuracy(step, rows, policy)

    history = store.read(settings.performance_table)
    overall = rows.dropna(subset=["accuracy"])
    labelled_total = int(rows["labelled_rows"].sum())
    correct = int(labels.labelled["correct"].sum())
    step.pipes.report_asset_materialization(
        metadata={
            "table": settings.performance_table,
            "partition": day,
            "scored_rows": len(scored),
            "labelled_rows": labelled_total,
            "label_landing_rows": labels.landing_rows,
            "labels_rejected": labels.rows_rejected,
            "coverage": round(labelled_total / len(scored), 4) if len(scored) else 0.0,
            "accuracy": round(correct / labelled_total, 4) if labelled_total else None,
            "by_version": json_value(
                {r["model_version"]: _plain(r) for r in overall.to_dict("records")}
            ),
            "verdict": " | ".join(v.summary for v in verdicts) or "nothing scored on this day",
            "trend": md(trend_markdown(history, policy, TREND_DAYS)),
            "labelled_flowers_file": path_value(str(export.path)),
            "labelled_flowers": export.rows,
            LABELLED_SHA256: export.sha256,
            LABELS_VERSION: export.labels_version,
            FEATURES_VERSION: features_version,
            EVIDENCE_READ_AT: read_at,
            **evidence_metadata(evidence),
            "dagster/row_count": len(rows),
            "delta_version": version,
        },
        data_version=f"{day}-{labels.landing_rows}-{len(scored)}-{version}",
    )


def _plain(row: dict) -> dict:
    keep = ("labelled_rows", "scored_rows", "coverage", "accuracy", "accuracy_upper", "f1_macro")
    out = {}
    for key in (*keep, *(k for k in row if k.startswith("recall_"))):
        value = row[key]
        out[key] = None if value is None or pd.isna(value) else round(float(value), 4)
    return out


def report_accounting(step: Step, labels: LabelledDay, stored_labels: int, stored_rejects: int):
    row_rejects = stored_rejects - len(labels.files_quarantined)
    problems = []
    if stored_labels + row_rejects != labels.landing_rows:
        problems.append(
            f"{stored_labels} labelled + {row_rejects} rejected != {labels.landing_rows} "
            "label rows in the landing files"
        )
    step.pipes.report_asset_check(
        "labels_accounted",
        passed=not problems,
        severity="ERROR",
        metadata={
            "label_landing_rows": labels.landing_rows,
            "labelled_rows": stored_labels,
            "rows_rejected": row_rejects,
            "files_quarantined": json_value(
                [f"{f.path.name}: {f.problem}" for f in labels.files_quarantined]
            ),
            "reject_reasons": json_value(
                labels.rejects["reason"].value_counts().head(10).to_dict()
            ),
            "where": f"rejects table, stage = '{STAGE}', partition = '{labels.day}'",
            "problems": json_value(problems),
        },
    )


def report_live_accuracy(step: Step, rows: pd.DataFrame, policy: DecayPolicy):
    verdicts = [judge_decay(row, policy) for row in rows.to_dict("records")]
    decayed = [v for v in verdicts if v.decayed]
    step.pipes.report_asset_check(
        "live_accuracy",
        passed=not decayed,
        severity="WARN",
        metadata={
            "summary": " | ".join(v.summary for v in verdicts) or "nothing scored on this day",
            "judged": any(v.judged for v in verdicts),
            "min_accuracy": policy.min_accuracy,
            "margin": policy.margin,
            "min_labelled": policy.min_labelled,
            "confidence": policy.confidence,
            "rule": "decayed when the one-sided Wilson upper bound of accuracy is below "
            "min_accuracy - margin, on at least min_labelled labels",
        },
    )
    return verdicts


def main() -> None:
    with open_step() as step:
        performance(step)


if __name__ == "__main__":
    main()
