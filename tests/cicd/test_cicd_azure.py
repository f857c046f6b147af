"""azure-pipelines.yml, read as data: the same stages as the GitHub workflows (test on every
push and pull request, dev from `dev`, prod from `main`), secrets from the variable group."""

from __future__ import annotations

import re

import pytest

from tests.cicd.helpers import (
    AZURE,
    BRANCH_TARGETS,
    CI,
    assert_in_order,
    load_yaml,
    readme_test_command,
    run_commands,
)

GROUP = "iris-assets"
DATABRICKS_SECRETS = ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET")
SCRIPT_KEYS = ("script", "bash")


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return load_yaml(AZURE)


def stages(pipeline: dict) -> dict[str, dict]:
    return {stage["stage"]: stage for stage in pipeline["stages"]}


def job_steps(job: dict) -> list[dict]:
    """A job's steps; a deployment job keeps them under strategy.runOnce.deploy."""
    if "steps" in job:
        return job["steps"]
    return job["strategy"]["runOnce"]["deploy"]["steps"]


def variables(pipeline: dict) -> dict[str, str]:
    return {v["name"]: v["value"] for v in pipeline["variables"] if "name" in v}


def test_every_push_and_pull_request_is_tested(pipeline):
    assert pipeline["trigger"]["branches"]["include"] == ["*"]
    assert pipeline["pr"]["branches"]["include"] == ["*"]
    assert pipeline["trigger"]["batch"] is True, "one run per branch at a time"


def test_secrets_come_from_the_variable_group(pipeline):
    assert {"group": GROUP} in pipeline["variables"]
    text = AZURE.read_text(encoding="utf-8")
    for name in (*DATABRICKS_SECRETS, "DAGSTER_CLOUD_API_TOKEN"):
        # Secret variables reach scripts only through an explicit env mapping.
        assert f"{name}: $({name})" in text, f"{name} is not mapped from the variable group"


def test_the_test_stage_installs_lints_tests_and_validates(pipeline):
    test_stage = stages(pipeline)["test"]
    assert "dependsOn" not in test_stage and "condition" not in test_stage
    jobs = {job["job"]: job for job in test_stage["jobs"]}
    steps = job_steps(jobs["test"])
    assert_in_order(
        run_commands(steps, *SCRIPT_KEYS),
        [
            "make install",
            "make lint",
            readme_test_command(),
            ".venv/bin/dagster definitions validate -w workspace.yaml",
        ],
    )
    python = [s for s in steps if s.get("task") == "UsePythonVersion@0"]
    assert python and python[0]["inputs"]["versionSpec"] == "$(PYTHON_VERSION)"
    assert variables(pipeline)["PYTHON_VERSION"] == "3.11"


def test_the_bundle_is_validated_for_dev_and_prod_when_the_secrets_exist(pipeline):
    jobs = {job["job"]: job for job in stages(pipeline)["test"]["jobs"]}
    job = jobs["bundle_validate"]
    matrix = job["strategy"]["matrix"]
    assert {entry["TARGET"] for entry in matrix.values()} == {"dev", "prod"}

    check, *rest = job_steps(job)[1:]
    assert "task.logissue type=warning" in check["bash"] and "skipped" in check["bash"]
    assert "DATABRICKS_READY]false" in check["bash"] and "DATABRICKS_READY]true" in check["bash"]
    for name in DATABRICKS_SECRETS:
        assert check["env"][name] == f"$({name})"
    for step in rest:
        assert "eq(variables['DATABRICKS_READY'], 'true')" in step["condition"]
    assert 'databricks bundle validate -t "$TARGET"' in run_commands(rest, *SCRIPT_KEYS)


@pytest.mark.parametrize(("branch", "target"), sorted(BRANCH_TARGETS.items()))
def test_a_branch_deploys_its_target_after_the_tests(pipeline, branch, target):
    deploying = [
        stage
        for stage in pipeline["stages"]
        if f"eq(variables['Build.SourceBranch'], 'refs/heads/{branch}')"
        in stage.get("condition", "")
    ]
    assert len(deploying) == 1, f"expected one stage deploying from {branch}"
    stage = deploying[0]
    assert stage["dependsOn"] == "test"
    assert stage["condition"].startswith("and(succeeded(),")
    assert "ne(variables['Build.Reason'], 'PullRequest')" in stage["condition"]

    jobs = {job["deployment"]: job for job in stage["jobs"]}
    bundle, dagster = jobs["databricks"], jobs["dagster"]
    assert bundle["environment"] == dagster["environment"] == f"iris-assets-{target}"
    bundle_commands = run_commands(job_steps(bundle), *SCRIPT_KEYS)
    assert_in_order(
        bundle_commands,
        [f"databricks bundle validate -t {target}", f"databricks bundle deploy -t {target}"],
    )
    other = "prod" if target == "dev" else "dev"
    assert not any(f"-t {other}" in command for command in bundle_commands)
    deploy_step = [s for s in job_steps(bundle) if "bundle deploy" in s.get("bash", "")][0]
    assert deploy_step["env"]["DATABRICKS_AUTH_TYPE"] == "oauth-m2m"
    for name in DATABRICKS_SECRETS:
        assert deploy_step["env"][name] == f"$({name})"

    assert dagster["dependsOn"] == "databricks", "the code location goes out after the bundle"
    dagster_commands = run_commands(job_steps(dagster), *SCRIPT_KEYS)
    init = [c for c in dagster_commands if c.startswith(".venv/bin/dagster-cloud ci init")]
    assert len(init) == 1 and f"--deployment {target} " in init[0]
    assert "--dagster-cloud-yaml-path dagster_cloud.yaml" in init[0]
    assert_in_order(
        dagster_commands,
        [
            "make install",
            "cp constraints.txt requirements.txt",
            ".venv/bin/dagster-cloud ci build --build-strategy python-executable "
            "--python-version 3.11",
            ".venv/bin/dagster-cloud ci deploy",
        ],
    )


def test_only_the_branch_stages_deploy(pipeline):
    assert set(stages(pipeline)) == {"test", "deploy_dev", "deploy_prod"}


def test_the_databricks_cli_is_the_same_pinned_release_as_on_github(pipeline):
    version = variables(pipeline)["DATABRICKS_CLI_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f"databricks/setup-cli@v{version}" in CI.read_text(encoding="utf-8")

    installs = []

    def walk(node):
        if isinstance(node, dict):
            if "Install the Databricks CLI" in str(node.get("displayName", "")):
                installs.append(node["bash"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(pipeline)
    assert len(installs) == 4, "the schema for the tests, validate, deploy dev and prod"
    assert len({tuple(run_commands([{"bash": body}], "bash")) for body in installs}) == 1, (
        "the copies of the CLI install script differ"
    )
    script = installs[0]
    assert "sha256sum -c" in script, "the downloaded CLI must be checked against its checksum"
    assert "releases/download/v${DATABRICKS_CLI_VERSION}" in script
