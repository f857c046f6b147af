"""The serverless environment a Databricks step task runs in: its version and its dependencies.

The runner submits exactly ``environment_spec(...)`` with every step, and ``iris databricks env
--json`` prints it. Environment 5 (Python 3.12.3, Databricks Connect 18; supported until
2029-02-25) preinstalls a few hundred packages (databricks/environments,
python/serverless/serverless-v5/constraints.txt), among them what the steps use: pandas 2.2.3,
numpy 2.1.3, pyarrow 21.0.0, scikit-learn 1.6.1, matplotlib 3.10 (the evaluate step's confusion
matrix PNG), databricks-sdk 0.67. Those are never pinned here: replacing them could break
Databricks Connect (it needs pandas < 3) and buys nothing, as the project's wheel accepts them
(its ``dependencies`` in pyproject.toml). Pinned, to the versions this orchestrator runs, is only
what the environment lacks or has too old: dagster-pipes, whose protocol must match Dagster's;
skops; and mlflow-skinny, which replaces the environment's 3.8.1 (that one cannot log a model
with ``serialization_format="skops"``, and the steps write to the registry the orchestrator
reads, so they use its MLflow version).

Nothing here may pull in pyspark (Databricks: "Do not install PySpark or any library that
installs PySpark as a dependency: it stops the session"), databricks-connect (it is the
environment's own), or the orchestrator's packages (``check_dependencies``). It runs in the
orchestrator, never in a step: the standard library and ``packaging`` only, no Dagster here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from iris_assets.version import wheel_name

ENVIRONMENT_VERSION = "5"
ENVIRONMENT_KEY = "iris_steps"
PYTHON = "3.12"  # environment 5 runs 3.12.3
# What the steps import that environment 5 lacks (or has too old: mlflow-skinny). Not matplotlib:
# the environment's 3.10 draws the PNG, and a pin would replace a preinstalled package for nothing.
PINNED_PACKAGES = ("dagster-pipes", "skops", "mlflow-skinny")
# Never in a serverless environment: Spark comes with the environment, the rest is orchestration.
FORBIDDEN_PACKAGES = (
    "pyspark",
    "pyspark-client",  # Spark 4's Connect client: the same pyspark modules
    "pyspark-connect",
    "delta-spark",  # requires pyspark
    "databricks-connect",
    "dagster",
    "dagster-webserver",
    "dagster-databricks",
    "dagster-pyspark",
    "deltalake",
)


class ServerlessEnvironmentError(ValueError):
    """A dependency list that would break a serverless task."""


def pins(packages: tuple[str, ...] = PINNED_PACKAGES) -> list[str]:
    """``name==version`` of each package as this process has it installed."""
    pinned = []
    for name in packages:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise ServerlessEnvironmentError(
                f"{name} is not installed here, so its version for the serverless environment is "
                "unknown: install the project with `make install`"
            ) from None
    return pinned


def requirement_name(requirement: str) -> str:
    """The distribution a requirements line names, canonical (``PySpark[connect]>=4`` and
    ``pyspark`` alike); '' for a path or a pip option. Raises ServerlessEnvironmentError for a
    line that is neither and does not parse as a requirement."""
    line = requirement.strip()
    if line.startswith(("/", ".", "-")):
        return ""
    return canonicalize_name(parse_requirement(line).name)


def parse_requirement(line: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as error:
        raise ServerlessEnvironmentError(
            f"{line!r} is not a requirement serverless can be trusted to install ({error})"
        ) from None


def check_dependencies(dependencies: list[str]) -> None:
    """Refuse what would break a serverless task, or what cannot be checked for it: a forbidden
    package under any spelling or with extras, a URL or VCS requirement (it installs whatever the
    URL holds, whatever its name says), a pip option (``-r file``, ``-e``, ``--index-url``: what
    it brings in is not in the list), a path that is not a wheel, an unparseable line."""
    refused = []
    for dependency in dependencies:
        line = dependency.strip()
        if line.startswith("-"):
            refused.append(f"{dependency!r}: a pip option, not a requirement")
        elif line.startswith("/"):
            refused += _wheel_path_refusals(dependency, line)
        else:
            requirement = parse_requirement(line)
            if requirement.url:
                refused.append(f"{dependency!r}: a URL or VCS requirement")
            elif canonicalize_name(requirement.name) in FORBIDDEN_PACKAGES:
                refused.append(f"{dependency!r}: {canonicalize_name(requirement.name)}")
    if refused:
        raise ServerlessEnvironmentError(
            "these must not be installed on serverless: " + "; ".join(refused)
        )


def _wheel_path_refusals(dependency: str, path: str) -> list[str]:
    """A workspace path must be a wheel, named as wheels are (pip installs it as the
    distribution its file name says: ``pyspark-4.0.0-py2.py3-none-any.whl`` is pyspark)."""
    if not path.endswith(".whl"):
        return [f"{dependency!r}: a path that is not a wheel"]
    try:
        name = parse_wheel_filename(path.rsplit("/", 1)[-1])[0]
    except InvalidWheelFilename as error:
        return [f"{dependency!r}: not a wheel's file name ({error})"]
    return [f"{dependency!r}: {name}"] if name in FORBIDDEN_PACKAGES else []


BUNDLE_NAME = "iris-assets"  # `bundle.name` in databricks.yml


def default_bundle_root(user: str, env: str) -> str:
    """The bundle's `workspace.root_path` in databricks.yml, for the identity that deployed."""
    return f"/Workspace/Users/{user}/.bundle/{BUNDLE_NAME}/{env}"


def bundle_wheel_path(bundle_root: str) -> str:
    """Where `databricks bundle deploy` uploads this commit's wheel (databricks.yml artifacts)."""
    return f"{bundle_root.rstrip('/')}/artifacts/.internal/{wheel_name()}"


def environment_spec(wheel_path: str, environment_version: str = ENVIRONMENT_VERSION) -> dict:
    """The ``spec`` of the tasks' environment: the project's wheel and the pins."""
    dependencies = [wheel_path, *pins()]
    check_dependencies(dependencies)
    return {"environment_version": environment_version, "dependencies": dependencies}


def environment(wheel_path: str, environment_version: str = ENVIRONMENT_VERSION) -> dict[str, Any]:
    """The ``environments[]`` entry the runner submits."""
    return {
        "environment_key": ENVIRONMENT_KEY,
        "spec": environment_spec(wheel_path, environment_version),
    }
