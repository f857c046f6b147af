"""Headless Chromium for the UI tests: Debian's ``chromium`` driven by Playwright's client.

Playwright's own browser download is never used (no network here but package registries):
``.ci/run`` installs Debian's ``chromium`` and Playwright launches it by path. Where Chromium
cannot be found the UI tests skip and say how to install it, except under CI (``CI`` set to
true/1/yes as GitHub Actions and most CI services do, or Azure Pipelines' ``TF_BUILD``), where a
missing browser is a failure: CI must not pass without having looked at the UI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# What headless Chromium needs here (root, no GPU) and nothing it would fetch from the network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
INSTALL_HINT = "apt-get install -y chromium (as root), or set CHROMIUM to a Chromium binary"


CI_VARIABLES = ("CI", "TF_BUILD", "GITHUB_ACTIONS")  # TF_BUILD: Azure Pipelines sets no CI
TRUE = ("true", "1", "yes", "on")


def under_ci() -> str | None:
    """``NAME=value`` of the variable that says this runs under CI, else None."""
    for name in CI_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip().lower() in TRUE:
            return f"{name}={value}"
    return None


def unavailable(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail under CI."""
    ci = under_ci()
    if ci:
        pytest.fail(f"under CI ({ci}) and {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> Path:
    named = os.environ.get("CHROMIUM")
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            unavailable(f"CHROMIUM={named} is not an executable file")
        return path
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    unavailable(f"Chromium is not installed: {INSTALL_HINT}")
    raise AssertionError("not reached")


def require_browser() -> Path:
    """The Chromium to launch, once both it and Playwright's client are known to be there."""
    executable = chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("the playwright package is not installed: make install (the dev extra)")
    return executable


@contextmanager
def headless_chromium(executable: Path) -> Iterator[object]:
    """A Playwright ``Browser`` on ``executable`` (see ``require_browser``), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=list(FLAGS))
        try:
            yield browser
        finally:
            browser.close()
