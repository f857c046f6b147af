"""Stopping the long-running processes tests start (dagster dev, dg dev, the MLflow UI)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process's own group (it was started with start_new_session), then SIGKILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
