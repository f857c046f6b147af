"""Run keys that count a day's requests and are never one the instance has already used.

The daemon skips a run request whose key a run already carries, and a label or landing folder
can return to an earlier fingerprint (a retracting delete), so the sensors' keys count each day's
requests. The count lives in the sensor's cursor; a reset cursor starts it again at 1, so the
count is moved past every key a run of this instance already holds.
"""

from __future__ import annotations

import dagster as dg

RUN_KEY_TAG = "dagster/run_key"


def unused_run_key(instance: dg.DagsterInstance, prefix: str, count: int, fingerprint: str):
    """(key, count): ``{prefix}-{count}-{fingerprint}`` with ``count`` raised until no run of
    ``instance`` carries the key."""
    while True:
        key = f"{prefix}-{count}-{fingerprint}"
        if not instance.get_run_ids(dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1):
            return key, count
        count += 1
