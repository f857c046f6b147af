"""The rows a model is judged on: the held-out split of the feature table *as it was trained*.

Training tags each model version with the feature-table version it read
(``feature_table_version``). Evaluation reads the test split at that version (Delta time travel),
so challenger and champion are scored on the same unseen rows, whatever was ingested since: a
flower added or moved later can never be one the challenger was trained on.

No held-out row is a copy of a training row: a test row whose measurements equal a training
row's at that version (Iris flowers 102 and 143; a correction that made a test flower equal a
training one; another source's identical flower) is left out of the held-out set, and how many
were left out is the frame's ``attrs[COPIES_EXCLUDED]`` (evaluation's metadata reports it).
When a champion is compared, the rows it was trained on (the train side at *its* version, by id
or by measurements) are left out too (``without_rows_trained_at``), for both models.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from iris_assets.core.schema import FEATURE_COLUMNS, PRIMARY_KEY, TEST, TRAIN
from iris_assets.core.tables import sql_string

FEATURE_VERSION_TAG = "feature_table_version"
COPIES_EXCLUDED = "held_out_copies_excluded"
CHAMPION_TRAINED_EXCLUDED = "held_out_champion_trained_excluded"


class HeldOutError(ValueError):
    """The model's tags do not say which feature-table version it was trained on."""


def trained_on_version(tags: Mapping[str, str], label: str = "the challenger") -> int:
    """The feature-table version a model version was trained on, from its tags."""
    value = tags.get(FEATURE_VERSION_TAG)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise HeldOutError(
            f"{label} has no usable {FEATURE_VERSION_TAG} tag ({value!r}), so the rows it was "
            "trained on are unknown: retrain it (materialize challenger_model)"
        ) from None


def held_out_rows_at(store, table: str, version: int) -> pd.DataFrame:
    """The test split of ``table`` at ``version``, in id order, without copies of training rows."""
    test = store.read(
        table, predicate=f"split = {sql_string(TEST)}", order_by=PRIMARY_KEY, version=version
    )
    measurements = list(FEATURE_COLUMNS)
    trained = store.read(
        table, measurements, predicate=f"split = {sql_string(TRAIN)}", version=version
    ).drop_duplicates()
    copies = (
        test[measurements].merge(trained, how="left", indicator=True)["_merge"].eq("both")
    ).to_numpy()
    kept = test[~copies].reset_index(drop=True)
    kept.attrs[COPIES_EXCLUDED] = int(copies.sum())
    return kept


def without_rows_trained_at(
    store, table: str, held_out: pd.DataFrame, version: int
) -> pd.DataFrame:
    """``held_out`` without the flowers that were on the train side of ``table`` at ``version``
    (the version the champion was trained on): by id, or by identical measurements.

    The challenger's held-out split can still hold a row the champion trained on: a train flower
    whose correction hashes to test keeps its side, and if it is dropped and re-added it lands on
    test. Scoring the champion on it would flatter the champion. How many were left out is the
    frame's ``attrs[CHAMPION_TRAINED_EXCLUDED]``."""
    measurements = list(FEATURE_COLUMNS)
    trained = store.read(
        table,
        [PRIMARY_KEY, *measurements],
        predicate=f"split = {sql_string(TRAIN)}",
        version=version,
    )
    by_id = held_out[PRIMARY_KEY].isin(set(trained[PRIMARY_KEY])).to_numpy()
    by_copy = (
        held_out[measurements]
        .merge(trained[measurements].drop_duplicates(), how="left", indicator=True)["_merge"]
        .eq("both")
        .to_numpy()
    )
    excluded = by_id | by_copy
    kept = held_out[~excluded].reset_index(drop=True)
    kept.attrs = {**held_out.attrs, CHAMPION_TRAINED_EXCLUDED: int(excluded.sum())}
    return kept
