"""Ingest: a folder of raw images -> one Parquet row per file, partitioned by run date.

The steps live by concern: `fakeface.listing` (the driver's walk, the tasks' listing, the
workers' reading of local files), `fakeface.input_files` (input rows from any URI),
`fakeface.frames` (the decode), `fakeface.lake_writer` (pyarrow's Parquet files, their
adoption, the counts). Here: the Spark passes that chain them (read -> decode -> write),
the summary and `run_ingest`. The names of those modules stay importable from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from fakeface.frames import DECODED_SCHEMA, decode_frame
from fakeface.input_files import (
    InputFiles,
    extension_glob,
    hadoop_path_string,
    read_image_files,
    read_input_files,
    read_remote,
)
from fakeface.lake_writer import (
    PARQUET_CODECS,
    ROW_GROUP_BYTES,
    WRITTEN_SCHEMA,
    LakeFileWriter,
    Written,
    adopt_written,
    collect_written,
    count_decoded,
    decoded_arrow_schema,
    decoded_table,
    id_rows,
)
from fakeface.listing import (
    VANISHED,
    FolderPlan,
    ListedFiles,
    LocalListing,
    classify_file,
    is_local_path,
    list_file,
    list_folder,
    list_local_files,
    local_path,
    max_file_bytes,
    read_frame,
    read_local_file,
    read_tasks,
    scan_local_images,
    walk_folders,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config

__all__ = [
    "DECODED_SCHEMA",
    "PARQUET_CODECS",
    "ROW_GROUP_BYTES",
    "VANISHED",
    "WRITTEN_SCHEMA",
    "FolderPlan",
    "InputFiles",
    "LakeFileWriter",
    "ListedFiles",
    "LocalListing",
    "Written",
    "adopt_written",
    "arrow_batch_rows",
    "classify_file",
    "collect_written",
    "count_decoded",
    "decode_frame",
    "decode_images",
    "decode_listed",
    "decoded_arrow_schema",
    "decoded_table",
    "extension_glob",
    "format_summary",
    "hadoop_path_string",
    "id_rows",
    "is_local_path",
    "list_file",
    "list_folder",
    "list_local_files",
    "local_path",
    "max_file_bytes",
    "read_frame",
    "read_image_files",
    "read_ingested",
    "read_input_files",
    "read_local_file",
    "read_remote",
    "read_tasks",
    "run_ingest",
    "scan_local_images",
    "summarize_partition",
    "walk_folders",
    "write_listed",
]

_ARROW_RECORDS_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"


def decode_images(df: DataFrame, size: int, max_pixels: int, labeled: bool = True) -> DataFrame:
    """(path, content[, read_error]) rows -> decoded rows (DECODED_SCHEMA), one per input row."""

    def decode_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            yield decode_frame(frame, size, max_pixels, labeled)

    return df.mapInPandas(decode_batches, schema=DECODED_SCHEMA)


def decode_listed(
    df: DataFrame, size: int, max_pixels: int, max_bytes: int, labeled: bool = True
) -> DataFrame:
    """(path, read_error) rows of local files -> decoded rows, read and decoded in one pass.

    The bytes are read by the Python worker that decodes them: they never enter the JVM.
    """

    def read_and_decode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            yield decode_frame(read_frame(frame, max_bytes), size, max_pixels, labeled)

    return df.mapInPandas(read_and_decode, schema=DECODED_SCHEMA)


def write_listed(
    df: DataFrame,
    folder: str,
    size: int,
    max_pixels: int,
    max_bytes: int,
    labeled: bool = True,
    codec: str = "none",
) -> DataFrame:
    """(path, read_error) rows of local files -> Parquet files written by the Python workers.

    Each task reads, decodes and writes its rows with pyarrow (`LakeFileWriter`) into
    `folder/_attempts/` (a name per attempt) and returns one (file, rows, ok, errors) row,
    plus one row per image id it wrote (WRITTEN_SCHEMA): the pixels never enter the JVM,
    and nothing reads the files back. A failed or duplicate attempt's rows are never
    returned; `collect_written` gathers them and `adopt_written` keeps only those files.
    """
    attempts = os.path.join(folder, "_attempts")

    def read_decode_write(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import uuid

        from pyspark import TaskContext

        ctx = TaskContext.get()
        task = f"{ctx.partitionId():05d}-{ctx.attemptNumber()}" if ctx else "00000-0"
        writer = LakeFileWriter(
            os.path.join(attempts, f"part-{task}-{uuid.uuid4().hex[:8]}.parquet"), codec
        )
        for frame in batches:
            decoded = decode_frame(read_frame(frame, max_bytes), size, max_pixels, labeled)
            writer.add(decoded)
            ids = [i for i in decoded["image_id"] if isinstance(i, str)]
            if ids:
                yield id_rows(ids)
        if writer.close():
            yield writer.file_row()

    return df.mapInPandas(read_decode_write, schema=WRITTEN_SCHEMA)


def arrow_batch_rows(cfg: Config, row_bytes: int) -> int:
    """Rows per Arrow batch: `ingest.arrow_batch_size`, fewer when the pixels would exceed
    `ingest.arrow_batch_mb` (a 600 px image is 1.08 MB)."""
    by_bytes = cfg.ingest.arrow_batch_mb * 2**20 // max(1, row_bytes)
    return max(1, min(cfg.ingest.arrow_batch_size, by_bytes))


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
    size, max_pixels = cfg.ingest.image_size, cfg.ingest.max_pixels
    row_bytes = size * size * 3
    spark.conf.set(_ARROW_RECORDS_KEY, str(arrow_batch_rows(cfg, row_bytes)))
    hidden: int | None = None
    tasks: int | None = None
    walk_seconds: float | None = None
    codec = cfg.ingest.parquet_codec
    if is_local_path(input_path):
        listed = list_local_files(
            spark, input_path, cfg.ingest.extensions, row_bytes, cfg.ingest.output_file_mb * 2**20
        )
        hidden, tasks = listed.plan.hidden, listed.tasks
        walk_seconds = round(listed.plan.seconds, 3)
        max_bytes = max_file_bytes(spark)
        if is_local_path(output_path):
            # Local in, local out: the Python workers read, decode and write the Parquet.
            staged = storage.staged_name(run_date)
            folder = local_path(storage.staged_uri(output_path, staged))
            written = collect_written(
                write_listed(listed.frame, folder, size, max_pixels, max_bytes, labeled, codec)
            )
            adopt_written(folder, written.files)
            summary = written.summary  # counted by the writing tasks
            decoded = None
        else:
            decoded = decode_listed(listed.frame, size, max_pixels, max_bytes, labeled)
    else:
        files = read_remote(spark, input_path, cfg.ingest.extensions)
        decoded = decode_images(files, size, max_pixels, labeled)
    if decoded is not None:  # Spark's Parquet writer, for any Hadoop file system
        staged = storage.stage_dataframe(decoded, output_path, run_date, compression=codec)
        staged_uri = storage.staged_uri(output_path, staged)
        columns = ("image_id", "status", "error")
        summary = summarize_partition(spark.read.parquet(staged_uri).select(*columns))
    seconds = time.monotonic() - started
    summary.update(
        {
            "job": "ingest",
            "run_date": run_date,
            "input": input_path,
            "output": output_path,
            "image_size": size,
            "labeled": labeled,
            # Names Spark ignores by convention ('.' or '_' first); None: not counted (URI).
            "hidden_skipped": hidden,
            "walk_seconds": walk_seconds,  # the driver's walk over the folders (local input)
            "tasks": tasks,
            "seconds": round(seconds, 2),
            "images_per_s": round(summary["files"] / seconds, 1) if seconds > 0 else None,
        }
    )
    # The summary is written under the partition's lock, with the swap: two runs of one
    # date cannot leave one run's data with the other's summary.
    storage.commit_partition(spark, output_path, staged, run_date, summary=summary)
    summary["summary_path"] = storage.summary_location(output_path, run_date)
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
