"""The GitHub Actions workflows, read as data: what triggers them, what the test job runs, that
deploys wait for the tests, which branch deploys which target and how the tools are pinned."""

from __future__ import annotations

import re

import pytest

from tests.cicd.helpers import (
    AZURE,
    BRANCH_TARGETS,
    CI,
    DEPLOY,
    DEPLOY_TARGET,
    WORKFLOWS,
    assert_in_order,
    load_yaml,
    readme_test_command,
    run_commands,
    triggers,
)

WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.y*ml"))
DATABRICKS_SECRETS = ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET")
RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
MAJOR_TAG = re.compile(r"^v\d+$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def job_running(workflow: dict, command: str) -> dict:
    jobs = [
        job for job in workflow["jobs"].values() if command in run_commands(job.get("steps", []))
    ]
    assert len(jobs) == 1, f"expected one job running {command!r}, found {len(jobs)}"
    return jobs[0]


def step_using(job: dict, action: str) -> dict:
    steps = [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]
    assert steps, f"no step uses {action}"
    return steps[0]


# --- ci.yml -----------------------------------------------------------------------------------


def test_ci_runs_on_pull_requests_pushes_and_when_called():
    on = triggers(load_yaml(CI))
    assert "pull_request" in on
    assert "push" in on
    assert "workflow_call" in on, "deploy.yml reuses ci.yml as its test gate"
    assert set(on["workflow_call"]["secrets"]) == set(DATABRICKS_SECRETS)


def test_every_push_is_checked_exactly_once():
    """ci.yml skips the pushes to dev and main because deploy.yml runs ci.yml for those."""
    ci_push = triggers(load_yaml(CI))["push"]
    deploy_push = triggers(load_yaml(DEPLOY))["push"]
    assert "branches" not in ci_push
    assert set(ci_push["branches-ignore"]) == set(deploy_push["branches"]) == set(BRANCH_TARGETS)


def test_ci_installs_from_the_lock_lints_tests_and_validates_in_order():
    test_job = job_running(load_yaml(CI), readme_test_command())
    assert_in_order(
        run_commands(test_job["steps"]),
        [
            "make install",
            "make lint",
            readme_test_command(),
            ".venv/bin/dagster definitions validate -w workspace.yaml",
        ],
    )
    setup = step_using(test_job, "actions/setup-python")
    assert str(setup["with"]["python-version"]) == "3.11"
    assert "constraints.txt" in setup["with"]["cache-dependency-path"]


def test_ci_validates_the_bundle_for_dev_and_prod_when_the_secrets_exist():
    job = job_running(load_yaml(CI), 'databricks bundle validate -t "$TARGET"')
    assert job["strategy"]["matrix"]["target"] == ["dev", "prod"]
    assert job["env"]["TARGET"] == "${{ matrix.target }}"
    for name in DATABRICKS_SECRETS:
        assert job["env"][name] == f"${{{{ secrets.{name} }}}}"

    check, *rest = job["steps"]
    script = check["run"]
    assert check["id"] == "secrets"
    for name in DATABRICKS_SECRETS:
        assert f'-z "${name}"' in script, f"the secrets check ignores {name}"
    assert "::notice" in script and "skipped" in script, "a skip must say so in the run summary"
    assert "present=false" in script and "present=true" in script
    for step in rest:
        assert step.get("if") == "steps.secrets.outputs.present == 'true'", step


# --- deploy.yml and deploy-target.yml ---------------------------------------------------------


def test_deploy_runs_only_on_pushes_to_dev_and_main():
    on = triggers(load_yaml(DEPLOY))
    assert list(on) == ["push"], "deploys never run from pull requests"
    assert on["push"]["branches"] == ["dev", "main"]
    assert set(triggers(load_yaml(DEPLOY_TARGET))) == {"workflow_call"}


def test_deploys_are_serialized_per_branch():
    concurrency = load_yaml(DEPLOY)["concurrency"]
    assert "github.ref" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False, "never cancel a deploy halfway"


def test_the_tests_gate_every_deploy():
    jobs = load_yaml(DEPLOY)["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    deploy_jobs = {name: job for name, job in jobs.items() if name != "ci"}
    assert deploy_jobs
    for name, job in deploy_jobs.items():
        needs = job.get("needs", [])
        assert "ci" in ([needs] if isinstance(needs, str) else needs), f"{name} skips the tests"


def deploy_callers() -> dict[str, str]:
    """Branch -> target, read from deploy.yml's jobs that call deploy-target.yml."""
    mapping = {}
    for job in load_yaml(DEPLOY)["jobs"].values():
        if job.get("uses") == "./.github/workflows/deploy-target.yml":
            branch = re.fullmatch(r"github\.ref == 'refs/heads/([\w.-]+)'", job["if"])
            assert branch, f"a deploy job must run for exactly one branch: {job['if']!r}"
            mapping[branch.group(1)] = job["with"]["target"]
    return mapping


def test_dev_deploys_dev_and_main_deploys_prod():
    assert deploy_callers() == BRANCH_TARGETS


@pytest.mark.parametrize(("branch", "target"), sorted(BRANCH_TARGETS.items()))
def test_a_branch_deploys_its_bundle_target_and_dagster_deployment(branch, target):
    """What the reusable workflow runs once `inputs.target` is what the branch's caller passes."""
    assert deploy_callers()[branch] == target
    jobs = load_yaml(DEPLOY_TARGET)["jobs"]
    bundle, dagster = jobs["databricks"], jobs["dagster"]

    assert bundle["environment"] == dagster["environment"] == "${{ inputs.target }}"
    assert bundle["env"]["TARGET"] == "${{ inputs.target }}"
    commands = [c.replace('"$TARGET"', target) for c in run_commands(bundle["steps"])]
    assert_in_order(
        commands,
        [f"databricks bundle validate -t {target}", f"databricks bundle deploy -t {target}"],
    )

    assert dagster["needs"] == "databricks", "the code location goes out after the bundle"
    assert dagster["env"]["DAGSTER_CLOUD_DEPLOYMENT"] == "${{ inputs.target }}"
    deploy_script = " ".join(run_commands(dagster["steps"]))
    deploy_script = deploy_script.replace('"$DAGSTER_CLOUD_DEPLOYMENT"', target)
    assert "dagster-cloud ci init" in deploy_script
    assert f"--deployment {target}" in deploy_script
    assert "--dagster-cloud-yaml-path dagster_cloud.yaml" in deploy_script
    assert_in_order(
        run_commands(dagster["steps"]),
        [
            "make install",
            "cp constraints.txt requirements.txt",
            ".venv/bin/dagster-cloud ci build --build-strategy python-executable "
            "--python-version 3.11",
            ".venv/bin/dagster-cloud ci deploy",
        ],
    )


def test_deploys_authenticate_as_service_principal_and_with_the_dagster_token():
    jobs = load_yaml(DEPLOY_TARGET)["jobs"]
    bundle_env, dagster_env = jobs["databricks"]["env"], jobs["dagster"]["env"]
    assert bundle_env["DATABRICKS_AUTH_TYPE"] == "oauth-m2m"
    for name in DATABRICKS_SECRETS:
        assert bundle_env[name] == f"${{{{ secrets.{name} }}}}"
    assert dagster_env["DAGSTER_CLOUD_API_TOKEN"] == "${{ secrets.DAGSTER_CLOUD_API_TOKEN }}"
    assert dagster_env["DAGSTER_CLOUD_ORGANIZATION"] == "${{ vars.DAGSTER_CLOUD_ORGANIZATION }}"

    passed = set(triggers(load_yaml(DEPLOY_TARGET))["workflow_call"]["secrets"])
    for job in load_yaml(DEPLOY)["jobs"].values():
        if job.get("uses") == "./.github/workflows/deploy-target.yml":
            assert set(job["secrets"]) == passed
    for path in [*WORKFLOW_FILES, AZURE]:
        text = path.read_text(encoding="utf-8")
        assert "DATABRICKS_TOKEN" not in text, f"{path.name}: use the service principal, no PAT"


# --- every workflow ---------------------------------------------------------------------------


def all_steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_workflow_token_is_read_only(path):
    assert load_yaml(path)["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_actions_are_pinned(path):
    workflow = load_yaml(path)
    uses = [step["uses"] for step in all_steps(workflow) if "uses" in step]
    uses += [job["uses"] for job in workflow["jobs"].values() if "uses" in job]
    for ref in uses:
        if ref.startswith("./"):
            continue
        action, _, version = ref.partition("@")
        assert version, f"{ref}: no version"
        if action.startswith("actions/"):  # GitHub's own actions: a major or exact release
            assert (
                MAJOR_TAG.match(version) or RELEASE_TAG.match(version) or COMMIT_SHA.match(version)
            ), ref
        else:  # third party: an exact release tag or a commit
            assert RELEASE_TAG.match(version) or COMMIT_SHA.match(version), ref


def test_the_databricks_cli_comes_from_the_pinned_setup_action():
    all_refs = set()
    for path in (CI, DEPLOY_TARGET):
        refs = [s["uses"] for s in all_steps(load_yaml(path)) if "setup-cli" in s.get("uses", "")]
        assert refs, f"{path.name} does not install the Databricks CLI"
        for ref in refs:
            action, _, version = ref.partition("@")
            assert action == "databricks/setup-cli"
            assert RELEASE_TAG.match(version) or COMMIT_SHA.match(version), ref
        all_refs.update(refs)
    assert len(all_refs) == 1, f"one Databricks CLI release everywhere, found {sorted(all_refs)}"


@pytest.mark.parametrize("path", [*WORKFLOW_FILES, AZURE], ids=lambda path: path.name)
def test_nothing_is_piped_from_the_network_into_a_shell(path):
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"(curl|wget)\b[^\n]*\|\s*(sudo\s+)?(ba|z)?sh\b", text), path.name


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_checkouts_do_not_keep_the_token(path):
    for step in all_steps(load_yaml(path)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, path.name
