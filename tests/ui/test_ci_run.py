"""`.ci/run` stops with a clear message, before deleting anything, when venv is unavailable."""

import shutil
import subprocess

from tests.test_definitions import ROOT


def test_ci_run_without_venv_says_what_to_install_and_touches_nothing(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", checkout / ".ci" / "run")
    (checkout / ".venv").mkdir()  # .ci/run would delete it: it must stop before
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    python3 = fake_bin / "python3"  # Debian's python3 without python3-venv: no ensurepip
    python3.write_text('#!/bin/sh\necho "No module named ensurepip" >&2\nexit 1\n')
    python3.chmod(0o755)
    make = fake_bin / "make"  # must never be reached
    make.write_text(f"#!/bin/sh\ntouch {tmp_path}/make-ran\n")
    make.chmod(0o755)
    out = subprocess.run(
        ["/bin/bash", str(checkout / ".ci" / "run")],
        env={"PATH": f"{fake_bin}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "python3 -m venv is unavailable (apt-get install -y python3-venv" in out.stderr
    assert (checkout / ".venv").is_dir() and not (tmp_path / "make-ran").exists()
