"""Review 13: model_performance config out of bounds is refused before anything is written.

``confidence=1.0`` used to raise StatisticsError after the labels and rejects tables had been
replaced; ``min_labelled=0`` judged a day with no labels (accuracy nan) as a pass.
"""

import pandas as pd
import pytest

from iris_assets.core.landing import LandingArea
from iris_assets.core.performance import DecayPolicy
from iris_assets.steps.performance import labelled_flowers_path
from iris_assets.steps.stores import table_store
from tests.assets.helpers import run_job, step_failure_messages

DAY = "2026-11-22"


@pytest.mark.parametrize(
    "bad",
    [
        {"confidence": 1.0},
        {"confidence": 0.3},
        {"min_labelled": 0},
        {"min_labelled": -5},
        {"margin": -0.1},
        {"min_accuracy": 1.5},
        {"min_accuracy": 0.0},
    ],
)
def test_the_decay_policy_refuses_values_out_of_bounds(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"out of bounds \\({name}="):
        DecayPolicy(**bad)


@pytest.mark.parametrize("bad", [{"confidence": 1.0}, {"min_labelled": 0}])
def test_a_run_with_config_out_of_bounds_fails_before_writing(settings, graph, bad):
    defs, instance = graph
    LandingArea(settings.labels_landing_dir).write_batch(
        pd.DataFrame({"flower_id": [1], "species": ["setosa"]}), DAY
    )
    result = run_job(
        defs,
        instance,
        "performance_job",
        partition_key=DAY,
        run_config={"ops": {"model_performance": {"config": bad}}},
    )
    assert not result.success
    assert next(iter(bad)) in step_failure_messages(result)
    store = table_store(settings)
    for table in (settings.labels_table, settings.rejects_table, settings.performance_table):
        assert not store.exists(table), f"{table} was written by a refused run"
    assert not labelled_flowers_path(settings).exists()
