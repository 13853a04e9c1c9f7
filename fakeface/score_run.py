"""`run_score`: one nightly scoring run, from the model URI to a committed partition.

Resolves the model URI once (`models:/NAME@champion` -> one version), checks and packs it
(`model_bundle`), broadcasts it, scores every input row (`score`), writes
`<output>/run_date=<date>/` through `storage` (staged, swapped in under the date's lock; a
rerun replaces the date) and summarises (`score_summary`). Input is a folder of raw images
(decoded in the same pass) or an ingested Parquet dataset (every row of every `run_date=`
partition, or one partition folder given directly).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from fakeface.errors import InputError
from fakeface.model_bundle import package_model
from fakeface.score import (
    SETTLED_COLUMNS,
    STATUS_OK,
    decode_and_score,
    make_score_udf,
    score_columns,
)
from fakeface.score_summary import log_score_run, read_scores, summarize_scores

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config
    from fakeface.registry import ResolvedModel

log = logging.getLogger(__name__)


def detect_input(spark: SparkSession, input_path: str) -> str:
    """'ingested' (run_date=* partitions), 'partition' (a Parquet folder) or 'images'."""
    from fakeface.storage import HadoopFS

    names = HadoopFS(spark, input_path).list_names()
    if any(n.startswith("run_date=") for n in names):
        return "ingested"
    if any(n.endswith(".parquet") for n in names):
        return "partition"
    return "images"


def read_input(
    spark: SparkSession,
    cfg: Config,
    input_path: str,
    kind: str,
    size: int | None = None,
    need_ids: bool = False,
) -> tuple[DataFrame, DataFrame]:
    """(rows to score, rows to count). Ingested data: image_id/path/image/height/width/status/
    error. Raw images: (path, read_error) of local files, which the scoring pass reads itself
    (the bytes never enter the JVM), or (path, content, read_error, image_id) when `need_ids`
    (the ids must be known before decoding) and for non-local URIs (read by binaryFile).
    """
    from pyspark.sql import functions as F

    from fakeface.ingest import is_local_path, list_local_files, read_ingested, read_input_files
    from fakeface.storage import qualify

    if kind == "images":
        if is_local_path(input_path) and not need_ids:
            # tasks of about `images_per_task` images: the output is a few bytes a row, so
            # the work decides, and each task costs Spark a fixed gap on its core
            listed = list_local_files(
                spark, input_path, cfg.ingest.extensions, 1, cfg.score.images_per_task
            )
            return listed.frame, listed.frame.select("path")
        files = read_input_files(spark, input_path, cfg.ingest.extensions).frame
        # image_id before decoding (sha256 of the bytes, as decode computes it), so that
        # --incremental can drop known images without decoding them.
        keyed = files.withColumn("image_id", F.sha2(F.col("content"), 256))
        return keyed, files.select("path")
    from fakeface.spark import limit_reader_batch

    limit_reader_batch(spark, size or cfg.ingest.image_size)
    if kind == "ingested":
        df = read_ingested(spark, input_path)
    else:
        df = spark.read.parquet(qualify(input_path))
    needed = ["image_id", "path", "image", "height", "width", "status", "error"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(
            f"{input_path} is Parquet but not an ingested dataset (missing {', '.join(missing)})"
        )
    rows = df.select(*needed)
    return rows, rows.select("path")


def decode_size(cfg: Config, resolved: ResolvedModel) -> int:
    """Raw images are decoded at the size the model was trained on (its `input_size` tag)."""
    return resolved.input_size or cfg.ingest.image_size


def image_shapes(df: DataFrame, kind: str, size: int) -> list[tuple[int, int]]:
    """The (H, W) sizes the model will see: the decode size, or those stored in the dataset."""
    from pyspark.sql import functions as F

    if kind == "images":
        return [(size, size)]
    rows = df.where(F.col("status") == STATUS_OK).select("height", "width").distinct().collect()
    return [(int(r["height"]), int(r["width"])) for r in rows if r["height"] is not None]


def scored_ids(
    spark: SparkSession, output_path: str, run_date: str, resolved: ResolvedModel
) -> DataFrame | None:
    """image_ids this model version scored ('ok') in any output partition but `run_date`'s.

    The date being written is left out: its partition is about to be replaced, so a rerun
    of the same date must score its images again rather than skip them into oblivion.
    """
    from pyspark.sql import functions as F

    from fakeface.storage import HadoopFS, partition_name

    fs = HadoopFS(spark, output_path)
    names = sorted(
        n for n in fs.list_names() if n.startswith("run_date=") and n != partition_name(run_date)
    )
    if not names:
        return None
    base = output_path.rstrip("/")
    existing = read_scores(spark, [f"{base}/{n}" for n in names])
    return (
        existing.where(
            (F.col("model_name") == resolved.name)
            & (F.col("model_version") == resolved.version)
            & (F.col("status") == STATUS_OK)
        )
        .select("image_id")
        .distinct()
    )


def run_score(
    spark: SparkSession,
    cfg: Config,
    input_path: str,
    output_path: str,
    run_date: str,
    model_uri: str | None = None,
    incremental: bool = False,
) -> dict[str, Any]:
    """Score every image of `input_path` into `output_path/run_date=<date>/`; return the summary.

    `incremental`: skip images this model version already scored ('ok') in another date's
    partition of the output; they are counted as `skipped`, not written.
    """
    from pyspark.sql import functions as F

    from fakeface import registry, storage

    started = time.monotonic()
    client = registry.configure_mlflow(cfg)
    resolved = registry.resolve_model(client, model_uri or cfg.model_uri)
    log.info(
        "scoring with %s (version %s, threshold %.4g%s)",
        resolved.name,
        resolved.version,
        resolved.threshold,
        "".join(f", {p} {t:.4g}" for p, t in resolved.part_thresholds.items()),
    )

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.score.arrow_batch_size))
    kind = detect_input(spark, input_path)
    size = decode_size(cfg, resolved)
    rows, countable = read_input(spark, cfg, input_path, kind, size, need_ids=incremental)
    packed = package_model(resolved, image_shapes(rows, kind, size))

    skip_ids = scored_ids(spark, output_path, run_date, resolved) if incremental else None
    n_input = countable.count() if skip_ids is not None else None
    if skip_ids is not None:
        rows = rows.join(skip_ids, "image_id", "left_anti")
    sc = spark.sparkContext
    task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    batch_size = cfg.score.inference_batch_size
    broadcast = sc.broadcast(packed.data)
    try:
        cuts = (resolved.threshold, resolved.part_thresholds)
        if kind == "images":
            scored = decode_and_score(
                cfg, rows, size, broadcast, packed.key, task_cpus, batch_size, *cuts
            )
            settled = F.struct(*SETTLED_COLUMNS)
        else:
            scored = rows
            udf = make_score_udf(broadcast, packed.key, task_cpus, batch_size, *cuts)
            # asNondeterministic: the optimizer must neither duplicate nor re-run the model.
            settled = udf.asNondeterministic()(
                *(F.col(c) for c in ("image", "height", "width", "status", "error"))
            )
        scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        out = score_columns(scored, settled, resolved, scored_at)
        staged = storage.stage_dataframe(out, output_path, run_date)
    finally:
        broadcast.destroy()
    counts = summarize_scores(read_scores(spark, storage.staged_uri(output_path, staged)))
    storage.commit_partition(spark, output_path, staged, run_date)

    seconds = time.monotonic() - started
    n_rows = counts["n_images"]
    summary: dict[str, Any] = {
        "job": "score",
        "run_date": run_date,
        "input": input_path,
        "input_kind": kind,
        "output": output_path,
        "model_name": resolved.name,
        "model_version": resolved.version,
        "model_uri": resolved.uri,
        "threshold": resolved.threshold,
        "part_thresholds": dict(resolved.part_thresholds),
        "scored_at": scored_at.isoformat(),
        "incremental": incremental,
        "skipped": (n_input - n_rows) if n_input is not None else 0,
        **counts,
        "error_share": round(counts["n_errors"] / n_rows, 6) if n_rows else 0.0,
        "max_error_share": cfg.score.max_error_share,
        "seconds": round(seconds, 2),
        "images_per_s": round(n_rows / seconds, 2) if seconds > 0 else None,
    }
    summary["mlflow_run_id"] = log_score_run(cfg, summary)
    summary["summary_path"] = storage.write_summary(spark, output_path, run_date, summary)
    return summary
