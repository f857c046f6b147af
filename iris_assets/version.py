"""The project's version: ``0.1.0+g<commit>``, one per commit, so every deploy ships a new wheel.

Databricks serverless caches a task's environment by its dependency list: a wheel whose version
did not change can keep running the old code beside new step files. So the version carries the
commit (``+g<12 hex>``) and, for a build from a working tree with uncommitted changes, a hash of
those changes (``.dirty<8 hex>``). ``setup.py`` stamps it on the wheel; the Databricks runner names
the same wheel with ``project_version()``.

Standard library only: ``setup.py`` loads this file by path, before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

RELEASE = "0.1.0"
DISTRIBUTION = "iris-assets"
# A build without a git checkout (a CI step that exported the tree) names the commit here.
SHA_VARIABLE = "IRIS_GIT_SHA"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def git_version(root: Path, environ: dict[str, str] | None = None) -> str | None:
    """The version of the source tree at ``root``; None outside a git checkout."""
    environ = os.environ if environ is None else environ
    if sha := environ.get(SHA_VARIABLE, "").strip():
        return f"{RELEASE}+g{sha[:12].lower()}"
    if (
        not (root / "pyproject.toml").is_file()
        or _git(root, "rev-parse", "--show-toplevel") is None
    ):
        return None
    sha = (_git(root, "rev-parse", "HEAD") or "").strip()
    if not sha:
        return f"{RELEASE}+uncommitted"
    version = f"{RELEASE}+g{sha[:12]}"
    changes = _git(root, "diff", "HEAD", "--", ".") or ""
    if changes:
        version += f".dirty{hashlib.sha256(changes.encode()).hexdigest()[:8]}"
    return version


def project_version() -> str:
    """The version a build of this code has: from git when running from a checkout (an editable
    install's metadata is as old as the install), else the installed distribution's."""
    return git_version(SOURCE_ROOT) or metadata.version(DISTRIBUTION)


def wheel_name(version: str | None = None) -> str:
    return f"{DISTRIBUTION.replace('-', '_')}-{version or project_version()}-py3-none-any.whl"
