"""The step code uses only the Spark that Databricks serverless and Unity Catalog allow.

Serverless runs Spark Connect on a standard-access-mode cluster: no RDD API, no SparkContext or
JVM handles, no DataFrame caching, only the listed Spark confs, and no ``input_file_name()``
(Unity Catalog: use the ``_metadata.file_path`` column). Sources: shared/databricks/SERVERLESS.md
§2. An AST scan of every module a step task can import holds the code to that list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.databricks.fake_workspace import input_file_name_calls

PACKAGE = Path(__file__).resolve().parents[2] / "iris_assets"
# Everything a Databricks step task imports: the steps, the core they use, the settings.
TASK_CODE = sorted(
    [*(PACKAGE / "steps").glob("*.py"), *(PACKAGE / "core").glob("*.py"), PACKAGE / "settings.py"]
)

# Attribute or function names serverless rejects, with the reason shown on a violation. A name
# is caught as an attribute, a bare name, an import, and as a string constant equal to it (what
# getattr(spark, "sparkContext"), operator.attrgetter("rdd") or a name kept in a variable use).
DENIED_NAMES = {
    "input_file_name": "not available on Unity Catalog: select _metadata.file_path",
    "input_file_block_start": "not available on Unity Catalog: use _metadata.file_block_start",
    "input_file_block_length": "not available on Unity Catalog: use _metadata.file_block_length",
    "sparkContext": "SparkContext is not supported on serverless (Spark Connect only)",
    "rdd": "RDD APIs are not supported on serverless",
    "parallelize": "SparkContext (RDD) API, not supported on serverless",
    "toJSON": "DataFrame.toJSON() returns an RDD: not supported on serverless",
    "foreachPartition": "runs on the RDD of the frame: not supported on serverless",
    "mapPartitions": "RDD API, not supported on serverless",
    "getNumPartitions": "RDD API, not supported on serverless",
    "_jvm": "no JVM access on serverless / standard access mode",
    "_jdf": "no JVM access on serverless / standard access mode",
    "_jsc": "no JVM access on serverless / standard access mode",
    "_jsparkSession": "no JVM access on serverless / standard access mode",
    "sqlContext": "sqlContext is not supported on serverless",
    "SparkContext": "SparkContext is not supported on serverless (Spark Connect only)",
    "SQLContext": "SQLContext is not supported on serverless (Spark Connect only)",
    "HiveContext": "HiveContext is not supported on serverless (Spark Connect only)",
    "cache": "DataFrame.cache() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "persist": "DataFrame.persist() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "unpersist": "DataFrame.unpersist() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "cacheTable": "catalog.cacheTable() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "uncacheTable": "catalog.uncacheTable() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "clearCache": "catalog.clearCache() fails with NOT_SUPPORTED_WITH_SERVERLESS",
    "createGlobalTempView": "global temp views are not supported on serverless",
    "createOrReplaceGlobalTempView": "global temp views are not supported on serverless",
    "checkpoint": "needs a SparkContext checkpoint dir; only localCheckpoint works",
}
# SQL text serverless rejects (matched case-insensitively, any whitespace between words).
DENIED_SQL = {
    r"\bGLOBAL\s+TEMP": "global temp views are not supported on serverless",
    r"\bREFRESH\s+TABLE\b": "fails with NOT_SUPPORTED_WITH_SERVERLESS",
    r"\b(UN)?CACHE\s+(LAZY\s+)?TABLE\b": "caching is not supported on serverless",
    r"\bCLEAR\s+CACHE\b": "caching is not supported on serverless",
    r"\bINPUT_FILE_NAME\b": "not available on Unity Catalog: select _metadata.file_path",
}
# Spark confs a serverless task may set (the session time zone; ANSI mode only with limits).
ALLOWED_CONFS = {"spark.sql.session.timeZone"}
# A SQL `SET key[ = value]` statement: a statement of its own (not the SET of UPDATE or MERGE,
# which follows other words) naming a dotted conf key, or `SET -v`.
# The key may be quoted in backticks (``SET `spark.sql.shuffle.partitions` = 4``).
SQL_SET = re.compile(
    r"(?:^|;)\s*SET\s+(?:(-v)\b|`?([A-Za-z_][\w-]*(?:\.[\w-]+)+)`?)", re.IGNORECASE
)
# What sets a conf on a RuntimeConfig: its method and the dunder behind item assignment.
CONF_SETTERS = ("set", "__setitem__")


def violations(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename)
    conf_aliases, setter_aliases = _conf_aliases(tree)
    # A setter called on the spot or bound to a name (an alias) is judged where it is called.
    called_or_bound = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)} | {
        id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign)
    }
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.alias):
            name = node.name.rsplit(".", 1)[-1]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value.strip()
        if name in DENIED_NAMES:
            found.append(f"{filename}:{node.lineno}: {name}: {DENIED_NAMES[name]}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for pattern, why in DENIED_SQL.items():
                if match := re.search(pattern, node.value, re.IGNORECASE):
                    found.append(f"{filename}:{node.lineno}: {match[0]!r} in SQL: {why}")
            for match in SQL_SET.finditer(node.value):
                key = match[1] or match[2]
                if key not in ALLOWED_CONFS:
                    found.append(f"{filename}:{node.lineno}: SQL SET {key}: not allowed")
        if isinstance(node, ast.Call) and _is_conf_set(node.func, conf_aliases, setter_aliases):
            key = node.args[0] if node.args else None
            if not (isinstance(key, ast.Constant) and key.value in ALLOWED_CONFS):
                shown = ast.unparse(key) if key is not None else "?"
                found.append(f"{filename}:{node.lineno}: spark.conf.set({shown}): not allowed")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in CONF_SETTERS
            and _is_conf(node.value, conf_aliases)
            and id(node) not in called_or_bound
        ):  # functools.partial(spark.conf.set, ...): a setter passed on, its key unseen here
            found.append(f"{filename}:{node.lineno}: spark.conf.{node.attr} passed on: not allowed")
    return found


def _conf_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to a session's conf (``c = spark.conf``) and to its setter
    (``s = spark.conf.set``), anywhere in the module."""
    confs, setters = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if not isinstance(value, ast.Attribute):
                continue
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if value.attr == "conf":
                confs |= names
            elif value.attr in CONF_SETTERS and _is_conf(value.value, confs):
                setters |= names
    return confs, setters


def _is_conf(node: ast.expr, aliases: set[str]) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "conf") or (
        isinstance(node, ast.Name) and node.id in aliases
    )


def _is_conf_set(func: ast.expr, conf_aliases: set[str], setter_aliases: set[str]) -> bool:
    """``<x>.conf.set(...)`` or ``.__setitem__(...)`` (or through an alias, or
    ``getattr(spark.conf, "set")(...)``), or ``.config(...)`` on a session builder."""
    if isinstance(func, ast.Name):
        return func.id in setter_aliases
    if isinstance(func, ast.Attribute) and func.attr in CONF_SETTERS:
        return _is_conf(func.value, conf_aliases)
    if (
        isinstance(func, ast.Call)
        and isinstance(func.func, ast.Name)
        and func.func.id == "getattr"
        and len(func.args) >= 2
        and _is_conf(func.args[0], conf_aliases)
    ):
        name = func.args[1]
        return not (isinstance(name, ast.Constant) and name.value not in CONF_SETTERS)
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
        ("spark.sql('SELECT input_file_name() FROM t')", "input_file_name"),
        ("spark.sql('create global temp view v as select 1')", "global temp"),
        ("spark.conf.set('spark.sql.autoBroadcastJoinThreshold', -1)", "spark.conf.set"),
        ("SparkSession.builder.config('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("spark._jvm.java.lang.System", "_jvm"),
        ('getattr(spark, "sparkContext").parallelize([1])', "sparkContext"),
        ("getattr(frame, 'rdd')", "rdd"),
        ("operator.attrgetter('rdd')(frame)", "rdd"),
        ("name = 'sparkContext'\ncontext = getattr(spark, name)", "sparkContext"),
        ("spark.catalog.cacheTable('main.iris.t')", "cacheTable"),
        ("spark.catalog.clearCache()", "clearCache"),
        ("spark.sql('CACHE TABLE main.iris.t')", "CACHE TABLE"),
        ("spark.sql('cache  lazy\\t table t')", "lazy"),
        ("spark.sql('UNCACHE TABLE t')", "UNCACHE TABLE"),
        ("spark.sql('SET spark.sql.shuffle.partitions = 4')", "SQL SET spark.sql.shuffle"),
        ("spark.sql('set spark.sql.ansi.enabled=false')", "SQL SET spark.sql.ansi"),
        ("spark.sql('SELECT 1; SET spark.databricks.delta.x = 1')", "SQL SET spark.databricks"),
        ("spark.sql('SET -v')", "SQL SET -v"),
        ("frame.toJSON().collect()", "toJSON"),
        ("frame.foreachPartition(print)", "foreachPartition"),
        ("c = spark.conf\nc.set('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("c: object = spark.conf\nc.set('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("put = spark.conf.set\nput('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("c = spark.conf\nput = c.set\nput('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("from pyspark import SparkContext\nSparkContext.getOrCreate()", "SparkContext"),
        ("from pyspark.sql import SQLContext\nSQLContext(spark)", "SQLContext"),
        ("spark.sql('SET `spark.sql.shuffle.partitions` = 4')", "SQL SET spark.sql.shuffle"),
        ("getattr(spark.conf, 'set')('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("getattr(spark.conf, name)('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("spark.conf.__setitem__('spark.sql.shuffle.partitions', 4)", "spark.conf.set"),
        ("functools.partial(spark.conf.set, 'spark.sql.shuffle.partitions')(4)", "passed on"),
    ],
)
def test_the_scan_catches_each_denied_use(code, what):
    found = violations(code, "step.py")
    assert found and any(what in line for line in found), found


def test_the_allowed_replacements_pass():
    allowed = """
F.col("_metadata.file_path")
spark.conf.set("spark.sql.session.timeZone", "UTC")
c = spark.conf
c.set("spark.sql.session.timeZone", "UTC")
spark.sql("SET spark.sql.session.timeZone = UTC")
spark.sql("SET `spark.sql.session.timeZone` = UTC")
getattr(spark.conf, "get")("spark.sql.shuffle.partitions")
put = spark.conf.set
put("spark.sql.session.timeZone", "UTC")
spark.sql("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET *")
spark.sql("UPDATE t SET cache = 1 WHERE id = 2")
frame.localCheckpoint(eager=True)
spark.catalog.tableExists("a.b.c")
"""
    assert violations(allowed, "step.py") == []


# input_file_name as the original bug had it (a "#" in a string before it), and named at run time
# by a string: the fake workspace refuses each (it reads the synced code with ast, not lines).
INPUT_FILE_NAME_USES = [
    'F.concat_ws("#", F.input_file_name(), F.format_string("%020d", F.spark_partition_id()))',
    'F.call_function("input_file_name")',
    'getattr(F, "input_file_name")()',
    "from pyspark.sql.functions import input_file_name as path_of\npath_of()",
    'F.expr("INPUT_FILE_NAME()")',
]


@pytest.mark.parametrize("code", INPUT_FILE_NAME_USES)
def test_the_fake_workspace_refuses_each_use_of_input_file_name(code, tmp_path):
    step = tmp_path / "step.py"
    step.write_text(f"{code}\n")
    assert input_file_name_calls(step) == ["step.py:1"]
    assert violations(code, "step.py"), "the scan of the step code catches it too"


def test_the_fake_workspace_ignores_input_file_name_in_comments_and_docstrings(tmp_path):
    step = tmp_path / "step.py"
    step.write_text(
        '"""Not input_file_name: _metadata.file_path."""\n# F.input_file_name()\nx = 1\n'
    )
    assert input_file_name_calls(step) == []


def test_a_synced_file_edited_between_submissions_is_read_again(tmp_path):
    """The fake parses each file once per content: an edit that adds a use, or a file that no
    longer parses, is still refused on the next submission, and the same text under another
    name is named by its own name."""
    package = tmp_path / "iris_assets"
    package.mkdir()
    step, helper = package / "step.py", package / "helper.py"
    step.write_text("x = 1\n")
    helper.write_text("y = 2\n")
    assert input_file_name_calls(step) == []
    helper.write_text("y = 2\nF.input_file_name()\n")
    assert input_file_name_calls(step) == ["helper.py:2"]
    step.write_text("y = 2\nF.input_file_name()\n")
    assert input_file_name_calls(step) == ["helper.py:2", "step.py:2"]
    helper.write_text("def broken(:\n")
    assert input_file_name_calls(step) == ["helper.py:1 (does not parse)", "step.py:2"]
