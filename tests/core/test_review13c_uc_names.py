"""Review 13c: a catalog name the evaluation record search cannot quote is refused up front.

Unity Catalog takes an apostrophe in a quoted name, but the model name is a value in an MLflow
search filter (``core.evidence.latest_record_id``), whose grammar has no escape for a quote
inside a quoted string: such a name is refused where settings are read, saying why."""

import mlflow
import pytest

from iris_assets.core.evidence import latest_record_id
from iris_assets.settings import SettingsError, check_uc_name


def test_an_apostrophe_in_the_catalog_is_refused_saying_why():
    with pytest.raises(SettingsError) as refused:
        check_uc_name("IRIS_CATALOG", "o'brien")
    message = str(refused.value)
    assert message.startswith('IRIS_CATALOG="o\'brien" is not a Unity Catalog name: it holds')
    assert "MLflow search filters" in message and "apostrophe" in message


def test_a_name_the_check_accepts_searches_cleanly(tmp_path):
    catalog = check_uc_name("IRIS_CATALOG", "o-brien_2026")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("iris-review")
    assert latest_record_id(client, experiment, f"{catalog}.iris_dev.iris_model", "1") is None
