"""Review 13c: a catalog name Unity Catalog accepts (quoted) must work end to end."""

import mlflow
import pytest

from iris_assets.core.evidence import latest_record_id
from iris_assets.settings import check_uc_name


@pytest.mark.xfail(
    strict=True,
    reason="review13c: check_uc_name accepts an apostrophe (Unity Catalog allows it, quoted), "
    "but latest_record_id pastes model_name into the MLflow filter unescaped: the search "
    "raises instead of finding no record",
)
def test_an_apostrophe_in_the_catalog_does_not_break_the_evaluation_record_search(tmp_path):
    catalog = check_uc_name("IRIS_CATALOG", "o'brien")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("iris-review")
    assert latest_record_id(client, experiment, f"{catalog}.iris_dev.iris_model", "1") is None
