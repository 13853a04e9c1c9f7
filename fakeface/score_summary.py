"""What a scoring run reports: counts, histogram, the one-line summary, the MLflow run.

Also the two readers of a scores folder (`read_scores` for Spark, `read_score_partitions`
for pandas and the notebooks): partitions written before the part columns existed are read
against the union of every partition's columns, their rows null in the new ones.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakeface.outputs import FACE_FOUND, PART_NAMES
from fakeface.score import PARTS_FLAGGED, STATUS_ERROR, STATUS_OK

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config

log = logging.getLogger(__name__)

EXIT_ERROR_SHARE = 4
HISTOGRAM_BINS = 10


def read_scores(spark: SparkSession, paths: str | Sequence[str]) -> DataFrame:
    """Scores partitions (or whole scores folders) as one Spark frame.

    `mergeSchema`: without it Spark takes one file's columns for all, so a night written
    before the part columns would hide them, or fail a select that names them.
    """
    from fakeface.storage import qualify

    paths = [paths] if isinstance(paths, str) else list(paths)
    return spark.read.option("mergeSchema", "true").parquet(*[qualify(p) for p in paths])


def read_score_partitions(
    root: str | Path, columns: Sequence[str] | None = None, where: Any = None
) -> pd.DataFrame:
    """Every `run_date=D` partition below `root` as one pandas frame (empty when none).

    Without Spark (the notebooks): pyarrow's discovery skips `_staging`, `_summaries` and
    `_locks`; every file is read against the union of their schemas, so a column an older
    partition lacks is null there rather than missing (or refused when asked for).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    root = Path(root)
    if not any(root.glob("run_date=*/*.parquet")):
        return pd.DataFrame(columns=list(columns or []))
    by_date = pa.schema([("run_date", pa.string())])
    part = ds.partitioning(by_date, flavor="hive")
    found = ds.dataset(str(root), format="parquet", partitioning=part)
    schema = pa.unify_schemas([f.physical_schema for f in found.get_fragments()] + [by_date])
    dataset = ds.dataset(str(root), format="parquet", partitioning=part, schema=schema)
    if columns is None:
        return dataset.to_table(filter=where).to_pandas()
    # A column no night has yet (the part columns before any part model scored) is all null.
    present = [c for c in columns if c in schema.names]
    frame = dataset.to_table(present, filter=where).to_pandas()
    for c in columns:
        if c not in present:
            frame[c] = pd.Series([None] * len(frame), dtype=object)
    return frame[list(columns)]


def summarize_scores(df: DataFrame) -> dict[str, Any]:
    """Counts by status and error kind, the 10-bin p_fake histogram, share flagged, mean."""
    from pyspark.sql import functions as F

    totals = df.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(F.col("status") == STATUS_OK, 1).otherwise(0)).alias("ok"),
        F.sum(F.when(F.col("is_fake"), 1).otherwise(0)).alias("flagged"),
        F.avg("p_fake").alias("mean"),
    ).first()
    kinds = (
        df.where(F.col("status") != STATUS_OK)
        .groupBy(F.substring_index("error", ":", 1).alias("kind"))
        .count()
        .collect()
    )
    bins = (
        df.where(F.col("p_fake").isNotNull())
        .groupBy(
            F.least(F.floor(F.col("p_fake") * HISTOGRAM_BINS), F.lit(HISTOGRAM_BINS - 1))
            .cast("int")
            .alias("bin")
        )
        .count()
        .collect()
    )
    hist = [0] * HISTOGRAM_BINS
    for row in bins:
        hist[max(0, int(row["bin"]))] += int(row["count"])
    n, ok, flagged = int(totals["n"] or 0), int(totals["ok"] or 0), int(totals["flagged"] or 0)
    return {
        **part_counts(df),
        "n_images": n,
        "n_errors": n - ok,
        "counts": {STATUS_OK: ok, STATUS_ERROR: n - ok},
        "errors": {str(r["kind"]): int(r["count"]) for r in kinds},
        "flagged": flagged,
        "share_flagged": round(flagged / ok, 6) if ok else 0.0,
        "mean_p_fake": round(float(totals["mean"]), 6) if totals["mean"] is not None else None,
        "histogram": {
            "edges": [round(i / HISTOGRAM_BINS, 2) for i in range(HISTOGRAM_BINS + 1)],
            "counts": hist,
        },
    }


def part_counts(df: DataFrame) -> dict[str, Any]:
    """A part model's night: rows without a face, and rows flagged per part.

    Empty for a night scored by a one-output model (face_found null everywhere) and for
    partitions written before the part columns.
    """
    from pyspark.sql import functions as F

    if FACE_FOUND not in df.columns:
        return {}
    flags = F.split(F.coalesce(F.col(PARTS_FLAGGED), F.lit("")), ",")
    row = df.agg(
        F.count(FACE_FOUND).alias("judged"),
        F.sum(F.when(~F.col(FACE_FOUND), 1).otherwise(0)).alias("no_face"),
        *(F.sum(F.array_contains(flags, p).cast("int")).alias(p) for p in PART_NAMES),
    ).first()
    if not row["judged"]:
        return {}
    return {
        "no_face": int(row["no_face"] or 0),
        "parts_flagged": {p: int(row[p] or 0) for p in PART_NAMES},
    }


def log_score_run(cfg: Config, summary: dict[str, Any]) -> str | None:
    """Log the summary to the nightly experiment; None (and a warning) if tracking fails.

    The rows are committed by now: a tracking outage must not turn a good night into a
    failed one, but it must be visible, so the printed line says mlflow=FAILED.
    """
    try:
        return _log_score_run(cfg, summary)
    except Exception as exc:
        log.warning("could not log the scoring run to MLflow: %s", str(exc).splitlines()[0])
        summary["mlflow_error"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
        return None


def _log_score_run(cfg: Config, summary: dict[str, Any]) -> str:
    from mlflow.entities import Metric, Param

    from fakeface.registry import configure_mlflow, ensure_experiment, with_retry

    client: MlflowClient = configure_mlflow(cfg)
    experiment_id = ensure_experiment(cfg, cfg.mlflow.nightly_experiment)
    run = with_retry(
        lambda: client.create_run(
            experiment_id,
            run_name=f"score-{summary['run_date']}",
            tags={"job": "score", "model_name": summary["model_name"]},
        )
    )
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = {
        "n_images": summary["n_images"],
        "n_errors": summary["n_errors"],
        "skipped": summary["skipped"],
        "share_flagged": summary["share_flagged"],
        "error_share": summary["error_share"],
        "images_per_s": summary["images_per_s"] or 0.0,
        "seconds": summary["seconds"],
    }
    if summary["mean_p_fake"] is not None:
        metrics["mean_p_fake"] = summary["mean_p_fake"]
    if "no_face" in summary:  # a part model's night
        metrics["no_face"] = summary["no_face"]
        metrics.update({f"flagged_{p}": n for p, n in summary["parts_flagged"].items()})
    params = {
        "run_date": summary["run_date"],
        "model_name": summary["model_name"],
        "model_version": summary["model_version"],
        "threshold": summary["threshold"],
        "input": summary["input"],
        "output": summary["output"],
        "incremental": summary["incremental"],
    }
    with_retry(
        lambda: client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        )
    )
    with_retry(lambda: client.log_dict(run_id, summary["histogram"], "score_histogram.json"))
    with_retry(lambda: client.log_dict(run_id, _jsonable(summary), "score_summary.json"))
    with_retry(lambda: client.set_terminated(run_id))
    return run_id


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(summary, default=str))


def error_share_exceeded(summary: dict[str, Any], cfg: Config) -> bool:
    """True when the share of error rows is over score.max_error_share."""
    return summary["error_share"] > cfg.score.max_error_share


def format_summary(summary: dict[str, Any]) -> str:
    """The one-line summary printed by the job."""
    errors = ", ".join(f"{k}={v}" for k, v in sorted(summary["errors"].items())) or "none"
    mlflow_part = summary.get("mlflow_run_id") or "FAILED"
    return (
        f"score {summary['run_date']}: model={summary['model_name']} "
        f"v{summary['model_version']} threshold={summary['threshold']:.4g} "
        f"rows={summary['n_images']} ok={summary['counts'][STATUS_OK]} "
        f"errors={summary['n_errors']} ({errors}) skipped={summary['skipped']} "
        f"flagged={summary['flagged']} ({summary['share_flagged']:.1%}) "
        f"mean_p_fake={summary['mean_p_fake']} {_parts_text(summary)}seconds={summary['seconds']} "
        f"images/s={summary['images_per_s']} mlflow={mlflow_part}"
    )


def _parts_text(summary: dict[str, Any]) -> str:
    """`no_face=N parts_flagged=nose:2,mouth:1 ` for a part model's night, else ""."""
    if "no_face" not in summary:
        return ""
    counts = ",".join(f"{p}:{n}" for p, n in summary["parts_flagged"].items() if n) or "none"
    return f"no_face={summary['no_face']} parts_flagged={counts} "
