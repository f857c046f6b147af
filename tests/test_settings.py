from pathlib import Path

import pytest

from iris_assets.settings import SettingsError, load_settings


def test_names_follow_catalog_schema_and_env():
    settings = load_settings({"IRIS_ENV": "prod", "IRIS_HOME": "/tmp/h"})
    assert settings.feature_table == "iris_prod.ml.iris_features"
    assert settings.model_name == "iris_prod.ml.iris_model"
    assert settings.inference_table == "iris_prod.ml.iris_inferences"
    assert settings.endpoint_name == "iris-prod"
    assert settings.table_path(settings.feature_table) == Path(
        "/tmp/h/prod/warehouse/iris_prod/ml/iris_features"
    )


def test_defaults_are_local_dev_under_dot_iris():
    settings = load_settings({})
    assert (settings.env, settings.target) == ("dev", "local")
    assert settings.home == Path(".iris").resolve()
    assert settings.tracking_uri == f"sqlite:///{settings.home}/dev/mlflow.db"
    assert settings.serving_url.startswith("http://127.0.0.1:")


def test_catalog_and_schema_can_be_overridden():
    settings = load_settings({"IRIS_CATALOG": "main", "IRIS_SCHEMA": "flowers"})
    assert settings.model_name == "main.flowers.iris_model"


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"IRIS_ENV": "staging"}, "IRIS_ENV='staging'"),
        ({"IRIS_TARGET": "aws"}, "IRIS_TARGET='aws'"),
        ({"IRIS_SERVING_PORT": "http"}, "IRIS_SERVING_PORT='http'"),
    ],
)
def test_bad_settings_are_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)


def test_step_env_round_trips_to_the_same_settings():
    settings = load_settings({"IRIS_ENV": "prod", "IRIS_HOME": "/tmp/x", "IRIS_SERVING_PORT": "9"})
    assert load_settings(settings.step_env()) == settings


def test_on_databricks_the_landing_area_is_the_landing_volume():
    settings = load_settings({"IRIS_TARGET": "databricks", "IRIS_ENV": "prod"})
    assert settings.landing_dir == Path("/Volumes/iris_prod/ml/landing/new_flowers")
    assert settings.registry_uri == "databricks-uc"


def test_a_dagster_plus_deployment_names_the_env_when_iris_env_is_unset():
    assert load_settings({"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"}).env == "prod"
    assert load_settings({"DAGSTER_CLOUD_DEPLOYMENT_NAME": "feature-x"}).env == "dev"
    both = {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod", "IRIS_ENV": "dev"}
    assert load_settings(both).env == "dev"
