"""One test command everywhere: the README's Quickstart, the Makefile, .ci/run, the GitHub
workflow and the Azure pipeline; and docs/cicd.md names every secret and setting they read."""

from __future__ import annotations

import re

from tests.cicd.helpers import (
    AZURE,
    CI,
    DOCS,
    ROOT,
    WORKFLOWS,
    load_yaml,
    readme_test_command,
    run_commands,
    shell_lines,
)


def azure_commands() -> list[str]:
    pipeline = load_yaml(AZURE)
    test_stage = next(stage for stage in pipeline["stages"] if stage["stage"] == "test")
    steps = [step for job in test_stage["jobs"] for step in job.get("steps", [])]
    return run_commands(steps, "script", "bash")


def test_the_readme_test_command_is_make_test():
    assert readme_test_command() == "make test"


def test_the_makefile_defines_it():
    target = readme_test_command().removeprefix("make ")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE)


def test_ci_run_uses_it():
    assert readme_test_command() in shell_lines((ROOT / ".ci" / "run").read_text(encoding="utf-8"))


def test_the_github_workflow_uses_it():
    jobs = load_yaml(CI)["jobs"].values()
    assert any(readme_test_command() in run_commands(job.get("steps", [])) for job in jobs)


def test_the_azure_pipeline_uses_it():
    assert readme_test_command() in azure_commands()


def test_the_docs_name_it():
    assert f"`{readme_test_command()}`" in DOCS.read_text(encoding="utf-8")


def referenced_settings() -> set[str]:
    """Every secret and variable the pipelines read from GitHub or the Azure variable group."""
    names = set()
    for path in WORKFLOWS.glob("*.y*ml"):
        names |= set(re.findall(r"\$\{\{\s*(?:secrets|vars)\.(\w+)\s*\}\}", path.read_text()))
    azure = AZURE.read_text(encoding="utf-8")
    defined = {v["name"] for v in load_yaml(AZURE)["variables"] if "name" in v}
    names |= set(re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", azure)) - defined
    return names


def test_the_docs_explain_every_secret_and_setting():
    docs = DOCS.read_text(encoding="utf-8")
    names = referenced_settings()
    assert {"DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DAGSTER_CLOUD_API_TOKEN"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, f"docs/cicd.md does not mention {missing}"
