"""Input files as (path, content, read_error) rows, one per file: a local folder listed by
tasks and read by the Python workers (`fakeface.listing`), any other URI (HDFS, S3, ...)
listed and read by Spark (`binaryFile`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pandas as pd

from fakeface.listing import is_local_path, list_local_files, max_file_bytes, read_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_READ_SCHEMA = "path string, content binary, read_error string"


def extension_glob(extensions: list[str]) -> str:
    """A Hadoop glob matching the extensions in any letter case: `*.{[jJ][pP][gG],...}`."""
    parts = []
    for ext in extensions:
        ext = ext.lstrip(".")
        parts.append("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext))
    return "*.{" + ",".join(parts) + "}"


@dataclass
class InputFiles:
    """(path, content, read_error) rows, one per input file."""

    frame: DataFrame
    hidden: int | None  # names skipped by convention; None for non-local URIs (not counted)


def read_input_files(spark: SparkSession, input_path: str, extensions: list[str]) -> InputFiles:
    """Every image file below `input_path` as (path, content, read_error) rows, one per file.

    Local input is listed folder by folder in tasks and read by the Python workers
    (`list_local_files`, `read_frame`); other URIs are listed and read by Spark (binaryFile).
    """
    if not is_local_path(input_path):
        return InputFiles(read_remote(spark, input_path, extensions), None)
    listed = list_local_files(spark, input_path, extensions)
    max_bytes = max_file_bytes(spark)

    def read_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            yield read_frame(frame, max_bytes)

    return InputFiles(listed.frame.mapInPandas(read_batches, _READ_SCHEMA), listed.plan.hidden)


def read_remote(spark: SparkSession, input_path: str, extensions: list[str]) -> DataFrame:
    """Spark lists a non-local URI itself; empty files, which it skips, are added back."""
    from pyspark.sql import functions as F

    from fakeface.storage import qualify

    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", extension_glob(extensions))
        .load(qualify(input_path))
    )
    no_error = F.lit(None).cast("string").alias("read_error")
    listed = [hadoop_path_string(uri) for uri in files.inputFiles()]
    scanned = files.select("path")  # no content column: Spark reads no file bytes for this
    if scanned.count() == len(listed):
        return files.select("path", "content", no_error)
    listing = spark.createDataFrame([(p,) for p in listed], "path string")
    empty = listing.join(scanned, "path", "left_anti").select(
        "path", F.lit(b"").cast("binary").alias("content"), no_error
    )
    return files.select("path", "content", no_error).unionByName(empty)


def read_image_files(spark: SparkSession, input_path: str, extensions: list[str]) -> DataFrame:
    """Every image file below `input_path` (recursive) as (path, content) rows, one per file.

    Files that cannot be read (FIFOs, dangling symlinks, ...) have a null content; see
    `read_input_files` for the reason of each.
    """
    return read_input_files(spark, input_path, extensions).frame.select("path", "content")


def hadoop_path_string(uri: str) -> str:
    """A listed file URI (`file:///a%20b.jpg`) as binaryFile's `path` column spells it."""
    parsed = urlsplit(uri)
    authority = f"//{parsed.netloc}" if parsed.netloc else ""
    return f"{parsed.scheme}:{authority}{unquote(parsed.path)}"
