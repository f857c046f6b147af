"""The local score step's champion, read from MLflow's sqlite registry without MLflow.

Every answer is compared with MLflow's own client on the same database: the version, its tags,
aliases, run and source, and the folder MLflow would download the model from. What the reader
does not know (another schema revision, a non-skops model, extra trusted types, files not on
this disk, a name that climbs out of the folder) must answer None, so the step asks MLflow.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from iris_assets.core.registry import ModelRegistry
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.settings import load_settings
from iris_assets.steps import local_champion
from iris_assets.steps.local_champion import load_skops, read_champion
from iris_assets.steps.score import champion_loader

REPO = Path(__file__).resolve().parents[2]


def iris_x() -> pd.DataFrame:
    return load_iris(as_frame=True).data.set_axis(list(FEATURE_COLUMNS), axis=1)


@pytest.fixture(scope="module")
def logged_home(tmp_path_factory, mlflow_db_template) -> Path:
    """A home whose registry holds two versions that disagree on some flowers."""
    import mlflow
    import mlflow.sklearn

    home = tmp_path_factory.mktemp("local-champion") / "home"
    settings = load_settings({"IRIS_HOME": str(home)})
    settings.env_home.mkdir(parents=True)
    shutil.copy(mlflow_db_template, settings.mlflow_db)
    X, y = iris_x(), load_iris().target
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
        env.setenv("MLFLOW_REGISTRY_URI", settings.registry_uri)
        experiment = mlflow.create_experiment(
            "local-champion", artifact_location=(settings.env_home / "mlartifacts").as_uri()
        )
        for C in (100.0, 0.01):  # the second one disagrees with the first on some rows
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))
            with mlflow.start_run(experiment_id=experiment):
                mlflow.sklearn.log_model(
                    model.fit(X, y),
                    name="model",
                    registered_model_name=settings.model_name,
                    serialization_format="skops",
                    pip_requirements=["scikit-learn"],
                )
    return home


@pytest.fixture
def home(logged_home, tmp_path, monkeypatch) -> Path:
    """This test's copy of the registry (the model files stay the module's, read only)."""
    copy = tmp_path / "home"
    (copy / "dev").mkdir(parents=True)
    shutil.copy(logged_home / "dev" / "mlflow.db", copy / "dev" / "mlflow.db")
    settings = load_settings({"IRIS_HOME": str(copy)})
    for key, value in settings.step_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    return copy


def settings_of(home: Path):
    return load_settings({"IRIS_HOME": str(home)})


def mlflow_answer(home: Path):
    """(VersionInfo, local model folder) as MLflow's client gives them, or None."""
    from mlflow import MlflowClient

    settings = settings_of(home)
    champion = ModelRegistry(settings).champion()
    if champion is None:
        return None
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    uri = client.get_model_version_download_uri(settings.model_name, champion.version)
    return champion, Path(uri.removeprefix("file://"))


def assert_same_as_mlflow(home: Path) -> None:
    ours, theirs = read_champion(settings_of(home)), mlflow_answer(home)
    if theirs is None:
        assert ours is None
        return
    assert ours is not None, "MLflow names a champion the reader missed"
    (mine, path), (info, folder) = ours, theirs
    assert (mine.name, mine.version, mine.run_id, mine.source, mine.tags) == (
        info.name,
        info.version,
        info.run_id,
        info.source,
        info.tags,
    )
    assert set(mine.aliases) == set(info.aliases)
    assert path.parent == folder


def registry(home: Path) -> ModelRegistry:
    return ModelRegistry(settings_of(home))


def test_every_champion_state_reads_as_mlflow_reads_it(home):
    models = registry(home)
    assert_same_as_mlflow(home)  # two versions, no champion
    models.set_alias("champion", 1)
    models.set_tags(1, {"approval": "approved", "approved_by": "ana"})
    assert_same_as_mlflow(home)
    assert read_champion(settings_of(home))[0].version == "1"
    models.set_alias("challenger", 1)
    models.set_alias("champion", 2)  # promoted: the alias moves
    assert_same_as_mlflow(home)
    assert read_champion(settings_of(home))[0].version == "2"
    models.client.delete_registered_model_alias(models.name, "champion")
    assert_same_as_mlflow(home)
    assert read_champion(settings_of(home)) is None
    models.set_alias("champion", 1)
    models.client.delete_model_version(models.name, "1")  # its alias goes with it
    assert_same_as_mlflow(home)
    assert read_champion(settings_of(home)) is None


def test_an_alias_whose_model_row_is_gone_is_no_champion_as_for_mlflow(home):
    """A registry edited by hand (foreign keys off): the alias and the version are still there,
    the registered model is not. MLflow answers no champion; so must the reader."""
    registry(home).set_alias("champion", 1)
    db = sqlite3.connect(home / "dev" / "mlflow.db")
    with db:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("UPDATE registered_models SET name = name || 'x'")
    db.close()
    assert mlflow_answer(home) is None
    assert read_champion(settings_of(home)) is None


def test_no_registered_model_or_no_database_is_none(tmp_path, mlflow_db_template):
    empty = tmp_path / "empty"
    (empty / "dev").mkdir(parents=True)
    assert read_champion(settings_of(empty)) is None  # no mlflow.db at all
    assert not (empty / "dev" / "mlflow.db").exists()  # and none was made by reading
    shutil.copy(mlflow_db_template, empty / "dev" / "mlflow.db")
    assert_same_as_mlflow(empty)


def test_the_model_loaded_is_the_version_read_even_if_the_alias_moves_before_the_load(home):
    models = registry(home)
    models.set_alias("champion", 1)
    champion, load = champion_loader(settings_of(home))
    models.set_alias("champion", 2)  # promoted between the lookup and the load
    model = load()
    import mlflow.sklearn

    X = iris_x()
    first = mlflow.sklearn.load_model(f"models:/{models.name}/1").predict_proba(X)
    second = mlflow.sklearn.load_model(f"models:/{models.name}/2").predict_proba(X)
    assert not np.array_equal(first.argmax(1), second.argmax(1))  # the attack can be seen
    assert champion.version == "1"
    np.testing.assert_array_equal(model.predict_proba(X), first)


def test_the_template_registry_is_a_schema_revision_the_reader_knows(mlflow_db_template):
    # Fails when constraints.txt moves MLflow to a schema this reader was not checked against:
    # check the queries in steps/local_champion.py against it, then add its revision.
    with sqlite3.connect(mlflow_db_template) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in local_champion.KNOWN_REVISIONS


def _model_folder(home: Path) -> Path:
    return read_champion(settings_of(home))[1].parent


def test_what_the_reader_does_not_know_goes_to_mlflow(home, tmp_path):
    registry(home).set_alias("champion", 2)
    settings = settings_of(home)
    assert read_champion(settings) is not None
    db = sqlite3.connect(settings.mlflow_db)
    original = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    db.commit()
    assert read_champion(settings) is None
    champion, load = champion_loader(settings)  # the step still scores, through MLflow
    import mlflow.sklearn

    assert load.func is mlflow.sklearn.load_model and champion.version == "2"
    db.execute("UPDATE alembic_version SET version_num = ?", (original,))
    db.commit()

    # Files that are not on this disk, or not there any more.
    (location,) = db.execute(
        "SELECT storage_location FROM model_versions WHERE version = 2"
    ).fetchone()
    for elsewhere in ("s3://bucket/models/m-1/artifacts", "file://host/models", "", None):
        db.execute("UPDATE model_versions SET storage_location = ? WHERE version = 2", (elsewhere,))
        db.commit()
        assert read_champion(settings) is None, elsewhere
    moved = tmp_path / "moved"
    shutil.copytree(Path(location.removeprefix("file://")), moved)
    db.execute(
        "UPDATE model_versions SET storage_location = ? WHERE version = 2", (moved.as_uri(),)
    )
    db.commit()
    assert read_champion(settings)[1] == moved / "model.skops"
    db.close()

    # An MLmodel that is not a plain skops model, or adds trusted types, or names a file
    # outside its folder.
    mlmodel = (moved / "MLmodel").read_text()
    for edit in (
        lambda t: t.replace("serialization_format: skops", "serialization_format: cloudpickle"),
        lambda t: t.replace("skops_trusted_types: null", "skops_trusted_types: [os.system]"),
        lambda t: t.replace("pickled_model: model.skops", "pickled_model: ../model.skops"),
        lambda t: t.replace("pickled_model: model.skops", "pickled_model: .."),
        lambda t: t.replace("code: null", "code: code"),
        lambda t: "flavors: [not, a, mapping]\n",
        lambda t: "{{{ not yaml",
    ):
        changed = edit(mlmodel)
        assert changed != mlmodel
        (moved / "MLmodel").write_text(changed)
        assert read_champion(settings) is None, changed[:80]
    (moved / "MLmodel").write_text(mlmodel)
    (moved / "model.skops").unlink()
    assert read_champion(settings) is None


def test_a_workspace_goes_to_mlflow(home, monkeypatch):
    registry(home).set_alias("champion", 1)
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    assert read_champion(settings_of(home)) is None


def test_a_model_file_with_an_untrusted_type_is_refused(home, tmp_path):
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    registry(home).set_alias("champion", 1)
    crafted = tmp_path / "model.skops"
    skops.io.dump({"run": os.system}, crafted)
    with pytest.raises(UntrustedTypesFoundException):
        load_skops(crafted)


def test_a_damaged_model_file_fails_naming_the_version_the_file_and_a_way_out(home, tmp_path):
    from concurrent.futures import Future

    from iris_assets.core.landing import LandingArea, simulate_flowers
    from iris_assets.steps.day_scoring import score_day_locally
    from iris_assets.steps.local_champion import ModelFileError, load_champion
    from iris_assets.steps.stores import table_store

    registry(home).set_alias("champion", 1)
    settings = settings_of(home)
    champion, path = read_champion(settings)
    damaged = tmp_path / "model.skops"  # the module's files stay whole: a truncated copy
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError) as failed:
        load_champion(champion, damaged)
    message = str(failed.value)
    assert f"champion v1 of {champion.name}" in message and str(damaged) in message
    assert "BadZipFile" in message and "`iris rollback --by NAME --reason TEXT`" in message
    assert load_champion(champion, path) is not None  # the whole file still loads

    # The score step waits for its model before writing: a day scored with it stores nothing.
    day = "2026-11-26"
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(20, day), day)
    store = table_store(settings)
    model = Future()
    model.set_exception(failed.value)
    with pytest.raises(ModelFileError):
        score_day_locally(store, settings, day, champion, model)
    assert not store.exists(settings.inference_table)
    assert not store.exists(settings.rejects_table)


def test_the_local_score_step_loads_its_champion_without_importing_mlflow(home):
    registry(home).set_alias("champion", 2)
    code = (
        "import json, sys\n"
        "from iris_assets.settings import load_settings\n"
        "from iris_assets.steps.score import champion_loader\n"
        "champion, load = champion_loader(load_settings())\n"
        "model = load()\n"
        "print(json.dumps({'version': champion.version, 'model': type(model).__name__,\n"
        "    'imported': sorted(m for m in sys.modules\n"
        "                       if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'alembic'))}))\n"
    )
    env = {**os.environ, **settings_of(home).step_env(), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"version": "2", "model": "Pipeline", "imported": []}


def test_no_champion_yet_fails_with_how_to_approve(home):
    from iris_assets.core.registry import RegistryError

    assert read_champion(settings_of(home)) is None  # two versions, neither the champion
    with pytest.raises(RegistryError, match=r"no 'champion' version yet.*iris approve N --by"):
        champion_loader(settings_of(home))
