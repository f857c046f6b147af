"""A whole-source MERGE on Spark: the statements the store sends, checked by Spark itself.

Delta's jars are not here, so the MERGE cannot run; its text is parsed by a real local Spark
(the parser that refuses what Databricks' would), and the count that decides whether to commit
runs for real against a local catalog table.
"""

import pandas as pd
import pytest

from iris_assets.core.spark_tables import (
    SparkTableStore,
    merge_sql,
    missing_sql,
    pending_sql,
    spark_string,
)
from tests import local_spark
from tests.core.test_spark_tables import FEATURES, FakeFrame, RecordingSpark, feature_rows

SOURCE = "/Volumes/iris/ml/landing/o'brien\\labelled_flowers.parquet"


class CountingSpark(RecordingSpark):
    """Answers the pending (changed rows) and missing (rows to delete) counts separately."""

    def __init__(self, tables, changed: int, missing: int):
        super().__init__(tables)
        self.changed, self.missing = changed, missing

    def sql(self, statement):
        if statement.startswith("SELECT COUNT"):
            self.statements.append(statement)
            n = self.missing if "LEFT ANTI JOIN" in statement else self.changed
            return FakeFrame(self, pd.DataFrame({"n": [n]}))
        return super().sql(statement)


def merges(spark):
    return [s for s in spark.statements if s.startswith("MERGE")]


def test_rows_the_source_no_longer_offers_are_deleted_in_the_same_merge():
    spark = CountingSpark({FEATURES: feature_rows([])}, changed=0, missing=2)
    spark.history = [{"version": 8, "operationMetrics": {"numTargetRowsDeleted": "2"}}]
    result = SparkTableStore(spark).merge_upsert(
        FEATURES, feature_rows([1, 2]), "flower_id", compare=["split"], whole=("source", SOURCE)
    )
    [merge] = merges(spark)
    assert merge.endswith(
        f"WHEN NOT MATCHED BY SOURCE AND target.`source` = {spark_string(SOURCE)} THEN DELETE"
    )
    assert result == {"inserted": 0, "updated": 0, "deleted": 2, "version": 8}, (
        "only deletions pending is still a commit"
    )


def test_an_unchanged_whole_source_commits_nothing():
    spark = CountingSpark({FEATURES: feature_rows([])}, changed=0, missing=0)
    result = SparkTableStore(spark).merge_upsert(
        FEATURES, feature_rows([1, 2]), "flower_id", compare=["split"], whole=("source", SOURCE)
    )
    assert not merges(spark) and result["deleted"] == 0


def test_without_whole_nothing_is_ever_deleted():
    spark = CountingSpark({FEATURES: feature_rows([])}, changed=1, missing=5)
    SparkTableStore(spark).merge_upsert(FEATURES, feature_rows([1]), "flower_id")
    [merge] = merges(spark)
    assert "NOT MATCHED BY SOURCE" not in merge
    assert not [s for s in spark.statements if "LEFT ANTI JOIN" in s]


@pytest.fixture(scope="module")
def spark():
    return local_spark.session(shuffle_partitions=1)


def test_spark_parses_the_merge_and_reads_the_source_name_exactly(spark):
    statement = merge_sql(FEATURES, "v", "flower_id", ["split"], ("source", SOURCE))
    plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(statement)
    assert plan.getClass().getSimpleName() == "MergeIntoTable"
    [action] = list(_scala(plan.notMatchedBySourceActions()))
    assert action.toString().startswith("deleteaction(Some(('target.source = ")
    [row] = spark.sql(f"SELECT {spark_string(SOURCE)} AS v").collect()
    assert row.v == SOURCE, "quotes and backslashes in a path survive"


def _scala(seq):
    iterator = seq.iterator()
    while iterator.hasNext():
        yield iterator.next()


def test_the_counts_that_decide_a_commit_are_right_on_a_real_table(spark):
    name = "spark_catalog.default.features"
    held = pd.DataFrame(
        {"flower_id": [1, 2, 3, 4], "split": ["train"] * 4, "source": [SOURCE] * 3 + ["other"]}
    )
    spark.createDataFrame(held).write.mode("overwrite").saveAsTable(name)
    offered = pd.DataFrame(
        {"flower_id": [1, 5], "split": ["test", "train"], "source": [SOURCE] * 2}
    )
    spark.createDataFrame(offered).createOrReplaceTempView("offered")
    [missing] = spark.sql(missing_sql(name, "offered", "flower_id", ("source", SOURCE))).collect()
    assert missing.n == 2, "flowers 2 and 3 are gone from the source; 4 is another source's"
    [pending] = spark.sql(pending_sql(name, "offered", "flower_id", ["split", "source"])).collect()
    assert pending.n == 2, "flower 1 changed, flower 5 is new"
