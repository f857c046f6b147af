"""Batch scoring: landing rows -> inference rows and quarantined rows, batch by batch.

``score_batch`` is the one definition of validate-then-predict: it scores each chunk of a day
locally (``score_stream``) and each Arrow batch of a Spark ``mapInPandas`` on Databricks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iris_assets.core.schema import FEATURE_COLUMNS, INFERENCE_TABLE_SCHEMA, PRIMARY_KEY
from iris_assets.core.scoring import predict_frame
from iris_assets.core.validation import Describe, parse_ids, validate_measurements


@dataclass(frozen=True)
class ScoredBatch:
    scored: pd.DataFrame  # rows of the inference table
    rejects: pd.DataFrame  # flower_id (raw text), reason, record

    @property
    def rows(self) -> int:
        return len(self.scored) + len(self.rejects)


def score_batch(
    raw: pd.DataFrame,
    model,
    *,
    day: str,
    model_name: str,
    model_version: str,
    predicted_at: pd.Timestamp,
    seen_column: str | None = None,
    run_id: str | None = None,
    describe: Describe | None = None,
    seen: np.ndarray | None = None,
) -> ScoredBatch:
    """Validate and score one batch; ``describe`` spells the rejected rows (the raw id and
    record: ``core.validation.describe_rows`` unless the caller knows better)."""
    checked = validate_measurements(
        raw,
        passthrough=["observed_at"],
        seen_column=seen_column,
        observed_on=day,
        describe=describe,
        seen=seen,
    )
    valid = checked.valid
    predictions = predict_frame(model, valid)
    observed_at = (
        # ISO8601 parses each value on its own: a batch may mix the spellings of two files.
        pd.to_datetime(valid["observed_at"], utc=True, errors="coerce", format="ISO8601")
        if "observed_at" in valid
        else pd.Series(pd.NaT, index=valid.index, dtype="datetime64[us, UTC]")
    )

    def constant(value: str) -> pd.Categorical:
        return pd.Categorical.from_codes(np.zeros(len(valid), dtype=np.int8), categories=[value])

    scored = pd.DataFrame(
        {
            PRIMARY_KEY: valid[PRIMARY_KEY].astype("int64"),
            "observed_date": constant(day),
            "observed_at": observed_at,
            **{c: valid[c] for c in FEATURE_COLUMNS},
            **{c: predictions[c] for c in predictions.columns},
            "model_name": constant(model_name),
            "model_version": constant(str(model_version)),
            "predicted_at": predicted_at,
            "run_id": constant(run_id) if run_id is not None else None,
        },
        index=valid.index,
    )[INFERENCE_TABLE_SCHEMA.names]
    return ScoredBatch(scored=scored, rejects=checked.rejects)


SEEN = "_iris_seen"


class SeenIds:
    """The flower_ids already scored in this partition, for duplicates across chunks.

    Sorted int64 runs searched with ``searchsorted``: 10 million ids take 80 MB, where a Python
    set would take over half a gigabyte. A run whose range does not meet a chunk's ids is not
    searched (a collector's file holds ascending ids, so most chunks meet no earlier run). So
    only runs whose ranges overlap are merged: a new run that would overlap ``max_runs`` runs or
    more is merged with them, and runs that lie apart stay apart, so ascending ids are sorted
    once (merging every run every few chunks sorted the day's ids again and again: 0.45 s of a
    10M-row step).
    """

    def __init__(self, max_runs: int = 8):
        self._runs: list[np.ndarray] = []
        self._max_runs = max_runs

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def contains(self, raw_ids: pd.Series) -> np.ndarray:
        """Which raw ids (any dtype, as they arrived) name an id seen before."""
        # Parsed as validation parses them: exact to int64, never through a float.
        parsed, whole = parse_ids(raw_ids.reset_index(drop=True))
        ids = parsed[whole]
        found = np.zeros(len(ids), dtype=bool)
        if len(ids):
            low, high = ids.min(), ids.max()
            for run in self._runs:
                if run[0] > high or run[-1] < low:
                    continue
                inside = np.flatnonzero((ids >= run[0]) & (ids <= run[-1]))
                candidates = ids[inside]
                positions = np.minimum(np.searchsorted(run, candidates), len(run) - 1)
                found[inside] |= run[positions] == candidates
        result = np.zeros(len(raw_ids), dtype=bool)
        result[np.flatnonzero(whole)] = found
        return result

    def add(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        # "stable" is timsort for int64: linear on ascending ids, and a merge of sorted runs.
        run = np.sort(np.asarray(ids, dtype=np.int64), kind="stable")
        low, high = run[0], run[-1]
        overlapping = [r for r in self._runs if r[0] <= high and r[-1] >= low]
        if len(overlapping) < self._max_runs:
            self._runs.append(run)
            return
        apart = [r for r in self._runs if r[-1] < low or r[0] > high]
        self._runs = [*apart, np.sort(np.concatenate([*overlapping, run]), kind="stable")]


def score_stream(
    chunks: Iterable[pd.DataFrame],
    model,
    *,
    day: str,
    model_name: str,
    model_version: str,
    predicted_at: pd.Timestamp,
    run_id: str | None = None,
) -> Iterator[ScoredBatch]:
    """Score a partition chunk by chunk; an id already scored in an earlier chunk is a duplicate."""
    seen = SeenIds()
    for raw in chunks:
        # An array, not a column: a file may have a column of any name (even ``_iris_seen``).
        earlier = None
        if PRIMARY_KEY in raw.columns and len(seen):
            earlier = seen.contains(raw[PRIMARY_KEY])
        batch = score_batch(
            raw,
            model,
            day=day,
            model_name=model_name,
            model_version=model_version,
            predicted_at=predicted_at,
            seen=earlier,
            run_id=run_id,
        )
        seen.add(batch.scored[PRIMARY_KEY].to_numpy())
        yield batch
