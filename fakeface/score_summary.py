"""What a scoring run reports: counts, histogram, the one-line summary, the MLflow run."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from fakeface.score import STATUS_ERROR, STATUS_OK

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from pyspark.sql import DataFrame

    from fakeface.config import Config

log = logging.getLogger(__name__)

EXIT_ERROR_SHARE = 4
HISTOGRAM_BINS = 10


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
        f"mean_p_fake={summary['mean_p_fake']} seconds={summary['seconds']} "
        f"images/s={summary['images_per_s']} mlflow={mlflow_part}"
    )
