"""The suite runs the same started from a terminal or in the background (tests/conftest.py).

A background job starts with SIGINT ignored, and Dagster copies SIGINT's disposition onto
SIGTERM when it executes a run: the processes the tests start afterwards ignored SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import ROOT

# What Dagster does in a process that executes a run, then what every terminate test relies on.
INNER_TEST = """
import signal
import subprocess


def test_a_started_process_still_ends_on_sigterm():
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
    child = subprocess.Popen(["sleep", "60"])
    child.terminate()
    try:
        assert child.wait(timeout=5) == -signal.SIGTERM  # at once when SIGTERM is not ignored
    finally:
        child.kill()
"""


def run_in_the_background(folder, *plugin: str) -> subprocess.CompletedProcess:
    """An inner pytest run started as a shell starts a background job: SIGINT ignored."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_inner.py").write_text(INNER_TEST)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_inner.py"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dagster_still_copies_sigint_onto_sigterm():
    """What the inner test imitates; if Dagster stops doing it, the conftest's fix can go."""
    from dagster._utils.interrupts import setup_interrupt_handlers

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        setup_interrupt_handlers()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_in_the_background_the_suites_processes_still_end_on_sigterm(tmp_path):
    # The control: without the suite's conftest the started process ignores SIGTERM.
    control = run_in_the_background(tmp_path)
    assert control.returncode == 1 and "TimeoutExpired" in control.stdout, control.stdout
    fixed = run_in_the_background(tmp_path, "-p", "tests.conftest")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
