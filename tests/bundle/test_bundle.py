"""databricks.yml + resources/*.yml against iris_assets/settings.py: one name for one thing.

The Databricks CLI is not installable here (the Go CLI that has `bundle` is not on PyPI; PyPI's
`databricks-cli` 0.18 is the retired Python CLI without bundles), so `databricks bundle validate`
does not run in the tests. Instead the bundle is read with PyYAML, the included files merged, each
target's overrides applied and every `${...}` reference resolved the way the CLI does for what
this bundle uses (`var.*`, `bundle.name`, `bundle.target`, `resources.<type>.<key>.<field>`); an
unknown reference fails. Then the resolved names are compared with `load_settings` for each env.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from iris_assets.settings import ENVS, load_settings

ROOT = Path(__file__).resolve().parents[2]
# CI deploys signed in as the env's service principal: its user name is its application ID.
SERVICE_PRINCIPAL = "6f1c2b9e-0000-4000-8000-000000000001"
REFERENCE = re.compile(r"\$\{([^}]+)\}")

# Unity Catalog privileges that exist for each securable type (the privileges reference).
SCHEMA_PRIVILEGES = {
    "ALL_PRIVILEGES",
    "APPLY_TAG",
    "CREATE_FUNCTION",
    "CREATE_MATERIALIZED_VIEW",
    "CREATE_MODEL",
    "CREATE_TABLE",
    "CREATE_VOLUME",
    "EXECUTE",
    "EXTERNAL_USE_SCHEMA",
    "MANAGE",
    "MODIFY",
    "READ_VOLUME",
    "REFRESH",
    "SELECT",
    "USE_SCHEMA",
    "WRITE_VOLUME",
}
REGISTERED_MODEL_PRIVILEGES = {"ALL_PRIVILEGES", "APPLY_TAG", "EXECUTE", "MANAGE"}
VOLUME_PRIVILEGES = {"ALL_PRIVILEGES", "APPLY_TAG", "MANAGE", "READ_VOLUME", "WRITE_VOLUME"}


# --- reading the bundle like the CLI ------------------------------------------------------------
def merge(into: dict, other: dict, path: str = "") -> dict:
    """Deep-merge ``other`` into ``into`` (target overrides win; maps merge key by key)."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value, f"{path}.{key}")
        else:
            into[key] = copy.deepcopy(value)
    return into


def load_bundle() -> dict[str, Any]:
    """databricks.yml with the resources of every included file (duplicate keys are an error)."""
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    resources: dict[str, dict] = copy.deepcopy(bundle.get("resources") or {})
    for pattern in bundle.get("include", []):
        files = sorted(ROOT.glob(pattern))
        assert files, f"include {pattern!r} matches no file"
        for file in files:
            document = yaml.safe_load(file.read_text()) or {}
            assert set(document) <= {"resources"}, f"{file.name}: only resources belong here"
            for kind, items in (document.get("resources") or {}).items():
                section = resources.setdefault(kind, {})
                duplicated = set(section) & set(items)
                assert not duplicated, f"{file.name}: {kind} {duplicated} defined twice"
                section.update(copy.deepcopy(items))
    bundle["resources"] = resources
    return bundle


def resolve(
    bundle: dict[str, Any],
    target: str,
    cli_vars: dict[str, str] | None = None,
    deployer: str = SERVICE_PRINCIPAL,
) -> dict[str, Any]:
    """One target's configuration with every ``${...}`` replaced by its value.

    ``cli_vars`` are ``--var name=value`` flags; ``deployer`` is the signed-in identity
    (``${workspace.current_user.userName}``).
    """
    override = bundle["targets"][target] or {}
    config = {k: copy.deepcopy(v) for k, v in bundle.items() if k != "targets"}
    config.setdefault("workspace", {})["current_user"] = {"userName": deployer}
    values = {name: (spec or {}).get("default") for name, spec in bundle["variables"].items()}
    values.update(override.get("variables") or {})
    values.update(cli_vars or {})
    missing = sorted(name for name, value in values.items() if value is None)
    assert not missing, f"target {target}: no value for variables {missing}"
    merge(config, {k: v for k, v in override.items() if k not in ("variables", "default")})
    config["bundle"]["target"] = target

    def lookup(reference: str) -> Any:
        head, _, rest = reference.partition(".")
        if head == "var":
            assert rest in values, f"${{{reference}}}: variable {rest!r} is not declared"
            return values[rest]
        node: Any = config
        for part in reference.split("."):
            assert isinstance(node, dict) and part in node, f"${{{reference}}} does not resolve"
            node = node[part]
        return node

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: substitute(value) for key, value in node.items()}
        if isinstance(node, list):
            return [substitute(value) for value in node]
        if isinstance(node, str):
            for _ in range(10):  # references to references
                replaced = REFERENCE.sub(lambda m: str(lookup(m.group(1))), node)
                if replaced == node:
                    break
                node = replaced
            assert not REFERENCE.search(node), f"unresolved reference in {node!r}"
        return node

    for _ in range(3):  # resources.* may point at values that are themselves references
        config = substitute(config)
    return config


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return load_bundle()


def target_config(bundle, env: str) -> dict[str, Any]:
    """What CI deploys: signed in as the env's service principal, no --var flags."""
    return resolve(bundle, env)


# --- one name for one thing ---------------------------------------------------------------------
def test_every_env_has_a_target_and_nothing_else(bundle):
    assert set(bundle["targets"]) == set(ENVS)
    assert bundle["bundle"]["name"] == "iris-assets"


@pytest.mark.parametrize("env", ENVS)
def test_uc_names_are_the_ones_settings_derives(bundle, env):
    settings = load_settings({"IRIS_ENV": env})
    resources = target_config(bundle, env)["resources"]

    (schema,) = resources["schemas"].values()
    assert (schema["catalog_name"], schema["name"]) == (settings.catalog, settings.schema)

    volumes = {
        key: f"/Volumes/{v['catalog_name']}/{v['schema_name']}/{v['name']}"
        for key, v in resources["volumes"].items()
    }
    assert volumes == {"pipes": settings.pipes_volume, "landing": settings.landing_volume}
    assert {v["volume_type"] for v in resources["volumes"].values()} == {"MANAGED"}

    (model,) = resources["registered_models"].values()
    full_name = f"{model['catalog_name']}.{model['schema_name']}.{model['name']}"
    assert full_name == settings.model_name


def test_only_uc_objects_and_no_serving_endpoint(bundle):
    """The endpoint needs a model version first: the serving backend creates it, not the bundle."""
    kinds = set(bundle["resources"])
    for target in bundle["targets"].values():
        kinds |= set((target or {}).get("resources") or {})
    assert "model_serving_endpoints" not in kinds
    assert kinds == {"schemas", "volumes", "registered_models"}


def test_volumes_and_model_live_in_the_bundles_schema(bundle):
    """References (not copies of the name) so the schema is created before what it holds."""
    resources = bundle["resources"]
    (schema_key,) = resources["schemas"]
    reference = f"${{resources.schemas.{schema_key}.name}}"
    for kind in ("volumes", "registered_models"):
        for key, item in resources[kind].items():
            assert item["schema_name"] == reference, f"{kind}.{key}"
            assert item["catalog_name"] == "${var.catalog}", f"{kind}.{key}"
    assert resources["schemas"][schema_key]["catalog_name"] == "${var.catalog}"
    assert resources["schemas"][schema_key]["name"] == "${var.schema}"


# --- targets ------------------------------------------------------------------------------------
def test_dev_is_the_default_target_and_prod_is_production(bundle):
    targets = bundle["targets"]
    assert [name for name, t in targets.items() if t.get("default")] == ["dev"]
    assert targets["prod"]["mode"] == "production"


def test_dev_is_not_development_mode_because_that_renames_uc_objects(bundle):
    """`mode: development` prefixes schemas and registered models with dev_<user>_ (and rejects a
    name_prefix without the user name), so dev would create dev_<user>_ml.dev_<user>_iris_model
    instead of settings' iris_dev.ml.iris_model. dev is one shared environment instead."""
    assert bundle["targets"]["dev"].get("mode") is None
    assert "presets" not in bundle["targets"]["dev"]


def test_prod_runs_as_the_service_principal(bundle):
    prod = target_config(bundle, "prod")
    assert prod["run_as"] == {"service_principal_name": SERVICE_PRINCIPAL}
    assert prod["resources"]["schemas"]["iris"]["lifecycle"] == {"prevent_destroy": True}
    assert prod["resources"]["registered_models"]["iris_model"]["lifecycle"] == {
        "prevent_destroy": True
    }
    dev = target_config(bundle, "dev")
    assert "run_as" not in dev
    assert "lifecycle" not in dev["resources"]["schemas"]["iris"]


@pytest.mark.parametrize("env", ENVS)
def test_each_target_deploys_where_the_step_runner_looks_by_default(bundle, env):
    """The Databricks step runner defaults to /Workspace/Users/<its user>/.bundle/iris-assets/<env>
    for the synced step files and the wheel; CI deploys as that same service principal."""
    config = target_config(bundle, env)
    assert config["workspace"]["root_path"] == (
        f"/Workspace/Users/{SERVICE_PRINCIPAL}/.bundle/iris-assets/{env}"
    )
    assert "sync" not in config, "the step runner runs the files the default sync uploads"


@pytest.mark.parametrize("env", ENVS)
def test_a_person_deploying_by_hand_names_the_service_principal(bundle, env):
    """Signed in as a person, --var service_principal=<app id> keeps the grants on the SP."""
    config = resolve(
        bundle, env, {"service_principal": SERVICE_PRINCIPAL}, deployer="ana@example.com"
    )
    schema = grants_of(config["resources"]["schemas"]["iris"])
    assert SERVICE_PRINCIPAL in schema and "ana@example.com" not in schema
    without = resolve(bundle, env, deployer="ana@example.com")
    assert "ana@example.com" in grants_of(without["resources"]["schemas"]["iris"])


# --- the wheel ----------------------------------------------------------------------------------
def test_the_project_wheel_is_the_artifact(bundle):
    assert bundle["artifacts"] == {
        "default": {
            "type": "whl",
            "path": ".",
            "build": "python -m pip wheel --no-deps --wheel-dir dist .",
        }
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_docs_say_where_the_wheel_lands(bundle, env):
    """Default artifact_path is <root_path>/artifacts; the CLI uploads into its .internal/."""
    root_path = resolve(bundle, env, deployer="<service-principal-app-id>")["workspace"][
        "root_path"
    ]
    docs = (ROOT / "docs" / "databricks.md").read_text()
    assert f"{root_path}/artifacts/.internal/iris_assets-" in docs


# --- grants -------------------------------------------------------------------------------------
def grants_of(item: dict) -> dict[str, set[str]]:
    grants = item.get("grants") or []
    principals = [grant["principal"] for grant in grants]
    assert len(principals) == len(set(principals)), "one grant entry per principal"
    return {grant["principal"]: set(grant["privileges"]) for grant in grants}


@pytest.mark.parametrize("env", ENVS)
def test_grants_use_real_privileges_of_each_securable(bundle, env):
    resources = target_config(bundle, env)["resources"]
    for kind, allowed in (
        ("schemas", SCHEMA_PRIVILEGES),
        ("registered_models", REGISTERED_MODEL_PRIVILEGES),
        ("volumes", VOLUME_PRIVILEGES),
    ):
        for key, item in resources[kind].items():
            for principal, privileges in grants_of(item).items():
                assert privileges <= allowed, f"{kind}.{key} {principal}: {privileges - allowed}"


@pytest.mark.parametrize("env", ENVS)
def test_who_may_run_and_who_may_approve(bundle, env):
    resources = target_config(bundle, env)["resources"]
    schema = grants_of(resources["schemas"]["iris"])
    model = grants_of(resources["registered_models"]["iris_model"])

    operators = {
        "USE_SCHEMA",
        "SELECT",
        "MODIFY",
        "READ_VOLUME",
        "WRITE_VOLUME",
        "EXECUTE",
    }
    assert schema["iris-operators"] == operators
    # The pipeline's identity creates the tables too.
    assert operators | {"CREATE_TABLE"} <= schema[SERVICE_PRINCIPAL]
    # Approvers reach the model and may tag its versions; nothing else in the schema.
    assert schema["iris-approvers"] == {"USE_SCHEMA"}
    assert model["iris-approvers"] == {"EXECUTE", "APPLY_TAG"}
    # Operators may use the model but not approve it.
    assert "APPLY_TAG" not in model["iris-operators"] | schema["iris-operators"]
