"""The pipelines against the Databricks Asset Bundle: the targets they deploy exist, and every
bundle variable that no target sets is given to each `databricks bundle` command as BUNDLE_VAR_*.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.bundle.test_bundle_schema import SCHEMA_NAME
from tests.cicd.helpers import (
    AZURE,
    BRANCH_TARGETS,
    CI,
    DEPLOY_TARGET,
    ROOT,
    WORKFLOWS,
    load_yaml,
    readme_test_command,
    run_commands,
)

BUNDLE = ROOT / "databricks.yml"


@pytest.fixture(scope="module")
def bundle() -> dict:
    if not BUNDLE.is_file():
        pytest.skip("databricks.yml is not in this tree yet")
    return load_yaml(BUNDLE)


def unset_variables(bundle: dict) -> set[str]:
    """The bundle's variables with no default that some deployed target leaves unset."""
    targets = bundle.get("targets", {})
    unset = set()
    for name, spec in (bundle.get("variables") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            continue
        for target in set(BRANCH_TARGETS.values()):
            if name not in (targets.get(target) or {}).get("variables", {}):
                unset.add(name)
    return unset


def runs_bundle(command: str) -> bool:
    """A `databricks bundle` command that reads databricks.yml (`bundle schema` does not)."""
    return command.startswith("databricks bundle") and not command.startswith(
        "databricks bundle schema"
    )


def bundle_envs() -> list[tuple[str, dict]]:
    """(where, env) for every step or job that runs a `databricks bundle` command."""
    found = []
    for path in (CI, DEPLOY_TARGET):
        for name, job in load_yaml(path)["jobs"].items():
            if any(runs_bundle(c) for c in run_commands(job["steps"])):
                found.append((f"{path.name}:{name}", job["env"]))

    def walk(node, where):
        if isinstance(node, dict):
            if any(runs_bundle(c) for c in run_commands([node], "bash")):
                found.append((f"{AZURE.name}:{where}", node["env"]))
            name = node.get("stage") or node.get("job") or node.get("deployment")
            here = f"{where}/{name}" if name else where
            for value in node.values():
                walk(value, here)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    walk(load_yaml(AZURE), "")
    return found


def test_the_bundle_has_the_targets_the_branches_deploy(bundle):
    assert set(BRANCH_TARGETS.values()) <= set(bundle["targets"])


def test_every_bundle_command_gets_the_variables_no_target_sets(bundle):
    envs = bundle_envs()
    assert len(envs) == 5, f"validate and deploy on GitHub and Azure, found {[w for w, _ in envs]}"
    for name in unset_variables(bundle):
        for where, env in envs:
            assert f"BUNDLE_VAR_{name}" in env, f"{where}: databricks.yml's {name} is unset"


def commands_in(node) -> list[str]:
    """Every shell line anywhere in a loaded pipeline file (steps' run/bash/script values)."""
    if isinstance(node, dict):
        return [line for value in node.values() for line in commands_in(value)]
    if isinstance(node, list):
        return [line for value in node for line in commands_in(value)]
    return node.splitlines() if isinstance(node, str) else []


@pytest.mark.parametrize("pipeline", [DEPLOY_TARGET, AZURE], ids=lambda p: p.name)
def test_a_destructive_bundle_change_stops_ci_instead_of_being_approved(pipeline):
    """Without --auto-approve the CLI asks before deleting or recreating a resource; with no
    terminal in CI it exits with an error, so such a change never deploys unreviewed."""
    deploys = [
        line
        for line in commands_in(load_yaml(pipeline))
        if "bundle deploy" in line.split("#", 1)[0]
    ]
    assert deploys, f"{pipeline.name} deploys no bundle"
    assert not [line for line in deploys if "--auto-approve" in line], deploys


# The commit as each platform names it: the checkout of the run, the same in every job.
COMMIT = {"github": "${{ github.sha }}", "azure": "$(Build.SourceVersion)"}


def builds_the_wheel(command: str) -> bool:
    """A command whose build stamps a version on the wheel (iris_assets/version.py): the bundle's
    (`databricks bundle validate`/`deploy`), a Dagster+ code location build, a pip build."""
    return runs_bundle(command) or bool(
        re.search(r"dagster-cloud ci (build|deploy)|pip wheel|python -m build", command)
    )


def versioned_steps() -> list[tuple[str, str, dict]]:
    """(platform, where, env the commands see) for every step that builds the wheel."""
    found = []
    for path in WORKFLOWS.glob("*.y*ml"):
        for name, job in (load_yaml(path).get("jobs") or {}).items():
            for step in job.get("steps", []):
                if any(builds_the_wheel(c) for c in run_commands([step])):
                    env = {**(job.get("env") or {}), **(step.get("env") or {})}
                    found.append(("github", f"{path.name}:{name}:{step.get('name')}", env))

    def walk(node):
        if isinstance(node, dict):
            if any(builds_the_wheel(c) for c in run_commands([node], "bash", "script")):
                found.append(("azure", str(node.get("displayName")), node.get("env") or {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load_yaml(AZURE))
    return found


def test_every_wheel_build_and_dagster_deploy_names_the_same_commit():
    """The bundle uploads 0.1.0+g<sha>; Dagster+'s runner asks for the wheel of its own version.
    Without IRIS_GIT_SHA the bundle's build takes the version from git, where anything the job
    leaves in the tree (the CLI's `.databricks` line in .gitignore) makes it `.dirty<hash>`, and
    the runner asks for a wheel that was never uploaded."""
    steps = versioned_steps()
    wheres = [where for _, where, _ in steps]
    # GitHub: validate in ci, validate and deploy in deploy-target, Dagster+; Azure: validate,
    # validate-and-deploy for dev and prod, Dagster+ dev and prod.
    assert len(steps) == 9, wheres
    assert {platform for platform, _, _ in steps} == set(COMMIT)
    for platform, where, env in steps:
        assert env.get("IRIS_GIT_SHA") == COMMIT[platform], f"{where}: {env.get('IRIS_GIT_SHA')}"


def test_the_deploy_jobs_leave_the_tree_clean_for_the_version():
    """What CI writes into the checkout before a build is git-ignored, so a build from git would
    not be `.dirty` either: the CLI's state folder and the Dagster+ requirements.txt."""
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", ".databricks/", "requirements.txt"],
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == [".databricks/", "requirements.txt"], ignored.stdout


def schema_steps(steps: list[dict], *keys: str) -> tuple[list[str], str]:
    """The commands of a test job up to `make test`, and what IRIS_BUNDLE_SCHEMA is set to."""
    commands = run_commands(steps, *keys)
    assert readme_test_command() in commands, "the job does not run the test suite"
    before = commands[: commands.index(readme_test_command())]
    dumps = [c for c in before if c.startswith("databricks bundle schema > ")]
    assert len(dumps) == 1, f"the schema is not produced before the tests: {before}"
    return before, dumps[0].removeprefix("databricks bundle schema > ")


def test_the_test_jobs_give_the_suite_the_pinned_clis_bundle_schema():
    """tests/bundle/test_bundle_schema.py fails under CI without the schema (never skips): each
    pipeline's test job writes the schema of the CLI release it pins and points the suite at it."""
    version = SCHEMA_NAME.removeprefix("bundle-config-schema-v").removesuffix(".json")

    [github_job] = [
        job
        for job in load_yaml(CI)["jobs"].values()
        if readme_test_command() in run_commands(job["steps"])
    ]
    before, target = schema_steps(github_job["steps"])
    assert target == '"$RUNNER_TEMP/bundle-schema.json"'
    assert 'echo "IRIS_BUNDLE_SCHEMA=$RUNNER_TEMP/bundle-schema.json" >> "$GITHUB_ENV"' in before
    position = next(
        i for i, s in enumerate(github_job["steps"]) if "setup-cli" in s.get("uses", "")
    )
    assert github_job["steps"][position]["uses"] == f"databricks/setup-cli@v{version}"
    assert position < next(
        i for i, s in enumerate(github_job["steps"]) if "bundle schema" in s.get("run", "")
    )

    azure = load_yaml(AZURE)
    assert {v["name"]: v["value"] for v in azure["variables"] if "name" in v}[
        "DATABRICKS_CLI_VERSION"
    ] == version
    [test_stage] = [stage for stage in azure["stages"] if stage["stage"] == "test"]
    [azure_job] = [job for job in test_stage["jobs"] if job["job"] == "test"]
    before, target = schema_steps(azure_job["steps"], "script", "bash")
    assert target == '"$AGENT_TEMPDIRECTORY/bundle-schema.json"'
    assert (
        'echo "##vso[task.setvariable variable=IRIS_BUNDLE_SCHEMA]'
        '$AGENT_TEMPDIRECTORY/bundle-schema.json"' in before
    )
    assert any(
        "Install the Databricks CLI" in str(s.get("displayName")) for s in azure_job["steps"]
    )
