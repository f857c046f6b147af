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
    searched (a collector's file holds ascending ids, so most chunks meet no earlier run); one
    that does searches only the chunk's ids inside its range, found in the chunk's ids sorted.

    Runs are merged as a binary counter carries: a new run absorbs the run before it until that
    one is at least twice its size. So each run is at least twice the next, there are at most
    about log2(ids) runs to search, and every id is copied about log2(chunks) times, whatever
    order the ids arrive in (a day of many files, a stray id far away in every chunk). A run
    that falls whole before, after or in a gap of the other is put there without sorting
    (collectors' files of ascending ids, in any order). Merging every run every eighth chunk
    sorted a 10M-row day's ids again and again (0.45 s of the step); merging only overlapping
    runs let a stray id in every chunk make each lookup search every run (10M ids in 4,000
    chunks: 44 s).
    """

    def __init__(self):
        self._runs: list[np.ndarray] = []  # each at least twice the size of the next

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def contains(self, raw_ids: pd.Series) -> np.ndarray:
        """Which raw ids (any dtype, as they arrived) name an id seen before."""
        # Parsed as validation parses them: exact to int64, never through a float.
        parsed, whole = parse_ids(raw_ids.reset_index(drop=True))
        ids = parsed[whole]
        found = np.zeros(len(ids), dtype=bool)
        meeting = []
        if len(ids):
            low, high = ids.min(), ids.max()
            meeting = [run for run in self._runs if run[0] <= high and run[-1] >= low]
        if meeting:
            # The chunk's ids in order once, so that each run finds the ids in its range by two
            # binary searches: a run costs what it holds of the chunk, not a pass over the chunk
            # (many small runs meeting random ids), and its lookups walk it in order.
            order = np.argsort(ids, kind="stable")
            ordered = ids[order]
            for run in meeting:
                first = np.searchsorted(ordered, run[0], side="left")
                last = np.searchsorted(ordered, run[-1], side="right")
                if first == last:
                    continue
                candidates = ordered[first:last]
                positions = np.minimum(np.searchsorted(run, candidates), len(run) - 1)
                found[order[first:last]] |= run[positions] == candidates
        result = np.zeros(len(raw_ids), dtype=bool)
        result[np.flatnonzero(whole)] = found
        return result

    def add(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        # "stable" is timsort for int64: linear on ascending ids, and a merge of sorted runs.
        run = np.sort(np.asarray(ids, dtype=np.int64), kind="stable")
        while self._runs and len(self._runs[-1]) < 2 * len(run):
            run = _merged(self._runs.pop(), run)
        self._runs.append(run)


def _merged(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sorted runs as one: where one falls whole between two ids of the other (before,
    after or in a gap: files of ascending ids, in any order), it is put there without sorting."""
    if len(a) < len(b):
        a, b = b, a
    at = int(np.searchsorted(a, b[0], side="right"))
    if at == len(a) or b[-1] <= a[at]:
        return np.concatenate([a[:at], b, a[at:]])
    return np.sort(np.concatenate([a, b]), kind="stable")


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
