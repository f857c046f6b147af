"""The steps on serverless environment 5, offline: the submitted dependencies resolve against the
environment's preinstalled packages with no pyspark, and the step code that needs no Spark runs
under them (Python 3.12, pandas 2.2, numpy 2.1, scikit-learn 1.6; mlflow-skinny is the one
preinstalled package the spec replaces, with the orchestrator's version).

The venv is built once per machine and cached (tests/databricks/serverless_env.py): 2.5-5
minutes the first time on a busy 2-core machine, a few seconds afterwards. The fake workspace
runs every step task in this same venv (tests/databricks/test_databricks_runner.py).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from iris_assets import databricks_env
from tests.databricks.serverless_env import (
    ENVIRONMENT_FILE,
    PLATFORM_STAND_INS,
    ROOT,
    installed,
    resolved,
    serverless_venv,
    wheel_overlay,
)

pytestmark = pytest.mark.serverless_env

# The core tests of the code a step runs without Spark, run as they are in the environment.
CORE_TESTS = [
    "tests/core/test_validation.py",
    "tests/core/test_split.py",
    "tests/core/test_training_and_evaluation.py",
    "tests/core/test_batch_scoring.py",
    "tests/core/test_drift.py",
]


@pytest.fixture(scope="module")
def wheel(deployed_wheel) -> Path:
    return deployed_wheel


@pytest.fixture(scope="module")
def spec(wheel) -> dict:
    return databricks_env.environment_spec(f"/Workspace/bundle/artifacts/.internal/{wheel.name}")


@pytest.fixture(scope="module")
def env_python(spec, wheel, environment_python) -> Path:
    return serverless_venv(spec["dependencies"], wheel, environment_python)


@pytest.fixture(scope="module")
def overlay(wheel, tmp_path_factory) -> Path:
    """The wheel as installed into a task: first on its path."""
    return wheel_overlay(wheel, tmp_path_factory.mktemp("installed"))


def preinstalled() -> dict[str, SpecifierSet]:
    """The environment's packages in the list: name -> its version (``==``) or range (``~=``)."""
    pins = {}
    for line in ENVIRONMENT_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            pins[databricks_env.requirement_name(line)] = requirement.specifier
    return pins


def test_the_spec_is_environment_5_on_python_3_12(spec):
    assert spec["environment_version"] == "5" and databricks_env.PYTHON == "3.12"


def test_the_submitted_dependencies_resolve_on_the_environment_without_spark(env_python):
    packages = resolved(env_python)
    assert "iris-assets" in packages, "pip installed the wheel with the pins"
    assert "iris-assets" not in installed(env_python), "no stale copy of the code stays cached"
    replaced = {databricks_env.requirement_name(p): p for p in databricks_env.pins()}
    assert set(replaced) & set(preinstalled()) == {"mlflow-skinny"}
    for name, pinned in preinstalled().items():
        if name not in replaced:
            assert pinned.contains(packages[name]), (
                f"{name} replaced: the environment's is {pinned}"
            )
    assert "matplotlib" not in replaced, "the environment's matplotlib draws the PNG"
    assert packages["mlflow-skinny"] == version("mlflow-skinny"), "the orchestrator's MLflow"
    forbidden = set(databricks_env.FORBIDDEN_PACKAGES) | {"mlflow"}
    assert forbidden & set(packages) == set()
    assert set(PLATFORM_STAND_INS) & set(packages) == set(), "stand-ins are the fake's, not ours"
    python = subprocess.run(
        [str(env_python), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    assert python.stdout.strip() == "(3, 12)"


def task_environ(overlay: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "PYTHON"))}
    return {**env, "PYTHONPATH": str(overlay)}


def run_in_env(
    env_python: Path, overlay: Path, code: str, cwd: Path
) -> subprocess.CompletedProcess:
    env = task_environ(overlay)
    env.update(IRIS_TARGET="databricks", IRIS_ENV="dev", IRIS_HOME=str(cwd / "iris"))
    return subprocess.run(
        [str(env_python), "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def test_every_step_module_imports_from_the_installed_wheel(env_python, overlay, tmp_path):
    out = run_in_env(
        env_python,
        overlay,
        """
        import importlib, os, sys
        for step in ("ingest", "train", "evaluate", "score", "day_scoring", "spark_scoring"):
            importlib.import_module(f"iris_assets.steps.{step}")
        import iris_assets
        assert iris_assets.__file__.startswith(os.environ["PYTHONPATH"]), iris_assets.__file__
        assert not any(m.split(".")[0] in ("dagster", "deltalake", "pyspark") for m in sys.modules)
        from iris_assets.settings import load_settings
        print(load_settings().registry_uri)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "databricks-uc"


def test_the_core_step_code_passes_its_tests_on_the_environment(env_python, overlay, tmp_path):
    """Validation, split, training, evaluation, batch scoring and drift: their own tests, run
    with the environment's pandas, numpy, pyarrow and scikit-learn against the installed wheel
    (from outside the checkout, so the repository's iris_assets cannot be imported instead)."""
    config = tmp_path / "pytest.ini"
    config.write_text("[pytest]\nfilterwarnings =\n    ignore::DeprecationWarning\n")
    tests = [str(ROOT / path) for path in CORE_TESTS]
    out = subprocess.run(
        [str(env_python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-c", str(config)]
        + ["--rootdir", str(tmp_path), "--import-mode=importlib", *tests],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=task_environ(overlay),
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


def test_a_model_trained_on_the_environment_logs_with_its_mlflow_client(
    env_python, overlay, tmp_path
):
    """The train step's own log_and_register with the pinned mlflow-skinny (skops, signature,
    pinned requirements), against a file store standing in for Unity Catalog's registry.
    (Environment 5's own mlflow-skinny 3.8.1 fails here: no skops serialization format.)"""
    out = run_in_env(
        env_python,
        overlay,
        """
        import os, types
        import mlflow, sklearn
        from iris_assets.core.schema import FEATURE_COLUMNS
        from iris_assets.core.source import load_bundled_iris
        from iris_assets.core.split import assign_split
        from iris_assets.core.training import TrainingParams, train_classifier
        from iris_assets.steps.train import log_and_register, pip_requirements
        os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = "file:./mlruns"
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # a stand-in store: any works
        frame = load_bundled_iris()
        frame["split"] = assign_split(frame["flower_id"])
        model = train_classifier(frame, TrainingParams(C=1.0, max_iter=500, seed=42))
        example = frame[list(FEATURE_COLUMNS)].head(5)
        with mlflow.start_run():
            number = log_and_register(model, example, types.SimpleNamespace(model_name="iris"))
        loaded = mlflow.sklearn.load_model("models:/iris/" + number)
        print(mlflow.__version__, sklearn.__version__, number, *pip_requirements())
        features = frame[list(FEATURE_COLUMNS)]
        print((loaded.predict(features) == model.predict(features)).all())
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first.split()[:3] == [version("mlflow-skinny"), "1.6.1", "1"]
    assert "scikit-learn==1.6.1" in first.split() and "pandas==2.2.3" in first.split()
    assert second == "True"
