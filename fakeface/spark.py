"""Building the SparkSession the same way for every job and test."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

from fakeface.errors import FakefaceError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from fakeface.config import Config


def check_java() -> None:
    """Fail with one line, not a Py4J traceback, when no Java runtime is installed."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise FakefaceError(
        "Java not found: Spark needs Java 17 (e.g. `apt-get install openjdk-17-jre-headless`)"
        " on PATH or in JAVA_HOME"
    )


def ensure_worker_python() -> None:
    """Spark's Python workers must run this interpreter, where fakeface is installed."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def build_spark_session(cfg: Config, app_suffix: str = "") -> SparkSession:
    """The session for a job; under spark-submit, settings given there win over the config."""
    check_java()
    ensure_worker_python()
    from pyspark.sql import SparkSession

    name = cfg.spark.app_name + (f"-{app_suffix}" if app_suffix else "")
    builder = SparkSession.builder.appName(name)
    # spark-submit sets spark.master itself; only a plain `python jobs/x.py` needs ours.
    if "SPARK_SUBMIT_OPTS" not in os.environ and not _launched_by_spark_submit():
        builder = builder.master(cfg.spark.master)
        builder = builder.config("spark.driver.memory", cfg.spark.driver_memory)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
    builder = builder.config("spark.sql.files.maxPartitionBytes", cfg.ingest.max_partition_bytes)
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _launched_by_spark_submit() -> bool:
    # spark-submit starts the driver with the py4j gateway already listening.
    return "PYSPARK_GATEWAY_PORT" in os.environ
