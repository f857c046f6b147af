"""Shared helpers for the CI/CD checks: where the files are and how to read them."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
DEPLOY_TARGET = WORKFLOWS / "deploy-target.yml"
AZURE = ROOT / "azure-pipelines.yml"
DAGSTER_CLOUD_YAML = ROOT / "dagster_cloud.yaml"
DOCS = ROOT / "docs" / "cicd.md"

# Which branch deploys which target: the Databricks bundle target and the Dagster+ deployment.
BRANCH_TARGETS = {"dev": "dev", "main": "prod"}


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The `on:` block. PyYAML follows YAML 1.1, where a bare `on` key is the boolean True."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), "the workflow has no `on:` triggers"
    return {name: spec or {} for name, spec in on.items()}


def shell_lines(script: str) -> list[str]:
    """A shell script as its commands: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run_commands(steps: list[dict[str, Any]], *keys: str) -> list[str]:
    """The commands of the steps' scripts in order (GitHub `run:`, Azure `script:`/`bash:`)."""
    commands: list[str] = []
    for step in steps:
        for key in keys or ("run",):
            if isinstance(step.get(key), str):
                commands += shell_lines(step[key])
    return commands


def assert_in_order(commands: list[str], expected: list[str]) -> None:
    """Each expected command is one of `commands`, and they come in the expected order."""
    positions = []
    for command in expected:
        assert command in commands, f"missing command {command!r} in {commands}"
        positions.append(commands.index(command))
    assert positions == sorted(positions), f"commands out of order, expected {expected}"


def readme_test_command() -> str:
    """The test command of the README's Quickstart: the code-block line whose comment says test."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quickstart\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Quickstart' section"
    block = re.search(r"```(?:bash|sh|shell|console)?\n(.*?)```", section.group(1), re.DOTALL)
    assert block, "README.md's Quickstart has no code block"
    found = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        if command.strip() and re.search(r"\btests?\b", comment):
            found.append(command.strip())
    assert len(found) == 1, f"expected one test command in the Quickstart block, found {found}"
    return found[0]


def venv_tool(name: str) -> str:
    """A command-line tool of the dev extra: next to this Python first, then on PATH.

    A missing tool fails the test (never skips it): `make install` installs every one of them.
    """
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: run `make install`")
    return found
