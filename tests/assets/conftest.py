import dagster as dg
import pytest

from iris_assets.definitions import build_definitions
from tests.assets.helpers import materialize, step_failure_messages


@pytest.fixture
def graph(settings):
    """The real definitions for this test's settings, with a throwaway Dagster instance."""
    with dg.instance_for_test() as instance:
        yield build_definitions(settings), instance


@pytest.fixture
def champion(settings, graph):
    """Version 1, trained by the real steps on the bundled Iris, aliased champion directly."""
    from iris_assets.core.registry import ModelRegistry
    from iris_assets.settings import CHAMPION_ALIAS

    defs, instance = graph
    result = materialize(defs, instance, "iris_features", "challenger_model")
    assert result.success, step_failure_messages(result)
    ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")
    return "1"
