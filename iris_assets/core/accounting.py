"""The accounting of a scored day: does what the tables hold add up to what landed?

A scored day is written in two commits, its inference partition and then its rejects slice, each
row carrying the scoring run's token (``schema.RUN_COLUMN``). What the tables hold for a day adds
up when:

- the partition was written by one run, and every rejects row of the day by that same run (a
  crash between the two commits, or two runs interleaving, leaves another run's rejects or none).
  The run that last replaced the partition is also read from the commit's tags
  (``TableStore.commit_tags``: ``iris.day`` and ``iris.run_id``), so a run that scored no rows,
  and left an empty partition, is still compared with the rejects;
- scored rows + rejects rows = the rows counted in the landing files + one rejects row per
  quarantined file.

``day_problems`` says what does not hold; the blocking ``inference_output_valid`` check reports
it, and ``landing_files_sensor`` asks for the day again while it does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.schema import RUN_COLUMN
from iris_assets.core.tables import TableStore, sql_string

STAGE = "inference"


@dataclass(frozen=True)
class DayAccount:
    """What the two tables hold for one day: rows per writing run."""

    day: str
    partition_runs: dict[str, int]  # run token -> scored rows
    rejects_runs: dict[str, int]  # run token -> rejects rows (file rows included)
    replaced_by: str | None = None  # run token of the last commit that replaced the partition

    @property
    def writers(self) -> set[str]:
        """The runs the partition stands for: its rows' runs, or the last replacing commit's."""
        if self.partition_runs:
            return set(self.partition_runs)
        return {self.replaced_by} if self.replaced_by else set()

    @property
    def scored(self) -> int:
        return sum(self.partition_runs.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejects_runs.values())


def _runs(rows: list[dict], key: str) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        run = "(none)" if row[RUN_COLUMN] is None else str(row[RUN_COLUMN])
        found.setdefault(str(row[key]), {})[run] = int(row["n"])
    return found


DAY_TAG = "iris.day"
RUN_TAG = "iris.run_id"
FILES_TAG = "iris.landing_fingerprint"


def partition_tags(day: str, run_id: str, fingerprint: str | None = None) -> dict[str, str]:
    """The tags a partition commit carries, read back by ``last_replacers``; ``fingerprint``
    is the day folder's (``LandingArea.fingerprint``) as the run found it."""
    tags = {DAY_TAG: day, RUN_TAG: run_id}
    if fingerprint:
        tags[FILES_TAG] = fingerprint
    return tags


def last_commits(store: TableStore, inference_table: str) -> dict[str, dict[str, str]]:
    """Day -> tags of the newest commit that replaced that day's partition."""
    found: dict[str, dict[str, str]] = {}
    for tags in store.commit_tags(inference_table):
        if DAY_TAG in tags and RUN_TAG in tags:
            found.setdefault(tags[DAY_TAG], tags)
    return found


def last_replacers(store: TableStore, inference_table: str) -> dict[str, str]:
    """Day -> run token of the newest commit that replaced that day's partition."""
    return {day: tags[RUN_TAG] for day, tags in last_commits(store, inference_table).items()}


def scored_fingerprints(store: TableStore, inference_table: str) -> dict[str, str]:
    """Day -> the landing fingerprint its partition was last scored from (days whose commit
    records one: older commits do not)."""
    return {
        day: tags[FILES_TAG]
        for day, tags in last_commits(store, inference_table).items()
        if FILES_TAG in tags
    }


def other_runs_rejects(day: str, writers: set[str]) -> str:
    """The day's rejects rows written by other runs than ``writers`` (the partition's)."""
    where = rejects_slice(STAGE, day)
    tokens = ", ".join(sql_string(w) for w in sorted(writers) if w != "(none)")
    if "(none)" in writers:  # rows from before run tokens stand for the partition too
        where += f" AND {RUN_COLUMN} IS NOT NULL"
        return where + (f" AND {RUN_COLUMN} NOT IN ({tokens})" if tokens else "")
    if tokens:
        return where + f" AND ({RUN_COLUMN} IS NULL OR {RUN_COLUMN} NOT IN ({tokens}))"
    return where


def read_accounts(
    store: TableStore, inference_table: str, rejects_table: str, day: str | None = None
) -> dict[str, DayAccount]:
    """Each day's account (every day in the tables, or only ``day``): two grouped counts."""
    where = None if day is None else f"observed_date = {sql_string(day)}"
    slice_ = f"stage = {sql_string(STAGE)}" if day is None else rejects_slice(STAGE, day)
    partitions = _runs(
        store.group_rows(inference_table, ["observed_date", RUN_COLUMN], where), "observed_date"
    )
    rejects = (
        _runs(store.group_rows(rejects_table, ["partition", RUN_COLUMN], slice_), "partition")
        if store.exists(rejects_table)
        else {}
    )
    replacers = last_replacers(store, inference_table)
    return {
        d: DayAccount(d, partitions.get(d, {}), rejects.get(d, {}), replacers.get(d))
        for d in sorted(set(partitions) | set(rejects))
    }


def run_problems(account: DayAccount, run_id: str | None = None) -> list[str]:
    """Runs that disagree: the partition's writer(s) against the rejects' (and ``run_id``)."""
    problems = []
    writers = account.writers
    if len(writers) > 1:
        problems.append(f"the partition holds rows of {len(writers)} runs: {sorted(writers)}")
    expected = {run_id} if run_id is not None else writers
    if run_id is not None and writers and writers != expected:
        problems.append(f"the partition was written by {sorted(writers)}, not by this run")
    foreign = sorted(set(account.rejects_runs) - expected) if expected else []
    if foreign:
        problems.append(
            f"the rejects of {account.day} were written by another run ({', '.join(foreign)}) "
            "than its partition: a run stopped between the two commits, or two runs interleaved"
        )
    return problems


def day_problems(
    account: DayAccount, landing_rows: int, quarantined_files: int, run_id: str | None = None
) -> list[str]:
    """Every way the day's tables fail to account for its landing rows (empty when they do)."""
    problems = run_problems(account, run_id)
    row_rejects = account.rejected - quarantined_files
    if account.scored + row_rejects != landing_rows:
        problems.append(
            f"{account.scored} scored + {row_rejects} rejected != {landing_rows} landing rows"
        )
    return problems
