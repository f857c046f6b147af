"""databricks.yml against the Databricks CLI's own JSON schema (CLI v0.299.0, the one CI installs).

The schema is the CLI's ``bundle/schema/jsonschema.json`` at that tag (shared/databricks/). The
bundle is checked as each target deploys it: the root with its included resources, the target's
overrides merged into it and its ``variables`` setting the values of the root's definitions, the
way ``databricks bundle validate -t <target>`` sees it. (A target alone is a partial override:
the schema's required fields hold only after the merge.) Before the merge each target block is
checked on its own against the schema's ``config.Target``: a key that is valid at the root but
not in a target (``include``) would otherwise pass once merged.

The schema types some enumerations as a bare string and names their values only in prose
("Valid values are `development` or `production`": ``mode``, an artifact's ``type``, ...). The
CLI refuses other values at load time, so the validator here adds those documented values as an
enum (``with_documented_enums``), read from the schema itself.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest

from iris_assets.settings import ENVS
from tests.bundle.test_bundle import load_bundle, merge

ROOT = Path(__file__).resolve().parents[2]
CLI_VERSION = "0.299.0"  # databricks/setup-cli and DATABRICKS_CLI_VERSION in the pipelines
SCHEMA_NAME = f"bundle-config-schema-v{CLI_VERSION}.json"
# The schema is not vendored here. The pipelines write it with the pinned CLI (`databricks bundle
# schema`) and export IRIS_BUNDLE_SCHEMA; this machine's .ci/run has it beside the checkout
# (shared/databricks/).
SCHEMA_FILE = Path(
    os.environ.get("IRIS_BUNDLE_SCHEMA") or ROOT.parent / "shared" / "databricks" / SCHEMA_NAME
)


TARGET_REF = "#/$defs/github.com/databricks/cli/bundle/config.Target"
# "Valid values are `a`, `b` and `c`" in a property's description.
DOCUMENTED_VALUES = re.compile(r"Valid values are ((?:`[^`]+`(?:,\s*|\s+or\s+|\s+and\s+)?)+)")
# A ${...} reference stands for a value the CLI fills in before it checks the enum.
INTERPOLATION = r"^\$\{[^}]+\}$"


def with_documented_enums(schema: dict) -> tuple[dict, dict[str, list[str]]]:
    """A copy of the schema where each property whose description lists its valid values in
    backticks only accepts those (or a ${...} reference); and which properties those were."""
    schema = copy.deepcopy(schema)
    enums = {}

    def walk(node):
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if not isinstance(prop, dict):
                    continue
                prose = f"{prop.get('description', '')} {prop.get('markdownDescription', '')}"
                match = DOCUMENTED_VALUES.search(prose)
                if match:
                    values = re.findall(r"`([^`]+)`", match[1])
                    prop["anyOf"] = [
                        {"enum": values},
                        {"type": "string", "pattern": INTERPOLATION},
                    ]
                    enums[name] = values
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema, enums


def missing_schema(path: Path) -> str:
    """What a run without the schema says: how to get it, exactly."""
    return (
        f"the CLI's bundle schema is missing: {path}. Get it from the pinned CLI "
        f"(v{CLI_VERSION}, no login needed): `databricks bundle schema > bundle-schema.json`, "
        "then `export IRIS_BUNDLE_SCHEMA=$PWD/bundle-schema.json` and run the tests again "
        "(CI does this before `make test`)"
    )


def test_a_missing_schema_says_how_to_get_it(tmp_path):
    """Outside CI the schema tests skip with this; it must be a recipe, not a shrug."""
    message = missing_schema(tmp_path / "absent.json")
    assert "`databricks bundle schema > bundle-schema.json`" in message
    assert "IRIS_BUNDLE_SCHEMA=" in message and f"v{CLI_VERSION}" in message


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA_FILE.is_file():
        missing = missing_schema(SCHEMA_FILE)
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI always has it: never a silent pass there
        pytest.skip(missing)
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return with_documented_enums(schema)[0]


def make_validator(schema: dict) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


@pytest.fixture(scope="module")
def validator(schema) -> jsonschema.protocols.Validator:
    return make_validator(schema)


@pytest.fixture(scope="module")
def target_validator(schema) -> jsonschema.protocols.Validator:
    """The schema of one ``targets.<name>`` block (``config.Target``)."""
    return make_validator({"$ref": TARGET_REF, "$defs": schema["$defs"]})


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


def target_errors(target_validator, bundle: dict) -> dict[str, list[str]]:
    """Each target block, checked as written (before it is merged into the root). A target
    overrides part of a resource, so a required field it leaves out is the root's to have."""
    return {
        name: [
            line
            for line in errors(target_validator, block or {})
            if not line.endswith("is a required property")
        ]
        for name, block in bundle["targets"].items()
    }


def test_the_schema_documents_the_enums_it_types_as_strings(schema):
    """If a CLI upgrade drops the prose, the enums here go with it: that must not be silent."""
    enums = with_documented_enums(json.loads(SCHEMA_FILE.read_text()))[1]
    assert enums["mode"] == ["development", "production"]
    assert enums["type"] == ["whl", "jar"]


@pytest.mark.parametrize("target", ENVS)
def test_each_target_as_deployed_is_valid(validator, target_validator, target):
    bundle = load_bundle()
    assert set(bundle["targets"]) == set(ENVS)
    assert target_errors(target_validator, bundle)[target] == []
    assert errors(validator, deployed(bundle, target)) == []


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (lambda t: t["prod"].update(mode="prod"), "mode"),
        (lambda t: t["dev"].update(mode="Development"), "mode"),
        (lambda t: t["prod"].update(include=["resources/*.yml"]), "include"),
        (lambda t: t["prod"].update(workpace=t["prod"].pop("workspace")), "workpace"),
        (lambda t: t["dev"].update(default="yes"), "default"),
        (lambda t: t["dev"].update(artifacts={"default": {"type": "wheel"}}), "artifacts"),
        (lambda t: t["prod"]["run_as"].update(service_principal="x"), "run_as"),
        (lambda t: t["prod"].update(sync={"exclude": "dist"}), "sync/exclude"),
        (lambda t: t["prod"]["resources"]["schemas"]["iris"].update(owner="x"), "resources"),
    ],
)
def test_a_broken_target_is_refused_before_it_is_merged(target_validator, break_it, where):
    bundle = load_bundle()
    break_it(bundle["targets"])
    found = [line for lines in target_errors(target_validator, bundle).values() for line in lines]
    assert found and any(where in line for line in found), found


def test_an_unknown_artifact_type_is_refused_at_the_root(validator):
    bundle = load_bundle()
    bundle["artifacts"]["default"]["type"] = "wheel"
    found = errors(validator, deployed(bundle, "prod"))
    assert any("artifacts/default/type" in line for line in found), found


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
