"""A local SparkSession for one test module, and the JVM it runs in gone when the module ends.

``SparkSession.stop()`` stops the Spark context but leaves pyspark's py4j gateway, the JVM,
running until the Python process exits: under pytest-xdist that is the worker's whole run, and
an idle local-mode JVM keeps about 10-15% of a core busy (its GC and heartbeat threads). So the
module that started a JVM also ends it, and the next module that needs Spark starts its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

# A test module's JVM lives for seconds to a minute: C2's compiles of Spark's code never pay back
# in that time, and C1 alone halved the Spark files' CPU here (150 to 72 CPU s for the three
# step files, the same tests passing). The serial collector suits a one-core local[1] driver.
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def local_spark(cores: int = 1, **conf: str) -> Iterator:
    """Yield a local SparkSession with the UI off and the log quiet; end its JVM afterwards."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(cores))
        .config("spark.driver.extraJavaOptions", JAVA_OPTIONS)
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        gateway = SparkContext._gateway
        if gateway is not None:
            gateway.shutdown()
            process = getattr(gateway, "proc", None)
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
            SparkContext._gateway = None
            SparkContext._jvm = None
