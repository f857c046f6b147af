"""dagster_cloud.yaml against the dagster-cloud CLI's own schema, its code location against the
project's, and the dagster-cloud packages against the pinned dagster set."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import version

import pydantic
import pytest
from dagster_cloud_cli.commands.ci.checks import check_dagster_cloud_yaml
from dagster_cloud_cli.config.models import load_dagster_cloud_yaml

from tests.cicd.helpers import DAGSTER_CLOUD_YAML, ROOT, load_yaml, venv_tool

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DAGSTER_PACKAGES = ("dagster", "dagster-cloud", "dagster-cloud-cli", "dagster-pipes")


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name, sep, pinned = line.partition("==")
        if sep:
            pins[name.strip().lower().replace("_", "-")] = pinned.strip()
    return pins


@pytest.fixture(scope="module")
def location():
    config = load_dagster_cloud_yaml(DAGSTER_CLOUD_YAML.read_text(encoding="utf-8"))
    assert len(config.locations) == 1, "one code location for the package"
    return config.locations[0]


def test_dagster_cloud_yaml_passes_the_cli_checks():
    result = check_dagster_cloud_yaml(DAGSTER_CLOUD_YAML)
    assert result.errors == []


def test_dagster_cloud_ci_check_accepts_it_offline():
    result = subprocess.run(
        [venv_tool("dagster-cloud"), "ci", "check", "--project-dir", str(ROOT)]
        + ["--dagster-cloud-connect-check", "skip"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Checked OK" in result.stdout


def test_the_schema_check_is_real():
    with pytest.raises(pydantic.ValidationError):
        load_dagster_cloud_yaml("locations:\n  - location_name: x\n    no_such_key: 1\n")
    with pytest.raises(pydantic.ValidationError):
        load_dagster_cloud_yaml(
            "locations:\n  - location_name: x\n    code_source: {module_name: a, python_file: b}\n"
        )


def test_the_location_is_the_projects_code_location(location):
    tool = PYPROJECT["tool"]["dagster"]
    workspace = load_yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]
    assert location.location_name == tool["code_location_name"] == workspace["location_name"]
    assert location.code_source.module_name == tool["module_name"] == workspace["module_name"]
    assert location.build.directory == "."
    assert (ROOT / location.build.directory / "pyproject.toml").is_file()


def test_the_environment_comes_from_each_deployment(location):
    """One file for dev and prod: nothing here may fix IRIS_ENV or IRIS_TARGET to one value."""
    text = DAGSTER_CLOUD_YAML.read_text(encoding="utf-8")
    lines = [line.split("#")[0] for line in text.splitlines()]
    assert not any("IRIS_" in line or "DATABRICKS_" in line for line in lines)
    assert location.container_context is None


def test_the_locations_module_is_importable_and_defines_the_graph(location, tmp_path):
    """Imported in a fresh process, as a code server would, with the local defaults."""
    code = (
        "import importlib, sys, dagster as dg\n"
        f"module = importlib.import_module({location.code_source.module_name!r})\n"
        "found = [v for v in vars(module).values() if isinstance(v, dg.Definitions)]\n"
        "assert len(found) == 1, found\n"
        "print(len(found[0].resolve_asset_graph().get_all_asset_keys()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "DATABRICKS_"))}
    env.update(IRIS_HOME=str(tmp_path / "iris"), DAGSTER_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 0, "the definitions have no assets"


def test_dagster_cloud_is_pinned_with_the_dagster_it_matches():
    pins = constraints()
    orchestrator = PYPROJECT["project"]["optional-dependencies"]["orchestrator"]
    [dagster_pin] = [d for d in orchestrator if d.startswith("dagster==")]
    dagster_version = dagster_pin.removeprefix("dagster==")
    for package in DAGSTER_PACKAGES:
        assert pins[package] == dagster_version, f"constraints.txt: {package}"
        assert version(package) == dagster_version, f"installed {package}"
    assert (
        f"dagster-cloud=={dagster_version}" in PYPROJECT["project"]["optional-dependencies"]["dev"]
    )
