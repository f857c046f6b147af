"""The Spark table store's SQL, against a recording SparkSession stand-in.

No Spark with Delta runs here (Delta's jars come from Maven, which this machine cannot reach),
so these tests hold the statements the store sends and the data it hands to Spark.
"""

import json

import pandas as pd
import pytest

from iris_assets.core.schema import FEATURE_TABLE, INFERENCE_TABLE, REJECTS_TABLE
from iris_assets.core.spark_tables import SparkTableStore, create_table_sql
from iris_assets.core.tables import TableError

FEATURES = "iris_dev.ml.iris_features"


class Row(dict):
    def asDict(self):  # noqa: N802 (pyspark's name)
        return dict(self)


class FakeFrame:
    def __init__(self, spark, data: pd.DataFrame):
        self.spark, self.data = spark, data
        self.columns = list(data.columns)

    def select(self, *columns):
        return FakeFrame(self.spark, self.data[list(columns)])

    def dropDuplicates(self, keys):  # noqa: N802
        return FakeFrame(self.spark, self.data.drop_duplicates(keys))

    @property
    def schema(self):  # a StructType's one method the store uses
        return type("Schema", (), {"fieldNames": lambda _self: list(self.columns)})()

    def createOrReplaceTempView(self, name):  # noqa: N802
        self.spark.views[name] = self.data

    def collect(self):
        return [Row(r) for r in self.data.to_dict("records")]

    def toPandas(self):  # noqa: N802
        return self.data

    @property
    def write(self):
        return FakeWriter(self)


class FakeWriter:
    """DataFrame.write: a save is recorded as one statement naming its format, mode and options."""

    def __init__(self, frame):
        self.frame, self.settings = frame, []

    def format(self, name):
        self.settings.append(f"format={name}")
        return self

    def mode(self, name):
        self.settings.append(f"mode={name}")
        return self

    def option(self, key, value):
        self.settings.append(f"{key}={value}")
        return self

    def saveAsTable(self, name):  # noqa: N802
        self.frame.spark.statements.append(f"WRITE {name} " + " ".join(self.settings))
        self.frame.spark.written[name] = self.frame.data


class FakeCatalog:
    def __init__(self, tables):
        self.tables = tables

    def tableExists(self, name):  # noqa: N802
        return name in self.tables


class FakeConf:
    """spark.conf: a setting is recorded as the statement it stands for (SET / RESET)."""

    def __init__(self, spark):
        self.spark, self.values = spark, {}

    def set(self, key, value):
        self.values[key] = value
        self.spark.statements.append(f"SET {key}={value}")

    def unset(self, key):
        self.values.pop(key, None)
        self.spark.statements.append(f"RESET {key}")


class RecordingSpark:
    """Records every SQL statement; answers the few metadata queries the store makes."""

    def __init__(self, tables=None):
        self.statements: list[str] = []
        self.views: dict[str, pd.DataFrame] = {}
        self.written: dict[str, pd.DataFrame] = {}
        self.tables = tables or {}
        self.catalog = FakeCatalog(self.tables)
        self.history = [{"version": 7, "operationMetrics": {"numTargetRowsInserted": "3"}}]
        self.files = 3
        self.pending = 1
        self.properties = [{"key": "delta.constraints.species_known", "value": "species >= 0"}]
        self.conf = FakeConf(self)

    def sql(self, statement):
        self.statements.append(statement)
        if statement.startswith("DESCRIBE HISTORY"):
            return FakeFrame(self, pd.DataFrame(self.history))
        if statement.startswith("SHOW TBLPROPERTIES"):
            return FakeFrame(self, pd.DataFrame(self.properties))
        if statement.startswith("DESCRIBE DETAIL"):
            return FakeFrame(self, pd.DataFrame({"numFiles": [self.files]}))
        if statement.startswith("SELECT COUNT"):
            return FakeFrame(self, pd.DataFrame({"n": [self.pending]}))
        return FakeFrame(self, pd.DataFrame({"value": ["2026-11-01"]}))

    def createDataFrame(self, data, schema=None):  # noqa: N802
        return FakeFrame(self, data)

    def table(self, name):
        return FakeFrame(self, self.tables[name])


def feature_rows(ids):
    return pd.DataFrame({name: [1] * len(ids) for name in FEATURE_TABLE.schema.names}).assign(
        flower_id=ids
    )


def test_the_feature_table_is_created_with_not_null_primary_key_and_checks():
    spark = RecordingSpark()
    FEATURE_TABLE.ensure(SparkTableStore(spark), FEATURES)
    create, show, *alters = spark.statements
    assert create.startswith("CREATE TABLE IF NOT EXISTS `iris_dev`.`ml`.`iris_features` (")
    assert "`flower_id` BIGINT NOT NULL" in create
    assert "CONSTRAINT `iris_features_pk` PRIMARY KEY (`flower_id`)" in create
    assert "`ingested_at` TIMESTAMP NOT NULL" in create and create.endswith("USING DELTA")
    assert show.startswith("SHOW TBLPROPERTIES")
    assert alters == [
        "ALTER TABLE `iris_dev`.`ml`.`iris_features` ADD CONSTRAINT `measurements_positive` "
        "CHECK (sepal_length_cm > 0 AND sepal_width_cm > 0 AND petal_length_cm > 0 "
        "AND petal_width_cm > 0)"
    ], "species_known exists already and is not added twice"


def test_the_inference_table_has_change_data_feed_and_day_partitions():
    sql = create_table_sql(
        "iris_dev.ml.iris_inferences",
        INFERENCE_TABLE.schema,
        partition_by=list(INFERENCE_TABLE.partition_by),
        properties=dict(INFERENCE_TABLE.properties),
    )
    assert "PARTITIONED BY (`observed_date`)" in sql
    assert "TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')" in sql
    assert "`observed_at` TIMESTAMP," in sql, "observed_at may be null"


def test_a_nullable_primary_key_is_refused():
    with pytest.raises(TableError, match="must be NOT NULL"):
        create_table_sql("c.s.t", REJECTS_TABLE.schema, primary_key="flower_id")


def test_merge_updates_only_rows_whose_data_changed_and_skips_a_no_op():
    spark = RecordingSpark({FEATURES: feature_rows([])})
    store = SparkTableStore(spark)
    store.merge_upsert(
        FEATURES, feature_rows([1, 2, 2, 3]), "flower_id", compare=["sepal_length_cm", "split"]
    )
    [view] = spark.views
    assert spark.views[view]["flower_id"].tolist() == [1, 2, 3]
    pending, merge = spark.statements[:2]
    assert pending == (
        f"SELECT COUNT(*) AS n FROM `{view}` AS source LEFT JOIN `iris_dev`.`ml`.`iris_features` "
        "AS target ON target.`flower_id` = source.`flower_id` WHERE target.`flower_id` IS NULL "
        "OR NOT (target.`sepal_length_cm` <=> source.`sepal_length_cm`) "
        "OR NOT (target.`split` <=> source.`split`)"
    )
    assert merge == (
        f"MERGE INTO `iris_dev`.`ml`.`iris_features` AS target USING `{view}` AS source "
        "ON target.`flower_id` = source.`flower_id` "
        "WHEN MATCHED AND (NOT (target.`sepal_length_cm` <=> source.`sepal_length_cm`) "
        "OR NOT (target.`split` <=> source.`split`)) THEN UPDATE SET * "
        "WHEN NOT MATCHED THEN INSERT *"
    ), "unchanged matched rows are not rewritten (ingested_at is not compared)"

    spark.statements.clear()
    spark.pending = 0
    store.merge_upsert(FEATURES, feature_rows([1]), "flower_id", compare=["split"])
    assert not [s for s in spark.statements if s.startswith("MERGE")], "nothing to commit"


def test_reads_at_a_version_use_time_travel():
    spark = RecordingSpark({FEATURES: feature_rows([1])})
    SparkTableStore(spark).read(FEATURES, predicate="split = 'test'", version=12)
    assert spark.statements[-1] == (
        "SELECT * FROM `iris_dev`.`ml`.`iris_features` VERSION AS OF 12 WHERE split = 'test'"
    )


def test_a_partition_is_replaced_in_one_statement_with_the_columns_in_table_order():
    table = "iris_dev.ml.iris_inferences"
    spark = RecordingSpark({table: pd.DataFrame(columns=["flower_id", "observed_date"])})
    data = pd.DataFrame({"observed_date": ["2026-11-02"], "flower_id": [5], "extra": [0]})
    version = SparkTableStore(spark).replace_partition(table, data, "observed_date", "2026-11-02")
    [view] = spark.views
    assert list(spark.views[view].columns) == ["flower_id", "observed_date"]
    assert spark.statements[0] == (
        "INSERT INTO `iris_dev`.`ml`.`iris_inferences` REPLACE WHERE "
        f"`observed_date` = '2026-11-02' SELECT * FROM `{view}`"
    )
    assert spark.statements[1].startswith("DESCRIBE HISTORY"), "the version is read back"
    assert version == spark.history[0]["version"]


def test_reads_and_counts_push_predicates_to_spark():
    spark = RecordingSpark({FEATURES: feature_rows([1])})
    store = SparkTableStore(spark)
    store.read(FEATURES, columns=["flower_id"], predicate="split = 'train'", order_by="flower_id")
    assert spark.statements[-1] == (
        "SELECT `flower_id` FROM `iris_dev`.`ml`.`iris_features` "
        "WHERE split = 'train' ORDER BY `flower_id`"
    )
    store.count(FEATURES, "split = 'test'")
    assert spark.statements[-1] == (
        "SELECT COUNT(*) AS n FROM `iris_dev`.`ml`.`iris_features` WHERE split = 'test'"
    )
    with pytest.raises(TableError, match="does not exist"):
        store.read("iris_dev.ml.nothing")


def test_names_must_have_three_levels():
    with pytest.raises(TableError, match="three-level"):
        SparkTableStore(RecordingSpark()).count("iris_features")


def test_a_fragmented_table_is_optimized():
    spark = RecordingSpark()
    store = SparkTableStore(spark)
    assert store.compact_if_fragmented(FEATURES, max_files=64) is None
    spark.files = 65
    store.compact_if_fragmented(FEATURES, max_files=64)
    assert spark.statements[-1] == "OPTIMIZE `iris_dev`.`ml`.`iris_features`"


def test_a_table_made_before_the_run_column_gains_it_and_a_current_one_is_left_alone():
    from iris_assets.core.schema import INFERENCE_TABLE_SCHEMA

    name = "iris_dev.ml.iris_inferences"
    older = [c for c in INFERENCE_TABLE_SCHEMA.names if c != "run_id"]
    spark = RecordingSpark({name: pd.DataFrame(columns=older)})
    INFERENCE_TABLE.ensure(SparkTableStore(spark), name)
    alters = [s for s in spark.statements if s.startswith("ALTER TABLE")]
    assert alters == ["ALTER TABLE `iris_dev`.`ml`.`iris_inferences` ADD COLUMNS (`run_id` STRING)"]
    current = RecordingSpark({name: pd.DataFrame(columns=INFERENCE_TABLE_SCHEMA.names)})
    INFERENCE_TABLE.ensure(SparkTableStore(current), name)
    assert not [s for s in current.statements if s.startswith("ALTER TABLE")]


def test_a_tagged_partition_commit_carries_its_tags_as_user_metadata_and_reads_them_back():
    from iris_assets.core.spark_tables import USER_METADATA

    table = "iris_dev.ml.iris_inferences"
    spark = RecordingSpark({table: pd.DataFrame(columns=["flower_id", "observed_date"])})
    tags = {"iris.day": "2026-11-02", "iris.run_id": "r1.ab"}
    SparkTableStore(spark).replace_partition(
        table,
        pd.DataFrame({"observed_date": [], "flower_id": []}),
        "observed_date",
        "2026-11-02",
        tags,
    )
    write, *rest = spark.statements
    assert write == (
        "WRITE `iris_dev`.`ml`.`iris_inferences` format=delta mode=overwrite "
        "replaceWhere=`observed_date` = '2026-11-02' "
        f'{USER_METADATA}={{"iris.day": "2026-11-02", "iris.run_id": "r1.ab"}}'
    )
    assert not [s for s in rest if s.startswith(("SET", "INSERT"))], "no session conf is set"
    assert not spark.conf.values
    spark.history = [
        {"version": 8, "userMetadata": None},
        {"version": 9, "userMetadata": '{"iris.day": "2026-11-02", "iris.run_id": "r1.ab"}'},
        {"version": 7, "userMetadata": "free text someone wrote"},
    ]
    assert SparkTableStore(spark).commit_tags(table) == [tags, {}, {}]


def test_a_stage_is_written_once_read_back_and_dropped_even_when_its_reader_fails():
    """``staged`` stands in for cache() (not supported on serverless): one write, one drop."""
    spark = RecordingSpark()
    store = SparkTableStore(spark)
    frame = FakeFrame(spark, pd.DataFrame({"flower_id": [1, 2]}))
    spark.tables["`main`.`iris`.`_iris_stage_x`"] = frame.data

    with (
        pytest.raises(RuntimeError, match="commit failed"),
        store.staged(frame, "main.iris._iris_stage_x") as evaluated,
    ):
        assert evaluated.toPandas()["flower_id"].tolist() == [1, 2]
        raise RuntimeError("commit failed")
    assert spark.statements == [
        "WRITE `main`.`iris`.`_iris_stage_x` format=delta mode=overwrite",
        "DROP TABLE IF EXISTS `main`.`iris`.`_iris_stage_x`",
    ]


class ConflictsFirst(RecordingSpark):
    """Loses its first INSERT ... REPLACE WHERE to a concurrent commit, as Delta reports it."""

    def __init__(self, tables, error):
        super().__init__(tables)
        self.error, self.lost = error, 0

    def sql(self, statement):
        if statement.startswith("INSERT") and not self.lost:
            self.lost += 1
            self.statements.append(statement)
            raise self.error
        return super().sql(statement)


def test_a_conflicted_partition_replace_is_written_again_and_other_errors_are_not():
    table = "iris_dev.ml.iris_inferences"
    data = pd.DataFrame({"observed_date": ["2026-11-02"], "flower_id": [5]})
    conflict = RuntimeError(
        "[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to partition "
        "[observed_date=2026-11-02] by a concurrent update. Please try the operation again."
    )
    spark = ConflictsFirst({table: data.iloc[:0]}, conflict)
    version = SparkTableStore(spark).replace_partition(table, data, "observed_date", "2026-11-02")
    inserts = [s for s in spark.statements if s.startswith("INSERT")]
    assert len(inserts) == 2 and version == spark.history[0]["version"]

    spark = ConflictsFirst({table: data.iloc[:0]}, RuntimeError("[TABLE_OR_VIEW_NOT_FOUND] x"))
    with pytest.raises(RuntimeError, match="TABLE_OR_VIEW_NOT_FOUND"):
        SparkTableStore(spark).replace_partition(table, data, "observed_date", "2026-11-02")
    assert len([s for s in spark.statements if s.startswith("INSERT")]) == 1


def test_a_conflicted_tagged_replace_that_already_landed_is_not_written_twice(monkeypatch):
    table = "iris_dev.ml.iris_inferences"
    tags = {"iris.day": "2026-11-02", "iris.run_id": "r1.ab"}
    spark = RecordingSpark({table: pd.DataFrame(columns=["flower_id", "observed_date"])})
    writes = []

    def save(self, name):
        writes.append(name)
        if len(writes) == 1:  # the commit landed, yet its writer was told it conflicted
            spark.history = [{"version": 9, "userMetadata": json.dumps(tags)}]
            raise RuntimeError("ConcurrentTransactionException: [DELTA_CONCURRENT_TRANSACTION]")

    monkeypatch.setattr(FakeWriter, "saveAsTable", save)
    data = pd.DataFrame({"observed_date": ["2026-11-02"], "flower_id": [5]})
    store = SparkTableStore(spark)
    assert store.replace_partition(table, data, "observed_date", "2026-11-02", tags) == 9
    assert len(writes) == 1
