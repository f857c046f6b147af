"""databricks.yml against the Databricks CLI's own JSON schema (CLI v0.299.0, the one CI installs).

The schema is the CLI's ``bundle/schema/jsonschema.json`` at that tag (shared/databricks/). The
bundle is checked as each target deploys it: the root with its included resources, the target's
overrides merged into it and its ``variables`` setting the values of the root's definitions, the
way ``databricks bundle validate -t <target>`` sees it. (A target alone is a partial override:
the schema's required fields hold only after the merge.)
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest

from iris_assets.settings import ENVS
from tests.bundle.test_bundle import load_bundle, merge

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_NAME = "bundle-config-schema-v0.299.0.json"
# The schema is not vendored here: CI has it beside the checkout (shared/databricks/); elsewhere
# point IRIS_BUNDLE_SCHEMA at a copy (the CLI prints it: `databricks bundle schema`).
SCHEMA_FILE = Path(
    os.environ.get("IRIS_BUNDLE_SCHEMA") or ROOT.parent / "shared" / "databricks" / SCHEMA_NAME
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    if not SCHEMA_FILE.is_file():
        missing = (
            f"the CLI's bundle schema is missing: {SCHEMA_FILE} (set IRIS_BUNDLE_SCHEMA to the "
            "output of `databricks bundle schema` from CLI v0.299.0)"
        )
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI always has it: never a silent pass there
        pytest.skip(missing)
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def leaves(error: jsonschema.ValidationError):
    """The innermost reasons (a `oneOf` of a value or a ${...} reference nests them)."""
    if not error.context:
        yield error
    for inner in error.context or []:
        yield from leaves(inner)


def errors(validator, config: dict) -> list[str]:
    found = [leaf for error in validator.iter_errors(config) for leaf in leaves(error)]
    found = [e for e in found if "is not of type 'string'" not in e.message] or found
    return sorted({f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in found})


def deployed(bundle: dict, target: str) -> dict:
    """The configuration of one target, with the target merged into the root."""
    override = copy.deepcopy(bundle["targets"][target] or {})
    config = {k: copy.deepcopy(v) for k, v in bundle.items() if k != "targets"}
    values = override.pop("variables", {}) or {}
    override.pop("default", None)
    for name, value in values.items():
        assert name in config["variables"], f"target {target} sets undeclared variable {name}"
        config["variables"][name]["default"] = value
    return merge(config, override)


@pytest.mark.parametrize("target", ENVS)
def test_each_target_as_deployed_is_valid(validator, target):
    assert errors(validator, deployed(load_bundle(), target)) == []


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (lambda b: b["artifacts"]["default"].update(build_command="make"), "artifacts"),
        (lambda b: b["resources"]["volumes"]["pipes"].update(volume_type="SHARED"), "volumes"),
        (lambda b: b["resources"]["schemas"]["iris"].update(catalog="iris_dev"), "schemas/iris"),
        (lambda b: b["targets"]["prod"]["run_as"].update(service_principal="x"), "run_as"),
        (lambda b: b["targets"]["prod"]["workspace"].update(root="/x"), "workspace"),
        (lambda b: b["resources"]["registered_models"]["iris_model"].update(tags={}), "iris_model"),
    ],
)
def test_the_schema_rejects_a_misspelled_or_unknown_value(validator, break_it, where):
    bundle = load_bundle()
    break_it(bundle)
    found = errors(validator, deployed(bundle, "prod"))
    assert found and any(where.split("/")[0] in line for line in found), found
