import dagster as dg
import pytest

from iris_assets.definitions import build_definitions


@pytest.fixture
def graph(settings):
    """The real definitions for this test's settings, with a throwaway Dagster instance."""
    with dg.instance_for_test() as instance:
        yield build_definitions(settings), instance
