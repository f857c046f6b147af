"""Failpoints: named places where a step can be made to die, to prove what a crash leaves behind.

``IRIS_FAILPOINT=<name>`` in a step's environment kills the step with SIGKILL when it reaches
``failpoint("<name>")``: no cleanup, no exception handler, as a lost machine would. Unset (the
normal case) it costs one dictionary lookup. The fault tests in ``tests/`` are its only users.

The places: ``ingest:before_merge`` and ``ingest:merged`` (around the feature MERGE), and
``score:partition_committed`` (a scored day between its partition commit and its rejects commit,
on both engines).
"""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "IRIS_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
