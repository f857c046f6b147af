"""The local SparkSession the Spark test files share, and the JVM it runs in gone after them.

One JVM serves every file in ``SPARK_FILES`` (``tests/conftest.py``): a JVM's start and the JIT
compiling Spark's query path cost more CPU than most of these tests' queries, so the files pay
them once, not once each. ``tests/conftest.py`` deals the files to one worker as one group, and
calls ``stop`` after the group's last test on that worker. ``SparkSession.stop()`` alone stops the
Spark context but leaves pyspark's py4j gateway, the JVM, running until the Python process exits
(the worker's whole run), where an idle local-mode JVM keeps 10-15% of a core busy.

What a file needs of its own is set at run time: its shuffle partitions (``session``), its own
database where it writes tables. The session time zone is UTC for all of them.
"""

from __future__ import annotations

import os
import sys
import tempfile

# The JVM lives for the group's minute or two: C2's compiles of Spark's code never pay back in
# that time, and C1 alone halved the Spark files' CPU here (150 to 72 CPU s for the three step
# files, the same tests passing). The serial collector suits a small local driver.
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
CORES = 2

_session = None
_warehouse: tempfile.TemporaryDirectory | None = None


def session(shuffle_partitions: int = 1):
    """The shared local SparkSession (started on first use), with this file's partitions."""
    global _session, _warehouse
    if _session is None:
        from pyspark.sql import SparkSession

        os.environ["PYSPARK_PYTHON"] = sys.executable
        _warehouse = tempfile.TemporaryDirectory(prefix="spark-warehouse-")
        _session = (
            SparkSession.builder.master(f"local[{CORES}]")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.extraJavaOptions", JAVA_OPTIONS)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.warehouse.dir", _warehouse.name)
            .getOrCreate()
        )
        _session.sparkContext.setLogLevel("ERROR")
    _session.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
    return _session


def stop() -> None:
    """Stop the shared session and end its JVM; the next ``session()`` starts a new one."""
    global _session, _warehouse
    if _session is None:
        return
    from pyspark import SparkContext

    _session.stop()
    _session = None
    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        process = getattr(gateway, "proc", None)
        if process is None:
            raise RuntimeError(
                "pyspark's gateway has no `proc`: cannot end the shared JVM, which would keep "
                "running idle until the worker exits (tests/local_spark.py)"
            )
        process.terminate()
        process.wait(timeout=30)  # raises if the JVM outlives its SIGTERM
        SparkContext._gateway = None
        SparkContext._jvm = None
    if _warehouse is not None:
        _warehouse.cleanup()
        _warehouse = None
