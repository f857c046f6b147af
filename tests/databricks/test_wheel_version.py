"""Every commit ships a wheel with its own version, and the runner names that wheel.

Databricks serverless caches a task's environment by its dependency list; a redeploy of the same
wheel version can keep running the old code (databricks/cli#1621). The version is
0.1.0+g<commit>[.dirty<hash of uncommitted changes>] (iris_assets/version.py, setup.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iris_assets.version import SHA_VARIABLE, git_version, wheel_name

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != SHA_VARIABLE}


def build(src: Path, dest: Path) -> Path:
    """The bundle's build (``pip wheel --no-deps``), without build isolation to stay fast."""
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dest), str(src)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    [wheel] = dest.glob("*.whl")
    return wheel


def runner_wheel_path(src: Path) -> str:
    """The wheel the runner of the checkout at ``src`` submits (``iris databricks env``)."""
    code = "from iris_assets import databricks_env; print(databricks_env.bundle_wheel_path('/B'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
        env={**clean_env(), "PYTHONPATH": str(src)},
    )
    return out.stdout.strip()


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A git repository holding the project's sources, one commit."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", ".gitignore"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "iris_assets", src / "iris_assets", ignore=shutil.ignore_patterns("__pycache__")
    )
    git(src, "init", "-q")
    git(src, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git(src, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    return src


def commit(src: Path, message: str) -> str:
    git(src, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", message)
    return git(src, "rev-parse", "HEAD")


def test_each_commit_builds_a_new_version_and_the_runner_names_it(checkout, tmp_path):
    first_sha = git(checkout, "rev-parse", "HEAD")
    first = build(checkout, tmp_path / "dist1")
    assert first.name == f"iris_assets-0.1.0+g{first_sha[:12]}-py3-none-any.whl"
    assert runner_wheel_path(checkout) == f"/B/artifacts/.internal/{first.name}"

    train = checkout / "iris_assets" / "steps" / "train.py"
    train.write_text(train.read_text() + "\n# a change\n")
    edited = wheel_name(git_version(checkout, {}))  # what a build now would be named
    assert edited != first.name and ".dirty" in edited, "uncommitted code: a new version too"
    assert runner_wheel_path(checkout) == f"/B/artifacts/.internal/{edited}"

    second_sha = commit(checkout, "two")
    second = build(checkout, tmp_path / "dist2")
    assert second.name == f"iris_assets-0.1.0+g{second_sha[:12]}-py3-none-any.whl"
    assert len({first.name, edited, second.name}) == 3
    assert runner_wheel_path(checkout) == f"/B/artifacts/.internal/{second.name}"


def test_a_build_outside_git_takes_the_commit_from_the_environment(tmp_path):
    assert git_version(tmp_path, {}) is None
    assert git_version(tmp_path, {SHA_VARIABLE: "ABCDEF0123456789"}) == "0.1.0+gabcdef012345"
    assert wheel_name("0.1.0+gabc") == "iris_assets-0.1.0+gabc-py3-none-any.whl"


def test_an_untracked_new_module_is_a_new_version_too(checkout):
    clean = git_version(checkout, {})
    (checkout / "iris_assets" / "steps" / "new_step.py").write_text("print('new')\n")
    assert git_version(checkout, {}) not in (clean, None)


def test_a_tree_inside_another_repository_or_without_commits_has_no_version(tmp_path):
    outer = tmp_path / "outer"
    (outer / "project").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", outer / "project" / "pyproject.toml")
    git(outer, "init", "-q")
    assert git_version(outer / "project", {}) is None, "the outer repo's commit is not ours"
    git(outer / "project", "init", "-q")
    assert git_version(outer / "project", {}) is None, "no commit yet names no code"


@pytest.mark.parametrize("sha", ["main", "abc", "g1234567", "6b61254", "6b61254 ", "0" * 11])
def test_a_commit_variable_that_is_not_a_full_sha_is_refused(tmp_path, sha):
    """A short sha (``6b61254``) would name another version than git's 12 digits for the same
    commit: the runner would then ask for a wheel the deploy never built."""
    with pytest.raises(ValueError, match="not a commit sha"):
        git_version(tmp_path, {SHA_VARIABLE: sha})


def test_the_commit_variable_gives_the_version_git_gives(checkout):
    sha = git(checkout, "rev-parse", "HEAD")
    from_git = git_version(checkout, {})
    assert git_version(checkout, {SHA_VARIABLE: sha}) == from_git
    assert git_version(checkout, {SHA_VARIABLE: f" {sha.upper()} "}) == from_git


def test_the_commit_variable_does_not_hide_uncommitted_changes(checkout):
    sha = git(checkout, "rev-parse", "HEAD")
    clean = git_version(checkout, {SHA_VARIABLE: sha})
    train = checkout / "iris_assets" / "steps" / "train.py"
    train.write_text(train.read_text() + "\n# an edit\n")
    edited = git_version(checkout, {SHA_VARIABLE: sha})
    assert edited.startswith(f"{clean}.dirty"), edited


def test_the_databricks_cli_state_folder_leaves_the_version_alone(checkout):
    """The CLI appends `.databricks` to .gitignore (even on `bundle validate`) when git does not
    ignore it, and writes its state there: either would make a CI deploy's wheel `.dirty` while
    Dagster+ asks for the clean version of the same commit."""
    sha = git(checkout, "rev-parse", "HEAD")
    clean = git_version(checkout, {SHA_VARIABLE: sha})
    state = checkout / ".databricks" / "bundle" / "dev" / "sync-snapshots" / "x.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    git(checkout, "check-ignore", "-q", ".databricks/")
    assert git_version(checkout, {SHA_VARIABLE: sha}) == clean
    # ...and so the CLI has no reason to touch .gitignore: it only appends when not ignored.
    assert git(ROOT, "check-ignore", ".databricks/") == ".databricks/"
