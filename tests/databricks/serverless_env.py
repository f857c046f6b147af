"""A local copy of a Databricks serverless environment, to run the step code the way a task would.

``serverless_venv`` builds a venv on the environment's Python (3.12 for environment 5), installs
the environment's preinstalled packages (``serverless-env-<version>.txt``), then installs what
the runner submits (``databricks_env``: the project's wheel, built like the bundle builds it, and
the pins) with that list as pip constraints (less the packages the spec pins itself, which it
replaces), so a dependency that needs another pandas, numpy or scikit-learn than the
environment's fails to resolve here as it would break there. No pyspark: the environment brings
its own Spark Connect, and nothing submitted may install one. What pip resolved is kept in the
venv's ``resolved.txt``.

The venv is cached under ``~/.cache/iris-assets/serverless-env-<version>-<hash of its inputs>``
(override with ``IRIS_CACHE``) and keyed by the wheel's requirements, not its code: a cold build
costs 2.5-5 minutes on a busy 2-core machine, a warm one nothing. The project's own code never
stays in it; each task puts the deployed wheel first on its path (``wheel_overlay``). The fake
workspace runs tasks in ``task_venv``: the same venv plus what stands in for the platform's
services (``PLATFORM_STAND_INS``), kept apart from the submitted environment.
"""

from __future__ import annotations

import email.parser
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from iris_assets import databricks_env
from iris_assets.version import DISTRIBUTION, SHA_VARIABLE, git_version, project_version

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_FILE = Path(__file__).with_name(
    f"serverless-env-{databricks_env.ENVIRONMENT_VERSION}.txt"
)
# Tools the tests run inside the venv, not step dependencies (the version of this venv's pytest).
TEST_TOOLS = ("pytest",)
# Part of the cache key: a venv of another layout (one that kept the wheel installed) is another
# venv, so checkouts of either layout can share ~/.cache without touching each other's.
LAYOUT = "wheel-overlay"


def cache_dir() -> Path:
    return Path(os.environ.get("IRIS_CACHE") or Path.home() / ".cache" / "iris-assets")


def python312() -> Path | None:
    """The environment's Python minor version on this machine: pyenv's, else one on PATH (pyenv's
    shims on PATH only work for the versions pyenv was told to use, so its versions go first)."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    name = f"python{databricks_env.PYTHON}"
    candidates = sorted(pyenv.glob(f"{databricks_env.PYTHON}.*/bin/{name}"))
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    return Path(found) if found and "shims" not in found else None


def build_wheel(dest: Path, sha: str | None = None) -> Path:
    """The project's wheel, built with the bundle's artifact command (databricks.yml); for the
    commit ``sha`` when given, as a deploy job builds it (IRIS_GIT_SHA)."""
    env = {**os.environ, SHA_VARIABLE: sha} if sha else None
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",  # this venv has setuptools; saves a build env per worker
            "--wheel-dir",
            str(dest),
            ".",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    [wheel] = dest.glob("iris_assets-*.whl")
    return wheel


def deployed_sha() -> str:
    """The commit a test deploy builds its wheel for: this checkout's (zeros outside git)."""
    return project_version().partition("+g")[2][:12] or "0" * 12


def shared_wheel(folder: Path, sha: str) -> Path:
    """``build_wheel`` for ``sha`` into ``folder``, once for every process of a test session: the
    first one (a test worker, or the session's ``prebuild``) builds, the others wait and reuse it.
    ``folder`` belongs to one session, so the wheel is this checkout's as the session started."""
    dist = folder / f"dist-{sha}"
    with locked(folder / f"dist-{sha}.lock"):
        if not (dist / ".complete").exists():
            shutil.rmtree(dist, ignore_errors=True)
            dist.mkdir(parents=True)
            # The version this tree has as the build starts (editing the tree later, while the
            # tests run, makes another one): what the wheel must be named (``built_version``).
            (dist / "version").write_text(git_version(ROOT, {SHA_VARIABLE: sha}) or "")
            wheel = build_wheel(dist, sha=sha)
            (dist / ".complete").write_text(wheel.name)
    return dist / (dist / ".complete").read_text()


def built_version(wheel: Path) -> str:
    """The version ``git_version`` gave when ``shared_wheel`` started building ``wheel``."""
    return (wheel.parent / "version").read_text()


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def pip(python: Path, *args: str) -> None:
    out = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"pip {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )


def installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        databricks_env.requirement_name(p["name"]): p["version"] for p in json.loads(out.stdout)
    }


@contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # parallel test workers build one venv, once
        yield


def preinstalled_constraints(pins: list[str], preinstalled: Path = ENVIRONMENT_FILE) -> str:
    """The environment's packages as constraints, except those the task names explicitly: pip
    replaces only a preinstalled package a dependency pins, and leaves the others as they are."""
    named = {databricks_env.requirement_name(pin) for pin in pins}
    kept = [
        line
        for line in preinstalled.read_text().splitlines()
        if line and not line.startswith("#") and databricks_env.requirement_name(line) not in named
    ]
    return "\n".join(kept) + "\n"


def resolved(venv_python: Path) -> dict[str, str]:
    """What pip installed for the submitted environment (``resolved.txt``, written right after the
    installation, before the tools and stand-ins): name -> version."""
    lines = (venv_python.parents[1] / "resolved.txt").read_text().splitlines()
    return {
        databricks_env.requirement_name(line.partition("==")[0]): line.partition("==")[2]
        for line in lines
        if "==" in line
    }


# Run in a venv's python: each distribution's top-level importable names, from its RECORD (a
# namespace package's first level too: databricks.connect, databricks.sdk).
_TOP_LEVEL = """
import importlib.metadata as m, json
out = {}
for d in m.distributions():
    names = set()
    for f in d.files or []:
        parts = f.parts
        if not parts or parts[0] in ("..", "__pycache__"):
            continue
        if parts[0].endswith((".dist-info", ".data")):
            continue
        top = parts[0].removesuffix(".py")
        names.add(top)
        if top == "databricks" and len(parts) > 1:
            names.add("databricks." + parts[1].removesuffix(".py"))
    out[d.metadata["Name"]] = sorted(names)
print(json.dumps(out))
"""


def top_level_modules(python: Path) -> dict[str, list[str]]:
    """What each distribution installed for ``python`` can be imported as (canonical name ->
    top-level modules): a package that installs ``pyspark/`` under another name shows here."""
    out = subprocess.run(
        [str(python), "-I", "-c", _TOP_LEVEL], capture_output=True, text=True, check=True
    )
    return {
        databricks_env.requirement_name(name): modules
        for name, modules in json.loads(out.stdout).items()
    }


def wheel_top_level_modules(wheel: Path) -> list[str]:
    """The top-level modules a wheel installs (its archive's first path parts, as pip lays them
    out), ``databricks.<x>`` for the databricks namespace."""
    names = set()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            parts = member.split("/")
            if parts[0].endswith((".dist-info", ".data")):
                continue
            names.add(parts[0].removesuffix(".py"))
            if parts[0] == "databricks" and len(parts) > 1:
                names.add(f"databricks.{parts[1].removesuffix('.py')}")
    return sorted(names)


def environment_file(environment_version: str) -> Path | None:
    """The preinstalled packages of a serverless environment version, if this checkout has them."""
    path = ENVIRONMENT_FILE.with_name(f"serverless-env-{environment_version}.txt")
    return path if path.is_file() else None


def serverless_venv(
    dependencies: list[str],
    wheel: Path,
    python: Path,
    environment_version: str = databricks_env.ENVIRONMENT_VERSION,
) -> Path:
    """A venv of the environment with ``dependencies`` installed by pip; the wheel replaces the
    first dependency (its workspace path). Returns the venv's python.

    The wheel is installed to prove it resolves, then uninstalled again: the venv is cached by
    the wheel's requirements, not its code, so a task gets the deployed wheel's code through
    ``wheel_overlay`` and never a stale copy left from an older build (it fails to import
    ``iris_assets`` without one)."""
    preinstalled = environment_file(environment_version)
    if preinstalled is None:
        raise RuntimeError(f"no package list of serverless environment {environment_version} here")
    pins = [d for d in dependencies if not d.startswith("/")]
    requires = [  # what installing the wheel (no extras) resolves
        r for r in wheel_metadata(wheel).get_all("Requires-Dist") or [] if "extra ==" not in r
    ]
    tools = [f"{name}=={version(name)}" for name in TEST_TOOLS]
    python_version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout
    inputs = "\n".join(
        [LAYOUT, python_version, preinstalled.read_text(), *pins, *sorted(requires), *tools]
    )
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    venv = cache_dir() / f"serverless-env-{environment_version}-{key}"
    venv_python = venv / "bin" / "python"
    with locked(venv.with_suffix(".lock")):
        if not (venv / ".complete").exists():  # absent: never built, or a build was cut short
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
            # What the environment preinstalls, then what the task installs on top of it.
            pip(venv_python, "install", "--quiet", "-r", str(preinstalled))
            constraints = venv / "preinstalled-constraints.txt"
            constraints.write_text(preinstalled_constraints(pins, preinstalled))
            pip(venv_python, "install", "--quiet", "-c", str(constraints), str(wheel), *pins)
            (venv / "resolved.txt").write_text(freeze(venv_python))
            pip(venv_python, "uninstall", "--quiet", "--yes", DISTRIBUTION)
            pip(venv_python, "install", "--quiet", *tools)
            (venv / ".complete").write_text(inputs)
    return venv_python


def freeze(python: Path) -> str:
    out = subprocess.run(
        # name==version for every package, a local wheel too (pip freeze would name its file)
        [str(python), "-m", "pip", "list", "--format", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def wheel_overlay(wheel: Path, folder: Path) -> Path:
    """The wheel's files as pip installs a pure-Python wheel (its archive, unpacked), in a folder
    of their own that goes first on a task's ``PYTHONPATH``. Returns that folder."""
    overlay = folder / wheel.stem
    if not (overlay / ".complete").exists():
        shutil.rmtree(overlay, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(overlay)
        (overlay / ".complete").write_text(wheel.name)
    return overlay


# What stands in for the platform's services inside a task venv, never part of the submitted
# environment: Unity Catalog's Delta tables are the local store's deltalake files, and its model
# registry the sqlite MLflow backend (sqlalchemy, alembic); the tests' steps run with
# IRIS_TARGET=local. Installed at this orchestrator's versions.
PLATFORM_STAND_INS = ("deltalake", "sqlalchemy", "alembic")


def task_venv(env_python: Path) -> Path:
    """A copy of the environment venv with the platform's stand-ins added (the environment venv
    itself stays as the submitted spec installs it). The stand-ins may add packages but not
    change one the environment resolved. Returns its python."""
    env_venv = env_python.parents[1]
    stand_ins = [f"{name}=={version(name)}" for name in PLATFORM_STAND_INS]
    key = hashlib.sha256("\n".join(stand_ins).encode()).hexdigest()[:8]
    venv = env_venv.with_name(f"{env_venv.name}-platform-{key}")
    venv_python = venv / "bin" / "python"
    with locked(venv.with_suffix(".lock")):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            shutil.copytree(env_venv, venv, symlinks=True)
            (venv / ".complete").unlink()
            constraints = venv / "environment-constraints.txt"
            constraints.write_text((env_venv / "resolved.txt").read_text())
            pip(venv_python, "install", "--quiet", "-c", str(constraints), *stand_ins)
            (venv / ".complete").write_text("\n".join(stand_ins))
    return venv_python


def prebuild(folder: Path, sha: str) -> None:
    """What the fake workspace's first task needs, made ahead of it: the session's wheel, the
    environment venv its spec installs and the task venv. Cold, the venv build takes minutes of
    one core; started with the session, it overlaps with the tests that need no venv, and the
    tests that do wait on its lock (``locked``) and find it built."""
    python = python312()
    if python is None:
        return  # the tests that need it skip (or fail under CI) and say why
    wheel = shared_wheel(folder, sha)
    spec = databricks_env.environment_spec(f"/Workspace/prebuild/artifacts/.internal/{wheel.name}")
    task_venv(serverless_venv(spec["dependencies"], wheel, python))


if __name__ == "__main__":
    # python -m tests.databricks.serverless_env <session folder> <sha> (tests/conftest.py)
    prebuild(Path(sys.argv[1]), sys.argv[2])
