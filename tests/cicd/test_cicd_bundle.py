"""The pipelines against the Databricks Asset Bundle: the targets they deploy exist, and every
bundle variable that no target sets is given to each `databricks bundle` command as BUNDLE_VAR_*.
"""

from __future__ import annotations

import pytest

from tests.cicd.helpers import (
    AZURE,
    BRANCH_TARGETS,
    CI,
    DEPLOY_TARGET,
    ROOT,
    load_yaml,
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


def bundle_envs() -> list[tuple[str, dict]]:
    """(where, env) for every step or job that runs a `databricks bundle` command."""
    found = []
    for path in (CI, DEPLOY_TARGET):
        for name, job in load_yaml(path)["jobs"].items():
            if any(c.startswith("databricks bundle") for c in run_commands(job["steps"])):
                found.append((f"{path.name}:{name}", job["env"]))

    def walk(node, where):
        if isinstance(node, dict):
            if any(c.startswith("databricks bundle") for c in run_commands([node], "bash")):
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
