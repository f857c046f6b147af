"""Without a browser the UI test says so: a skip with the install hint, but a failure under CI."""

import os
import subprocess
import sys

import pytest

from tests.test_definitions import ROOT
from tests.ui.browser import CI_VARIABLES

BROWSER_TEST = "tests/ui/test_browser.py"


def run_browser_test(tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("CHROMIUM", *CI_VARIABLES)}
    environment.update(env)
    # Without the project's warning filters: pytest imports Dagster to resolve them (its warning
    # classes), half of each of these 11 runs, and the skip or error they check comes first.
    return subprocess.run(
        [sys.executable, "-m", "pytest", BROWSER_TEST, "-rs", "-p", "no:cacheprovider"]
        + ["-o", "filterwarnings=", "--basetemp", str(tmp_path / "inner")],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", [{}, {"CI": "false"}, {"CI": "0"}, {"CI": ""}])
def test_a_missing_chromium_is_a_skip_that_says_how_to_install_it(tmp_path, ci):
    missing = tmp_path / "no-chromium-here"
    out = run_browser_test(tmp_path, CHROMIUM=str(missing), **ci)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 skipped" in out.stdout
    assert f"CHROMIUM={missing} is not an executable file" in out.stdout
    # Nothing was started for nobody to look at.
    assert not list((tmp_path / "inner").rglob("iris-dev.log"))


def test_no_chromium_on_the_path_names_the_debian_package(tmp_path):
    (tmp_path / "empty-bin").mkdir()
    out = run_browser_test(tmp_path, PATH=str(tmp_path / "empty-bin"))
    assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout[-2000:]
    assert "Chromium is not installed: apt-get install -y chromium" in out.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [("CI", "true"), ("CI", "TRUE"), ("CI", "1"), ("TF_BUILD", "True"), ("GITHUB_ACTIONS", "true")],
)
def test_under_ci_a_missing_chromium_fails(tmp_path, name, value):
    out = run_browser_test(tmp_path, CHROMIUM=str(tmp_path / "no-chromium-here"), **{name: value})
    assert out.returncode == 1, out.stdout[-2000:]
    assert "1 error" in out.stdout or "1 failed" in out.stdout
    assert f"under CI ({name}={value}) and CHROMIUM=" in out.stdout


def test_a_file_that_is_not_executable_is_not_a_browser(tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    out = run_browser_test(tmp_path, CHROMIUM=str(fake), CI="true")
    assert out.returncode == 1 and "is not an executable file" in out.stdout
