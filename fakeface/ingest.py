"""Ingest: a folder of raw images -> one Parquet row per file, partitioned by run date."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pandas as pd

from fakeface.decode import decode_image, image_id
from fakeface.labels import UNLABELED, parse_path_label

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config

log = logging.getLogger(__name__)

# The decoded columns, in order; `run_date` is the partition column on disk.
DECODED_SCHEMA = (
    "image_id string, path string, label int, level string, regions string, "
    "orig_width int, orig_height int, format string, height int, width int, "
    "image binary, status string, error string"
)
DECODED_COLUMNS = [c.strip().split(" ")[0] for c in DECODED_SCHEMA.split(",")]


def extension_glob(extensions: list[str]) -> str:
    """A Hadoop glob matching the extensions in any letter case: `*.{[jJ][pP][gG],...}`."""
    parts = []
    for ext in extensions:
        ext = ext.lstrip(".")
        parts.append("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext))
    return "*.{" + ",".join(parts) + "}"


def read_image_files(spark: SparkSession, input_path: str, extensions: list[str]) -> DataFrame:
    """Every image file below `input_path` (recursive) as (path, content) rows, one per file.

    Spark's binaryFile source plans no split for a zero-length file, so empty files would
    vanish; they are found from the listing and added back with empty content.
    """
    from pyspark.sql import functions as F

    from fakeface.storage import qualify

    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", extension_glob(extensions))
        .load(qualify(input_path))
    )
    listed = [hadoop_path_string(uri) for uri in files.inputFiles()]
    scanned = files.select("path")  # no content column: Spark reads no file bytes for this
    if scanned.count() == len(listed):
        return files.select("path", "content")
    listing = spark.createDataFrame([(p,) for p in listed], "path string")
    empty = listing.join(scanned, "path", "left_anti").select(
        "path", F.lit(b"").cast("binary").alias("content")
    )
    return files.select("path", "content").unionByName(empty)


def hadoop_path_string(uri: str) -> str:
    """A listed file URI (`file:///a%20b.jpg`) as binaryFile's `path` column spells it."""
    parsed = urlsplit(uri)
    authority = f"//{parsed.netloc}" if parsed.netloc else ""
    return f"{parsed.scheme}:{authority}{unquote(parsed.path)}"


def decode_frame(
    frame: pd.DataFrame, size: int, max_pixels: int, labeled: bool = True
) -> pd.DataFrame:
    """Decode a pandas batch of (path, content) into the decoded columns; one row each."""
    rows: list[dict[str, Any]] = []
    for path, content in zip(frame["path"], frame["content"], strict=True):
        data = bytes(content) if content is not None else None
        result = decode_image(data, size, max_pixels)
        tags = parse_path_label(path) if labeled else UNLABELED
        ok = result.status == "ok"
        rows.append(
            {
                "image_id": image_id(data) if data is not None else None,
                "path": path,
                "label": tags.label,
                "level": tags.level,
                "regions": tags.regions,
                "orig_width": result.orig_width,
                "orig_height": result.orig_height,
                "format": result.format,
                "height": size if ok else None,
                "width": size if ok else None,
                "image": result.image,
                "status": result.status,
                "error": result.error,
            }
        )
    out = pd.DataFrame(rows, columns=DECODED_COLUMNS)
    for column in ("label", "orig_width", "orig_height", "height", "width"):
        out[column] = out[column].astype("Int32")
    return out


def decode_images(df: DataFrame, size: int, max_pixels: int, labeled: bool = True) -> DataFrame:
    """binaryFile rows -> decoded rows (see DECODED_SCHEMA), one per input row."""

    def decode_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            yield decode_frame(frame, size, max_pixels, labeled)

    return df.mapInPandas(decode_batches, schema=DECODED_SCHEMA)


def summarize_partition(df: DataFrame) -> dict[str, Any]:
    """Counts of a decoded partition: files, ok, errors by kind, duplicate bytes."""
    from pyspark.sql import functions as F

    kinds = (
        df.where(F.col("status") != "ok")
        .groupBy(F.substring_index("error", ":", 1).alias("kind"))
        .count()
        .collect()
    )
    totals = df.agg(
        F.count(F.lit(1)).alias("files"),
        F.sum(F.when(F.col("status") == "ok", 1).otherwise(0)).alias("ok"),
        F.countDistinct("image_id").alias("distinct"),
        F.sum(F.when(F.col("image_id").isNull(), 1).otherwise(0)).alias("no_id"),
    ).first()
    files = int(totals["files"] or 0)
    with_id = files - int(totals["no_id"] or 0)
    return {
        "files": files,
        "ok": int(totals["ok"] or 0),
        "errors": {row["kind"]: int(row["count"]) for row in kinds},
        # A file whose bytes another file already holds; both keep their rows.
        "duplicates": with_id - int(totals["distinct"] or 0),
    }


def run_ingest(
    spark: SparkSession,
    cfg: Config,
    input_path: str,
    output_path: str,
    run_date: str,
    labeled: bool = True,
) -> dict[str, Any]:
    """Decode every image below `input_path` into `output_path/run_date=<date>/`."""
    from fakeface import storage

    started = time.monotonic()
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.ingest.arrow_batch_size))
    files = read_image_files(spark, input_path, cfg.ingest.extensions)
    decoded = decode_images(files, cfg.ingest.image_size, cfg.ingest.max_pixels, labeled)
    staged = storage.stage_dataframe(decoded, output_path, run_date)
    summary = summarize_partition(
        spark.read.parquet(storage.staged_uri(output_path, staged)).select(
            "image_id", "status", "error"
        )
    )
    storage.commit_partition(spark, output_path, staged, run_date)
    seconds = time.monotonic() - started
    summary.update(
        {
            "job": "ingest",
            "run_date": run_date,
            "input": input_path,
            "output": output_path,
            "image_size": cfg.ingest.image_size,
            "labeled": labeled,
            "seconds": round(seconds, 2),
            "images_per_s": round(summary["files"] / seconds, 1) if seconds > 0 else None,
        }
    )
    summary["summary_path"] = storage.write_summary(spark, output_path, run_date, summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The one-line summary printed by the job."""
    errors = ", ".join(f"{k}={v}" for k, v in sorted(summary["errors"].items())) or "none"
    return (
        f"ingest {summary['run_date']}: files={summary['files']} ok={summary['ok']} "
        f"errors={sum(summary['errors'].values())} ({errors}) "
        f"duplicates={summary['duplicates']} seconds={summary['seconds']} "
        f"images/s={summary['images_per_s']}"
    )


def read_ingested(spark: SparkSession, data_path: str) -> DataFrame:
    """An ingested dataset (all run dates, `run_date` column), as written by `run_ingest`."""
    from fakeface.errors import InputError
    from fakeface.storage import qualify

    # Partition discovery skips `_staging`, `_summaries` and the other `_` names.
    try:
        return spark.read.parquet(qualify(data_path))
    except Exception as exc:
        text = str(exc)
        if any(s in text for s in ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA", "does not exist")):
            raise InputError(f"no ingested data in {data_path}: run jobs/ingest.py first") from None
        raise
