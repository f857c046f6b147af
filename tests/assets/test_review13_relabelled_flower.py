"""Review 13: one flower labelled on two observed days has one answer: its latest day's label.

Each day's run replaces only its day in the labels table, so both labels stay there (each is
that day's truth about its prediction). What retraining ingests, labelled_flowers.parquet,
held both rows: ingest then quarantined one as a duplicate flower_id, which one depending on
the order the runs happened to write the days in.
"""

import pandas as pd
import pytest

from iris_assets.core.label_evidence import label_evidence
from iris_assets.core.landing import LandingArea
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.steps.ingest import source_identity
from iris_assets.steps.performance import labelled_flowers_path
from iris_assets.steps.stores import table_store
from tests.assets.helpers import run_job, step_failure_messages
from tests.assets.test_monitoring_retraction import ingest, labelled_rows
from tests.assets.test_monitoring_retraining import score

EARLY, LATE = "2026-11-24", "2026-11-26"


def judge(graph, day):
    result = run_job(*graph, "performance_job", partition_key=day)
    assert result.success, step_failure_messages(result)


def test_a_flower_labelled_on_two_days_trains_with_its_latest_label(settings, graph, champion):
    early = score(graph, settings, EARLY, rows=60).sort_values("flower_id")
    seen_again = early.iloc[:10]
    # The same ten flowers observed again two days later, measured a little differently.
    again = seen_again[["flower_id", *FEATURE_COLUMNS]].assign(
        sepal_length_cm=seen_again["sepal_length_cm"] + 0.1
    )
    LandingArea(settings.landing_dir).write_batch(again, LATE)
    assert run_job(*graph, "inference_job", partition_key=LATE).success
    labels = LandingArea(settings.labels_landing_dir)
    first = early.iloc[:40]
    labels.write_batch(pd.DataFrame({"flower_id": first["flower_id"], "species": 0}), EARLY)
    labels.write_batch(pd.DataFrame({"flower_id": seen_again["flower_id"], "species": 2}), LATE)
    judge(graph, LATE)
    judge(graph, EARLY)  # the earlier day judged last: its rows are written after the later's

    stored = table_store(settings).read(settings.labels_table)
    assert len(stored) == 50, "each day keeps its own label of the flower"
    exported = pd.read_parquet(labelled_flowers_path(settings)).set_index("flower_id")
    assert exported.index.is_unique and len(exported) == 40
    again_ids = seen_again["flower_id"].tolist()
    assert set(exported.loc[again_ids, "species"]) == {2}, "the latest day's label counts"
    assert exported.loc[again_ids, "sepal_length_cm"].tolist() == pytest.approx(
        again["sepal_length_cm"].tolist()
    ), "with that day's measurements"

    ingested = ingest(graph, str(labelled_flowers_path(settings)))
    assert ingested["rows_inserted"] == 40 and ingested["rows_rejected"] == 0
    held = labelled_rows(settings)
    assert set(held.loc[again_ids, "species"]) == {2}
    evidence = label_evidence(
        table_store(settings), settings, source_identity(str(labelled_flowers_path(settings)))
    )
    assert (evidence.retracted, evidence.corrected) == ({}, {}), "nothing retracted or corrected"
    assert evidence.new == () and evidence.held == 40


def test_latest_labels_keeps_one_row_per_flower_from_its_latest_day():
    from iris_assets.core.labels import latest_labels

    rows = pd.DataFrame(
        {
            "flower_id": [7, 8, 7, 9, 7],
            "species": [0, 1, 2, 1, 1],
            "observed_date": ["2026-11-26", "2026-11-24", "2026-11-24", "2026-11-25", "2026-11-25"],
        }
    )
    kept = latest_labels(rows).set_index("flower_id")
    assert sorted(kept.index) == [7, 8, 9]
    assert kept.loc[7, "species"] == 0 and kept.loc[8, "species"] == 1
