"""Whole-source ingest guards: which rows an ingest may delete, and who may take a flower over.

An ingest takes its source whole (rows the source held and no longer offers leave the feature
table), so a source that suddenly offers nothing - a file truncated mid-rewrite, every row broken
by a locale's decimal comma - would silently delete what it delivered. The rules here keep a
retraction deliberate:

- A source that offers no valid row while the table holds rows from it, or whose rows would
  remove more than ``MAX_REMOVED_SHARE`` of what it holds and more than ``MAX_REMOVED_ROWS``
  rows, is refused before the feature table is touched, unless the retraction is deliberate:
  the run says ``retract_missing: true``, or the source is the labelled-flowers file that
  ``model_performance`` rewrites from the labels landing area (deleting a label batch there is
  the deliberate act).
- A flower another source holds with the same content moves to the offering source only when
  its holder is a file that no longer exists (renamed or deleted); never from the bundled Iris
  or from a file still there, so emptying one source never deletes flowers another delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from iris_assets.core.schema import PRIMARY_KEY
from iris_assets.core.source import BUNDLED_SOURCE

MAX_REMOVED_SHARE = 0.5
MAX_REMOVED_ROWS = 5


class RetractionRefused(RuntimeError):
    """The ingest would delete rows its source held without a deliberate retraction."""


@dataclass(frozen=True)
class Removal:
    """The rows of ``source`` an ingest would delete: ``removed`` of the ``held`` it holds."""

    source: str
    held: int
    offered: int
    removed: int
    sample: tuple[int, ...]


def source_is_gone(source: str) -> bool:
    """True for a file source whose path no longer exists; the bundled Iris is never gone."""
    return source != BUNDLED_SOURCE and not Path(source).exists()


def held_elsewhere(held: pd.DataFrame, incoming: pd.DataFrame, source: str) -> pd.Series:
    """Per incoming row: True when another source still present holds its id (same content).

    Such a row is left out of the MERGE: the flower stays its holder's, so this source's
    later retractions never reach it. Rows with other content were refused before
    (``core.identity.foreign_conflicts``).
    """
    owners = incoming[PRIMARY_KEY].map(held.set_index(PRIMARY_KEY)["source"])
    foreign = owners.notna() & (owners != source)
    stays = foreign & ~owners.where(foreign, source).map(source_is_gone).astype(bool)
    return stays.astype(bool)


def planned_removal(held: pd.DataFrame, offered: pd.DataFrame, source: str) -> Removal:
    """The rows of ``source`` in ``held`` whose id ``offered`` lacks (the MERGE deletes them)."""
    own = held.loc[held["source"] == source, PRIMARY_KEY]
    gone = own[~own.isin(set(offered[PRIMARY_KEY]))]
    return Removal(
        source=source,
        held=len(own),
        offered=len(offered),
        removed=len(gone),
        sample=tuple(int(i) for i in sorted(gone)[:5]),
    )


def refuse_unless_deliberate(removal: Removal, rejected: int, deliberate: bool) -> None:
    """Raise RetractionRefused when ``removal`` is not a retraction someone asked for."""
    if deliberate or not removal.removed:
        return
    emptied = removal.offered == 0
    too_many = (
        removal.removed > MAX_REMOVED_SHARE * removal.held and removal.removed > MAX_REMOVED_ROWS
    )
    if not (emptied or too_many):
        return
    if emptied:
        what = f"offers no valid row ({rejected} rejected)" if rejected else "has no rows"
    else:
        what = f"offers {removal.offered} valid rows ({rejected} rejected)"
    raise RetractionRefused(
        f"refused to ingest {removal.source}: it {what}, so taking it whole would delete "
        f"{removal.removed} of the {removal.held} flowers it delivered (flower_id "
        f"{', '.join(map(str, removal.sample))}{', ...' if removal.removed > 5 else ''}); "
        "nothing was written to the feature table. If the file is truncated or being "
        "rewritten, fix it and re-run (the rejects table, stage 'ingest', says why each "
        "rejected row was refused); to retract these flowers deliberately, re-run with "
        "retract_missing: true in the iris_features config."
    )
