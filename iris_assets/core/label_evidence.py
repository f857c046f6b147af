"""The evidence of the two label triggers of ``retraining_sensor``, read from the tables.

- **new**: labelled flowers whose id ``iris_features`` does not hold yet;
- **retracted / corrected**: flowers ``iris_features`` holds from the labelled-flowers source
  that the labels table no longer has, or has with another species.

It is computed where the tables are: by the ``model_performance`` step (locally or on
serverless), right after it rewrote the labels table and ``labelled_flowers.parquet``, and
reported in that materialization's metadata (``LabelEvidence.metadata``: counts, the evidence
hashes and a few ids, never the whole id list). The sensor reads it back from Dagster's event log
(``from_metadata``) on both engines. The hashes are the evidence keys the sensor remembers in its
cursor. Each new flower's piece names its id, its species and the label batch it came from
(``label_file``), so the same flowers landed again in a new batch after their retraction was
retrained are new evidence, while the same report seen twice is the same key. Each stale
flower's piece names its id, the species held and now, and when its row was written
(``ingested_at``), so a label corrected back, or retracted again after it was re-added, is new
evidence. The report also names the content hash of the ``labelled_flowers.parquet`` it wrote
(``LABELLED_SHA256``): an ingest took this evidence in only when it read exactly that file
(its ``source_sha256``), and the labels- and feature-table versions it was computed against
with the time it began reading them (``freshness``): two days' runs at once can store their
reports in the other order than they read the tables.

This module imports pandas only inside functions: the sensor that reads the metadata runs in the
orchestrator, whose definitions must import light.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SAMPLE = 10  # ids named in the metadata per kind; the counts and hashes carry the rest

NEW = "new_labelled_flowers"
NEW_HASH = "new_labels_hash"
RETRACTED = "retracted_labelled_flowers"
CORRECTED = "corrected_labelled_flowers"
STALE_HASH = "stale_labels_hash"
HELD = "labelled_flowers_held"
SAMPLES = "label_evidence_sample"
LABELLED_SHA256 = "labelled_flowers_sha256"  # on the report: the file it wrote
SOURCE_SHA256 = "source_sha256"  # on an iris_features materialization: the file it read
KEYS = (NEW, NEW_HASH, RETRACTED, CORRECTED, STALE_HASH, HELD)
# On the report: what its evidence was computed against, so the sensor can take the freshest
# of two reports stored out of order (``freshness``).
LABELS_VERSION = "evidence_labels_version"  # the labels table's version it read
FEATURES_VERSION = "evidence_features_version"  # iris_features' version it read (-1: none yet)
EVIDENCE_READ_AT = "evidence_read_at"  # when it began reading them (UTC epoch seconds)


def freshness(metadata: Mapping[str, Any]) -> tuple[int, int] | None:
    """(labels version, features version) a report's evidence was computed against, or None
    for a report of an earlier release. Both tables only move forward, so of two reports of
    the same tables the higher pair read the newer state (the labels first: a missed label
    waits for the next report, a retrain on flowers already ingested costs one run)."""
    if LABELS_VERSION not in metadata or FEATURES_VERSION not in metadata:
        return None
    labels, features = _whole(metadata[LABELS_VERSION]), _whole(metadata[FEATURES_VERSION])
    return None if labels is None or features is None else (labels, features)


def read_at(metadata: Mapping[str, Any]) -> float | None:
    """When a report began reading the tables (epoch seconds), or None (an earlier release, or
    a value that is no time)."""
    value = metadata.get(EVIDENCE_READ_AT)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(value) -> int | None:
    """``value`` as an int when it is one (a report's metadata can be posted by anyone, through
    Dagster's REST API or the UI), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LabelEvidence:
    new: tuple[int, ...] = ()  # sorted ids
    new_pieces: tuple[str, ...] = ()  # per new id: id, species and label batch
    retracted: dict[int, str] = field(default_factory=dict)  # id -> its piece of evidence
    corrected: dict[int, str] = field(default_factory=dict)
    held: int = 0  # flowers iris_features holds from the labelled source

    @property
    def new_hash(self) -> str:
        return _digest(",".join(self.new_pieces or map(str, self.new))) if self.new else ""

    @property
    def stale_hash(self) -> str:
        pieces = [
            *(self.retracted[i] for i in sorted(self.retracted)),
            *(self.corrected[i] for i in sorted(self.corrected)),
        ]
        return _digest(",".join(pieces)) if pieces else ""

    def metadata(self) -> dict[str, Any]:
        """Plain values for the materialization: counts, hashes, the first ``SAMPLE`` ids."""
        return {
            NEW: len(self.new),
            NEW_HASH: self.new_hash,
            RETRACTED: len(self.retracted),
            CORRECTED: len(self.corrected),
            STALE_HASH: self.stale_hash,
            HELD: self.held,
            SAMPLES: {
                "new": list(self.new[:SAMPLE]),
                "retracted": sorted(self.retracted)[:SAMPLE],
                "corrected": sorted(self.corrected)[:SAMPLE],
            },
        }


@dataclass(frozen=True)
class ReportedEvidence:
    """What a ``model_performance`` materialization reported (``LabelEvidence.metadata``)."""

    new: int
    new_hash: str
    retracted: int
    corrected: int
    stale_hash: str
    held: int

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ReportedEvidence | None:
        """None for a materialization written before the step reported evidence, or by someone
        else (a runless report from the UI or the REST API) without it."""
        if any(key not in metadata for key in KEYS):
            return None
        counts = {key: _whole(metadata[key]) for key in (NEW, RETRACTED, CORRECTED, HELD)}
        hashes = (metadata[NEW_HASH], metadata[STALE_HASH])
        if any(c is None or c < 0 for c in counts.values()) or not all(
            isinstance(h, str) for h in hashes
        ):
            return None  # not what the step writes: no evidence, never an exception
        return cls(
            new=counts[NEW],
            new_hash=hashes[0],
            retracted=counts[RETRACTED],
            corrected=counts[CORRECTED],
            stale_hash=hashes[1],
            held=counts[HELD],
        )


def _utc(stamp):
    # Spark's toPandas gives the session's (UTC) wall time without a zone, deltalake a UTC stamp:
    # the same instant must give the same evidence on both engines.
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def label_evidence(store, settings, labelled_source: str) -> LabelEvidence:
    """The evidence in the tables now; ``labelled_source`` is the labelled-flowers file's
    ``source`` in ``iris_features`` (``steps.ingest.source_identity`` of its path)."""
    import pandas as pd

    from iris_assets.core.labels import latest_labels
    from iris_assets.core.schema import LABEL, PRIMARY_KEY
    from iris_assets.core.tables import sql_string

    if not store.exists(settings.labels_table):
        return LabelEvidence()
    # A flower labelled on several days answers with its latest label, as in the exported file.
    columns = [PRIMARY_KEY, LABEL, "observed_date", "label_file"]
    labels = latest_labels(store.read(settings.labels_table, columns))
    now = dict(zip(labels[PRIMARY_KEY].astype(int), labels[LABEL].astype(int), strict=True))
    batch = dict(
        zip(labels[PRIMARY_KEY].astype(int), labels["label_file"].astype(str), strict=True)
    )
    held_ids: set[int] = set()
    if store.exists(settings.feature_table):
        held_ids = {int(i) for i in store.read(settings.feature_table, [PRIMARY_KEY])[PRIMARY_KEY]}
    new = tuple(sorted(set(now) - held_ids))
    pieces = tuple(f"n{i}:{now[i]}@{batch[i]}" for i in new)
    if not store.exists(settings.feature_table):
        return LabelEvidence(new=new, new_pieces=pieces)
    held = store.read(
        settings.feature_table,
        [PRIMARY_KEY, LABEL, "ingested_at"],
        f"source = {sql_string(labelled_source)}",
    )
    retracted, corrected = {}, {}
    for flower, species, written in zip(
        held[PRIMARY_KEY].astype(int), held[LABEL].astype(int), held["ingested_at"], strict=True
    ):
        stamp = _utc(pd.Timestamp(written)).isoformat()
        if flower not in now:
            retracted[flower] = f"r{flower}:{species}@{stamp}"
        elif now[flower] != species:
            corrected[flower] = f"c{flower}:{species}>{now[flower]}@{stamp}"
    return LabelEvidence(
        new=new,
        new_pieces=pieces,
        retracted=retracted,
        corrected=corrected,
        held=len(held),
    )
