"""The workflow files pass actionlint (with shellcheck on every `run:` script), and the Azure
pipeline's bash scripts pass shellcheck. Both binaries come with the dev extra."""

from __future__ import annotations

import subprocess

import pytest

from tests.cicd.helpers import AZURE, ROOT, WORKFLOWS, load_yaml, venv_tool

WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
BROKEN_WORKFLOW = """\
on: push
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - run: echo $UNQUOTED
      - uses: actions/checkout@v5
        with:
          no-such-input: true
"""


def actionlint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [venv_tool("actionlint"), "-no-color", "-oneline"]
    # shellcheck from the dev extra, so every machine checks the scripts the same way; pyflakes is
    # only for `shell: python` steps, which these workflows do not have.
    command += ["-shellcheck", venv_tool("shellcheck"), "-pyflakes=", *args]
    return subprocess.run(
        command, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_workflows_exist():
    names = {path.name for path in WORKFLOW_FILES}
    assert {"ci.yml", "deploy.yml", "deploy-target.yml"} <= names


@pytest.mark.parametrize("workflow", WORKFLOW_FILES, ids=lambda path: path.name)
def test_workflow_passes_actionlint(workflow):
    result = actionlint(str(workflow.relative_to(ROOT)))
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def test_actionlint_and_its_shellcheck_really_report_problems():
    result = actionlint("-", stdin=BROKEN_WORKFLOW)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SC2086" in result.stdout, "shellcheck did not run on the `run:` script"
    assert "no-such-input" in result.stdout, "actionlint did not check the action's inputs"


def azure_bash_scripts() -> list[tuple[str, str]]:
    """Every `bash:` step of azure-pipelines.yml, wherever it is nested, with its display name."""
    found: list[tuple[str, str]] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("bash"), str):
                found.append((node.get("displayName", "bash"), node["bash"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load_yaml(AZURE))
    return found


def test_azure_bash_steps_pass_shellcheck(tmp_path):
    scripts = azure_bash_scripts()
    assert scripts, "azure-pipelines.yml has no bash steps"
    files = []
    for index, (name, body) in enumerate(scripts):
        path = tmp_path / f"step{index}.sh"
        path.write_text(f"# {name}\n{body}", encoding="utf-8")
        files.append(str(path))
    result = subprocess.run(
        [venv_tool("shellcheck"), "--shell=bash", "--format=gcc", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"shellcheck found problems:\n{result.stdout}{result.stderr}"
