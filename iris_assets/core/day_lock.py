"""One scoring run per day at a time: a lock held from reading the day's files to its last commit.

Two runs of the same day at once would otherwise interleave their two commits (partition,
rejects) and leave one run's partition with the other's rejects. With the lock the second run
waits for the first and then scores the day itself, so the day ends old-or-new, never mixed; a
run that waits longer than its timeout fails with a message and changes nothing.

The lock is an ``flock`` on a file under the environment's home, so it holds between processes of
one machine (local runs, the sensor's repair runs, a test's threads). Runs on different machines
(Databricks tasks, each with its own disk) are not serialised by it: there, Delta's optimistic
concurrency fails a commit that raced another on the same files, and the run token of
``core.accounting`` makes the check of a run whose day was interleaved fail; the day stays mixed
until it is scored again (docs/databricks.md, "Two runs of one day at once").
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_WAIT_SECONDS = 900.0


class DayBusy(RuntimeError):
    """Another run held the day's lock for longer than this run would wait."""


def lock_path(home: Path, day: str) -> Path:
    return Path(home) / "locks" / f"score-{day}.lock"


@contextmanager
def day_lock(home: Path, day: str, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Iterator[None]:
    """Hold the day's lock; wait up to ``wait_seconds`` for a run that holds it."""
    path = lock_path(home, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DayBusy(
                        f"another run is scoring {day} (it holds {path}) and did not finish "
                        f"within {wait_seconds:g}s: this run changed nothing; run the day again "
                        "once that run has finished"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def day_is_locked(home: Path, day: str) -> bool:
    """True while some run holds the day's lock (the sensor leaves such a day alone)."""
    path = lock_path(home, day)
    if not path.exists():
        return False
    handle = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False
