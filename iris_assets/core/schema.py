"""Data contracts: the columns, types and value rules of every table the pipeline owns.

One definition is shared by ingestion, training, scoring, serving and the checks, so a column
renamed here is renamed everywhere. Arrow schemas are the source of truth for the Delta tables
(NOT NULL comes from ``nullable=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

FEATURE_COLUMNS: tuple[str, ...] = (
    "sepal_length_cm",
    "sepal_width_cm",
    "petal_length_cm",
    "petal_width_cm",
)
SPECIES_NAMES: tuple[str, ...] = ("setosa", "versicolor", "virginica")
PRIMARY_KEY = "flower_id"
LABEL = "species"

# A measurement outside (0, MAX_MEASUREMENT_CM] is not an iris flower: the largest recorded
# petal is under 7 cm and sepals under 8 cm; 50 cm leaves room for unusual specimens.
MAX_MEASUREMENT_CM = 50.0

TRAIN, TEST = "train", "test"
# What makes two feature rows the same flower; ``source`` and ``ingested_at`` are bookkeeping.
FEATURE_DATA_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, LABEL, "species_name", "split")

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

FEATURE_TABLE_SCHEMA = pa.schema(
    [
        pa.field(PRIMARY_KEY, pa.int64(), nullable=False),
        *(pa.field(c, pa.float64(), nullable=False) for c in FEATURE_COLUMNS),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field("species_name", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        # Where the row came from: only that source may change it (``steps/ingest.py``).
        pa.field("source", pa.string(), nullable=False),
        pa.field("ingested_at", UTC_TIMESTAMP, nullable=False),
    ]
)

# What collectors drop in the landing area, one batch file at a time. Read loosely (any column may
# be missing, extra, null or text); validation decides what is scoreable.
LANDING_COLUMNS: tuple[str, ...] = (PRIMARY_KEY, *FEATURE_COLUMNS, "observed_at")

INFERENCE_TABLE_SCHEMA = pa.schema(
    [
        pa.field(PRIMARY_KEY, pa.int64(), nullable=False),
        pa.field("observed_date", pa.string(), nullable=False),
        pa.field("observed_at", UTC_TIMESTAMP, nullable=True),
        *(pa.field(c, pa.float64(), nullable=False) for c in FEATURE_COLUMNS),
        pa.field("prediction", pa.int64(), nullable=False),
        pa.field("species_name", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("predicted_at", UTC_TIMESTAMP, nullable=False),
        # The scoring run that wrote the row (``RUN_COLUMN``); nullable so older tables gain it.
        pa.field("run_id", pa.string(), nullable=True),
    ]
)

# Both commits of a scored day (its partition, then its rejects slice) carry the run's token here:
# a day whose partition and rejects disagree on it was cut between the two (``core.accounting``).
RUN_COLUMN = "run_id"

# Quarantine for rows that failed validation, whichever stage found them. ``partition`` is the
# observed date for inference and the source name for ingestion, so a re-run replaces its own rows.
REJECTS_TABLE_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("partition", pa.string(), nullable=False),
        pa.field(PRIMARY_KEY, pa.string(), nullable=True),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
        pa.field("rejected_at", UTC_TIMESTAMP, nullable=False),
        pa.field("run_id", pa.string(), nullable=True),
    ]
)


def species_name(label: int) -> str:
    return SPECIES_NAMES[int(label)]


@dataclass(frozen=True)
class TableSpec:
    """How a table is created: its schema plus the layout every table store applies."""

    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    primary_key: str | None = None
    constraints: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)

    def ensure(self, store, name: str, properties: Mapping[str, str] | None = None) -> None:
        """Create ``name`` in ``store`` (any ``TableStore``) if missing.

        ``properties`` are added to the spec's own, on creation only (e.g. the split fraction).
        """
        store.ensure_table(
            name,
            self.schema,
            partition_by=list(self.partition_by) or None,
            constraints=dict(self.constraints) or None,
            primary_key=self.primary_key,
            properties={**self.properties, **(properties or {})} or None,
        )


FEATURE_TABLE = TableSpec(
    FEATURE_TABLE_SCHEMA,
    primary_key=PRIMARY_KEY,
    constraints={
        "species_known": "species >= 0 AND species <= 2",
        "measurements_positive": " AND ".join(f"{c} > 0" for c in FEATURE_COLUMNS),
    },
)
# Change Data Feed lets downstream consumers read what each daily re-run replaced.
INFERENCE_TABLE = TableSpec(
    INFERENCE_TABLE_SCHEMA,
    partition_by=("observed_date",),
    properties={"delta.enableChangeDataFeed": "true"},
)
REJECTS_TABLE = TableSpec(REJECTS_TABLE_SCHEMA, partition_by=("stage",))
