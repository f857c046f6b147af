"""Only the version is computed here (everything else is in pyproject.toml): see
iris_assets/version.py. Loaded by path so a build needs nothing but setuptools."""

import importlib.util
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def version() -> str:
    spec = importlib.util.spec_from_file_location("iris_version", ROOT / "iris_assets/version.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.git_version(ROOT)
    if built:
        return built
    pkg_info = ROOT / "PKG-INFO"  # building a wheel from an sdist: the sdist's version
    if pkg_info.is_file():
        for line in pkg_info.read_text().splitlines():
            if line.startswith("Version: "):
                return line.removeprefix("Version: ")
    raise SystemExit(
        f"cannot tell the version: build from a git checkout or set {module.SHA_VARIABLE}"
    )


setup(version=version())
