"""The step code uses only the Spark that Databricks serverless and Unity Catalog allow.

Serverless runs Spark Connect on a standard-access-mode cluster: no RDD API, no SparkContext or
JVM handles, no DataFrame caching, only the listed Spark confs, and no ``input_file_name()``
(Unity Catalog: use the ``_metadata.file_path`` column). Sources: shared/databricks/SERVERLESS.md
§2. An AST scan of every module a step task can import holds the code to that list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "iris_assets"
# Everything a Databricks step task imports: the steps, the core they use, the settings.
TASK_CODE = sorted(
    [*(PACKAGE / "steps").glob("*.py"), *(PACKAGE / "core").glob("*.py"), PACKAGE / "settings.py"]
)

# Attribute or function names serverless rejects, with the reason shown on a violation.
DENIED_NAMES = {
    "input_file_name": "not available on Unity Catalog: select _metadata.file_path",
    "input_file_block_start": "not available on Unity Catalog: use _metadata.file_block_start",
    "input_file_block_length": "not available on Unity Catalog: use _metadata.file_block_length",
    "sparkContext": "SparkContext is not supported on serverless (Spark Connect only)",
    "rdd": "RDD APIs are not supported on serverless",
    "parallelize": "SparkContext (RDD) API, not supported on serverless",
    "_jvm": "no JVM access on serverless / standard access mode",
    "_jdf": "no JVM access on serverless / standard access mode",
    "_jsc": "no JVM access on serverless / standard access mode",
    "sqlContext": "sqlContext is not supported on serverless",
    "cache": "DataFrame.cache() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "persist": "DataFrame.persist() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "unpersist": "DataFrame.unpersist() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "createGlobalTempView": "global temp views are not supported on serverless",
    "createOrReplaceGlobalTempView": "global temp views are not supported on serverless",
    "checkpoint": "needs a SparkContext checkpoint dir; only localCheckpoint works",
}
# SQL text serverless rejects.
DENIED_SQL = {
    "GLOBAL TEMP": "global temp views are not supported on serverless",
    "REFRESH TABLE": "fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "CACHE TABLE": "caching is not supported on serverless",
    "INPUT_FILE_NAME": "not available on Unity Catalog: select _metadata.file_path",
}
# Spark confs a serverless task may set (the session time zone; ANSI mode only with limits).
ALLOWED_CONFS = {"spark.sql.session.timeZone"}


def violations(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.alias):
            name = node.name.rsplit(".", 1)[-1]
        if name in DENIED_NAMES:
            found.append(f"{filename}:{node.lineno}: {name}: {DENIED_NAMES[name]}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.upper()
            for phrase, why in DENIED_SQL.items():
                if phrase in text:
                    found.append(f"{filename}:{node.lineno}: {phrase!r} in SQL: {why}")
        if isinstance(node, ast.Call) and _is_conf_set(node.func):
            key = node.args[0] if node.args else None
            if not (isinstance(key, ast.Constant) and key.value in ALLOWED_CONFS):
                shown = ast.unparse(key) if key is not None else "?"
                found.append(f"{filename}:{node.lineno}: spark.conf.set({shown}): not allowed")
    return found


def _is_conf_set(func: ast.expr) -> bool:
    """``<x>.conf.set(...)`` or ``.config(...)`` on a session builder."""
    if isinstance(func, ast.Attribute) and func.attr == "set":
        return isinstance(func.value, ast.Attribute) and func.value.attr == "conf"
    return isinstance(func, ast.Attribute) and func.attr == "config"


@pytest.mark.parametrize("path", TASK_CODE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_task_code_uses_only_what_serverless_spark_allows(path):
    assert violations(path.read_text(), path.name) == []


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ("F.concat_ws('#', F.input_file_name())", "input_file_name"),
        ("from pyspark.sql.functions import input_file_name", "input_file_name"),
        ("spark.sparkContext.parallelize([1])", "sparkContext"),
        ("frame.rdd.map(str)", "rdd"),
        ("frame.cache()", "cache"),
        ("frame.persist()", "persist"),
        ("frame.createOrReplaceGlobalTempView('v')", "createOrReplaceGlobalTempView"),
        ("spark.sql('SELECT input_file_name() FROM t')", "INPUT_FILE_NAME"),
        ("spark.sql('create global temp view v as select 1')", "GLOBAL TEMP"),
        ("spark.conf.set('spark.sql.autoBroadcastJoinThreshold', -1)", "spark.conf.set"),
        ("SparkSession.builder.config('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("spark._jvm.java.lang.System", "_jvm"),
    ],
)
def test_the_scan_catches_each_denied_use(code, what):
    found = violations(code, "step.py")
    assert found and any(what in line for line in found), found


def test_the_allowed_replacements_pass():
    allowed = """
F.col("_metadata.file_path")
spark.conf.set("spark.sql.session.timeZone", "UTC")
frame.localCheckpoint(eager=True)
spark.catalog.tableExists("a.b.c")
"""
    assert violations(allowed, "step.py") == []
