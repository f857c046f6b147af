"""A local copy of Databricks serverless environment 5, to run the step code the way a task would.

``serverless_venv`` builds a Python 3.12 venv, installs the environment's preinstalled packages
(``serverless-env-5.txt``), then installs what the runner submits (``databricks_env``: the
project's wheel, built like the bundle builds it, and the pins) with that list as pip
constraints (less the packages the spec pins itself, which it replaces), so a dependency that
needs another pandas, numpy or scikit-learn than the environment's fails to resolve here as it
would break there. No pyspark: the environment brings
its own Spark Connect, and nothing submitted may install one.

The venv is cached under ``~/.cache/iris-assets/serverless-env-5-<hash of its inputs>`` (override
with ``IRIS_CACHE``), so only the first run on a machine pays for the installation; a changed
wheel with the same requirements is reinstalled into the cached venv without its dependencies.
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
from pathlib import Path

from iris_assets import databricks_env

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_FILE = Path(__file__).with_name(
    f"serverless-env-{databricks_env.ENVIRONMENT_VERSION}.txt"
)
# Tools the tests run inside the venv, not step dependencies (the version of this venv's pytest).
TEST_TOOLS = ("pytest",)


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


def build_wheel(dest: Path) -> Path:
    """The project's wheel, built with the bundle's artifact command (databricks.yml)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(dest),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [wheel] = dest.glob("iris_assets-*.whl")
    return wheel


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


def preinstalled_constraints(pins: list[str]) -> str:
    """The environment's packages as constraints, except those the task names explicitly: pip
    replaces only a preinstalled package a dependency pins, and leaves the others as they are."""
    named = {databricks_env.requirement_name(pin) for pin in pins}
    kept = [
        line
        for line in ENVIRONMENT_FILE.read_text().splitlines()
        if line and not line.startswith("#") and databricks_env.requirement_name(line) not in named
    ]
    return "\n".join(kept) + "\n"


def serverless_venv(dependencies: list[str], wheel: Path, python: Path) -> Path:
    """A venv of the environment with ``dependencies`` installed; the wheel replaces the first
    dependency (its workspace path). Returns the venv's python."""
    pins = [d for d in dependencies if not d.startswith("/")]
    requires = [  # what installing the wheel (no extras) resolves
        r for r in wheel_metadata(wheel).get_all("Requires-Dist") or [] if "extra ==" not in r
    ]
    tools = [f"{name}=={installed(Path(sys.executable))[name]}" for name in TEST_TOOLS]
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout
    inputs = "\n".join([version, ENVIRONMENT_FILE.read_text(), *pins, *sorted(requires), *tools])
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    venv = cache_dir() / f"serverless-env-{databricks_env.ENVIRONMENT_VERSION}-{key}"
    venv_python = venv / "bin" / "python"
    with locked(venv.with_suffix(".lock")):
        if not (venv / ".complete").exists():  # absent: never built, or a build was cut short
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
            # What the environment preinstalls, then what the task installs on top of it.
            pip(venv_python, "install", "--quiet", "-r", str(ENVIRONMENT_FILE))
            constraints = venv / "preinstalled-constraints.txt"
            constraints.write_text(preinstalled_constraints(pins))
            pip(venv_python, "install", "--quiet", "-c", str(constraints), str(wheel), *pins)
            pip(venv_python, "install", "--quiet", *tools)
            (venv / ".complete").write_text(inputs)
        wheel_version = wheel_metadata(wheel)["Version"]
        if installed(venv_python).get("iris-assets") != wheel_version:
            pip(venv_python, "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel))
    return venv_python


# What stands in for the platform's services inside a task venv: Unity Catalog's Delta tables are
# the local store's deltalake files (the tests' steps run with IRIS_TARGET=local).
PLATFORM_STAND_INS = ("deltalake",)


def task_venv(env_python: Path, wheel: Path) -> Path:
    """A copy of the environment venv with the platform's stand-ins added (the environment venv
    itself stays as the platform installs it). Returns its python."""
    env_venv = env_python.parents[1]
    venv = env_venv.with_name(env_venv.name + "-task")
    venv_python = venv / "bin" / "python"
    with locked(venv.with_suffix(".lock")):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            shutil.copytree(env_venv, venv, symlinks=True)
            (venv / ".complete").unlink()
            here = installed(Path(sys.executable))
            stand_ins = [f"{name}=={here[name]}" for name in PLATFORM_STAND_INS]
            pip(venv_python, "install", "--quiet", "-c", str(ENVIRONMENT_FILE), *stand_ins)
            (venv / ".complete").write_text("\n".join(stand_ins))
        if installed(venv_python).get("iris-assets") != wheel_metadata(wheel)["Version"]:
            pip(venv_python, "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel))
    return venv_python
