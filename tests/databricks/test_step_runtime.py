"""What a Databricks step task installs and imports: the steps' runtime, never the orchestrator.

A serverless task installs the project's wheel with its ``dependencies`` (pyproject.toml) and the
pins of ``databricks_env``; pyspark or anything that pulls it in stops the session, and Dagster,
deltalake or databricks-connect have no business there. Two proofs here, in this venv: the
wheel's requirements and what they require in turn reach none of those, and each step module
imports with them blocked (``IRIS_TARGET=databricks``). tests/databricks/test_serverless_env.py
then installs and runs the same in a copy of serverless environment 5.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from iris_assets import databricks_env

STEP_MODULES = [
    "iris_assets.steps.bootstrap",
    "iris_assets.steps.stores",
    "iris_assets.steps.ingest",
    "iris_assets.steps.train",
    "iris_assets.steps.evaluate",
    "iris_assets.steps.score",
    "iris_assets.steps.day_scoring",
    "iris_assets.steps.spark_scoring",
    "iris_assets.core.spark_tables",
    "iris_assets.core.registry",
]
# Importable only in the orchestrator (or, for pyspark, provided by Databricks at run time).
BLOCKED = (
    "dagster",
    "dagster_databricks",
    "dagster_pyspark",
    "dagster_webserver",
    "dagster_cloud",
    "deltalake",
    "pyspark",
    "databricks.connect",
    "databricks.sdk",
    "sqlalchemy",
    "alembic",
    "flask",
    "matplotlib",
)

BLOCKER = """
import importlib, importlib.abc, json, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"blocked: {{name}} is not in a serverless task", name=name)
sys.meta_path.insert(0, Block())
errors = {{}}
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except Exception as error:
        errors[module] = f"{{type(error).__name__}}: {{error}}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {{"dagster", "deltalake", "pyspark"}})
print(json.dumps({{"errors": errors, "loaded": loaded}}))
"""


def import_blocked(*modules: str) -> dict:
    """Import the modules in one fresh interpreter with BLOCKED unimportable."""
    code = BLOCKER.format(blocked=BLOCKED, modules=modules)
    env = {**os.environ, "IRIS_TARGET": "databricks", "IRIS_ENV": "dev"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_every_step_module_imports_without_the_orchestrator_or_spark():
    imported = import_blocked(*STEP_MODULES)
    assert imported == {"errors": {}, "loaded": []}, "only dagster_pipes, never dagster"


def test_the_blocker_blocks():
    """The orchestrator's definitions need Dagster: the same harness must fail on them."""
    imported = import_blocked("iris_assets.definitions")
    assert "blocked: dagster" in imported["errors"]["iris_assets.definitions"]


def requirement_names(requirements: list[str] | None) -> list[str]:
    """Names of the requirements that apply without extras (markers on `extra ==` dropped)."""
    names = []
    for requirement in requirements or []:
        if re.search(r"extra\s*==", requirement):
            continue
        names.append(databricks_env.requirement_name(requirement))
    return names


def closure(names: list[str]) -> dict[str, str]:
    """Every distribution the names require, transitively, with who pulled it in first."""
    seen: dict[str, str] = {}
    todo = [(name, "iris-assets") for name in names]
    while todo:
        name, parent = todo.pop()
        if name in seen:
            continue
        seen[name] = parent
        try:
            requires = distribution(name).requires
        except PackageNotFoundError:
            continue  # not installed here: nothing (installed) below it
        todo.extend((child, name) for child in requirement_names(requires))
    return seen


def test_the_wheels_requirements_reach_no_spark_and_no_orchestrator():
    wheel = requirement_names(distribution("iris-assets").requires)
    assert {"dagster-pipes", "mlflow-skinny", "scikit-learn", "skops", "pandas"} <= set(wheel)
    pins = [databricks_env.requirement_name(p) for p in databricks_env.pins()]
    reached = closure(wheel + pins)
    forbidden = {
        name: reached[name] for name in databricks_env.FORBIDDEN_PACKAGES if name in reached
    }
    assert forbidden == {}, f"pulled in by (name: parent): {forbidden}"
    assert "mlflow" not in reached, "the MLflow client (mlflow-skinny), not the server"


def test_the_orchestrator_extra_still_brings_dagster_and_deltalake():
    """`make install` installs .[orchestrator,dev]: the split lost nothing the orchestrator uses."""
    extra = [
        databricks_env.requirement_name(r)
        for r in distribution("iris-assets").requires or []
        if re.search(r"extra\s*==\s*['\"]orchestrator['\"]", r)
    ]
    assert {"dagster", "dagster-webserver", "dagster-databricks", "deltalake", "mlflow"} <= set(
        extra
    )


# Where a deploy puts the project's wheel (databricks_env.bundle_wheel_path).
WHEEL = "/Workspace/b/artifacts/.internal/iris_assets-0.1.0+g0123456789ab-py3-none-any.whl"


@pytest.mark.parametrize(
    "dependency",
    [
        "pyspark==4.0.0",
        "databricks-connect~=18.0",
        "dagster==1.13.27",
        "deltalake",
        # Every spelling pip treats as the same distribution, and with extras or markers.
        "PySpark==4.0.0",
        "databricks_connect>=18",
        "Databricks.Connect",
        "pyspark[connect]>=4",
        "DAGSTER_WEBSERVER",
        "pyspark; python_version >= '3.12'",
        # What installs something no name in the list shows.
        "skops @ https://example.com/pyspark-4.0.0.tar.gz",
        "mlflow-skinny @ git+https://github.com/mlflow/mlflow.git",
        "-r /Workspace/Shared/requirements.txt",
        "--index-url https://example.com/simple",
        "-e /Workspace/Shared/pyspark",
        "/Workspace/Shared/requirements.txt",
        # Spark under other distribution names.
        "pyspark-client==4.0.0",
        "pyspark_connect",
        "delta-spark==4.0.0",
        # A wheel installs as the distribution its file name says.
        "/Workspace/Shared/pyspark-4.0.0-py2.py3-none-any.whl",
        "/Workspace/Users/a/PySpark-4.0.0-py3-none-any.whl",
        "/Workspace/Shared/delta_spark-4.0.0-py3-none-any.whl",
        "/Workspace/Shared/dagster-1.13.27-py3-none-any.whl",
        "/Workspace/Shared/pyspark.whl",  # not a wheel's file name: nothing says what it is
    ],
)
def test_the_spec_refuses_what_breaks_a_serverless_task(dependency, monkeypatch):
    monkeypatch.setattr(databricks_env, "pins", lambda: [dependency])
    with pytest.raises(databricks_env.ServerlessEnvironmentError, match="must not be installed"):
        databricks_env.environment_spec(WHEEL)
    databricks_env.check_dependencies([WHEEL])  # the project's own wheel alone passes


@pytest.mark.parametrize(
    "dependency", ["https://example.com/pyspark-4.0.0.tar.gz", "skops===", "pyspark==4.0.0 !!"]
)
def test_the_spec_refuses_a_line_that_does_not_parse(dependency, monkeypatch):
    monkeypatch.setattr(databricks_env, "pins", lambda: [dependency])
    with pytest.raises(databricks_env.ServerlessEnvironmentError, match="is not a requirement"):
        databricks_env.environment_spec(WHEEL)


def test_the_real_spec_passes_its_own_checks():
    spec = databricks_env.environment_spec(WHEEL)
    databricks_env.check_dependencies(spec["dependencies"])
    names = [databricks_env.requirement_name(d) for d in spec["dependencies"]]
    assert names == ["", "dagster-pipes", "skops", "mlflow-skinny"]


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("PySpark[connect]>=4", "pyspark"),
        ("databricks_connect", "databricks-connect"),
        ("Databricks.Connect==18", "databricks-connect"),
        ("mlflow_skinny ; python_version >= '3'", "mlflow-skinny"),
        (WHEEL, ""),
        ("-r req.txt", ""),
    ],
)
def test_requirement_names_are_canonical(line, name):
    assert databricks_env.requirement_name(line) == name
