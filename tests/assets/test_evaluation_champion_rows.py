"""Through the real graph: a flower the champion trained on (train side, corrected so its hash
says test: it keeps train), dropped by mistake and re-added, lands on test; evaluation leaves it
out of the rows the champion (and the challenger) are scored on, and says so."""

import pandas as pd

from iris_assets.core.registry import ModelRegistry
from iris_assets.core.source import load_source
from iris_assets.core.split import split_by_measurements
from iris_assets.settings import CHAMPION_ALIAS
from iris_assets.steps.stores import table_store
from tests.assets.helpers import materialization_metadata, materialize, step_failure_messages
from tests.assets.test_monitoring_retraction import ingest


def test_the_champion_is_not_scored_on_a_flower_it_trained_on(settings, graph, tmp_path):
    defs, instance = graph
    base = load_source(None)
    sides = split_by_measurements(base)
    m1 = base[sides == "train"].iloc[0]  # measurements whose hash says train
    m2 = base[sides == "test"].iloc[0]  # and a correction whose hash says test
    extra = base.iloc[[5]].iloc[0]  # a second flower so the file is never empty
    mine = tmp_path / "collector.csv"

    def offer(flowers):
        frame = pd.DataFrame(flowers).assign(flower_id=[1001 + i for i in range(len(flowers))])
        frame.to_csv(mine, index=False)
        ingest(graph, str(mine))
        held = table_store(settings).read(settings.feature_table, predicate="flower_id = 1001")
        return held["split"].tolist()

    ingest(graph, "")
    assert offer([m1, extra]) == ["train"]
    config = {"ops": {"iris_features": {"config": {"source_path": str(mine)}}}}
    trained = materialize(defs, instance, "iris_features", "challenger_model", run_config=config)
    assert trained.success, step_failure_messages(trained)
    ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")  # trained with flower 1001 on train

    assert offer([m2, extra]) == ["train"], "a corrected flower keeps its side"
    pd.DataFrame([extra]).assign(flower_id=[1002]).to_csv(mine, index=False)
    ingest(graph, str(mine))  # flower 1001 dropped by mistake ...
    assert offer([m2, extra]) == ["test"]  # ... and re-added: its hash's side now

    result = materialize(
        defs, instance, "iris_features", "challenger_model", "evaluation_report", run_config=config
    )
    assert result.success, step_failure_messages(result)
    metadata = materialization_metadata(result, "evaluation_report")
    assert metadata["champion_version"] == "1"
    assert metadata["held_out_champion_trained_excluded"] == 1
    split = table_store(settings).read(settings.feature_table, predicate="split = 'test'")
    copies = metadata["held_out_copies_excluded"]
    assert metadata["held_out_rows"] == len(split) - copies - 1
