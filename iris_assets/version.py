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
import re
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


def _untracked(root: Path) -> str:
    """Names and contents of files git does not track yet: a build ships them too."""
    listed = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", ".") or ""
    parts = []
    for name in sorted(filter(None, listed.split("\0"))):
        path = root / name
        if path.is_file():
            parts.append(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}")
    return "\n".join(parts)


def commit_from(environ: dict[str, str]) -> str | None:
    """The commit ``IRIS_GIT_SHA`` names, as 12 lowercase hex digits (what git's own version
    carries); None when unset. Fewer than 12 digits could name another commit than the one the
    same build from git would name, so they are refused."""
    sha = environ.get(SHA_VARIABLE, "").strip()
    if not sha:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{12,40}", sha):
        raise ValueError(
            f"{SHA_VARIABLE}={sha!r} is not a commit sha (12 to 40 hex digits: pass the full "
            "sha, as `git rev-parse HEAD` prints it)"
        )
    return sha[:12].lower()


def git_version(root: Path, environ: dict[str, str] | None = None) -> str | None:
    """The version of the source tree at ``root``; None outside a checkout of this project and
    without ``IRIS_GIT_SHA``. Inside a checkout ``IRIS_GIT_SHA`` may name the commit, but
    uncommitted changes still add their ``.dirty<hash>``: the variable cannot make edited code
    look like a commit."""
    environ = os.environ if environ is None else environ
    named = commit_from(environ)
    toplevel = _git(root, "rev-parse", "--show-toplevel")
    # Only this project's own repository: a tree exported into another repo is not a checkout.
    if (
        not (root / "pyproject.toml").is_file()
        or toplevel is None
        or Path(toplevel.strip()).resolve() != root.resolve()
    ):
        return f"{RELEASE}+g{named}" if named else None
    sha = named or (_git(root, "rev-parse", "--verify", "-q", "HEAD") or "").strip()[:12]
    if not sha:
        return None  # no commit yet: nothing names this code
    version = f"{RELEASE}+g{sha}"
    changes = (_git(root, "diff", "HEAD", "--", ".") or "") + _untracked(root)
    if changes:
        version += f".dirty{hashlib.sha256(changes.encode()).hexdigest()[:8]}"
    return version


def project_version() -> str:
    """The version a build of this code has: from git when running from a checkout (an editable
    install's metadata is as old as the install), else the installed distribution's."""
    return git_version(SOURCE_ROOT) or metadata.version(DISTRIBUTION)


def wheel_name(version: str | None = None) -> str:
    return f"{DISTRIBUTION.replace('-', '_')}-{version or project_version()}-py3-none-any.whl"
