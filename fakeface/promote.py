"""Champion/challenger promotion: move the `@champion` alias only to a better model.

Both models are scored on the candidate's own evaluation split (the run artifact
`split/eval_image_ids.txt`, read from the ingested dataset) with the numpy scoring core on
the driver, each with its own `threshold` tag. The candidate wins when its AUC is higher by
more than promote.min_auc_gain, or, with equal AUC (within 1e-9), its accuracy is higher by
more than promote.min_accuracy_gain. Without a champion the candidate must beat the majority
baseline. Every decision is recorded: an MLflow run named "promotion" in the training
experiment, `promotion_<timestamp>` tags on both versions, and the lines the job prints.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fakeface.errors import InputError, ModelError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config
    from fakeface.registry import ResolvedModel

log = logging.getLogger(__name__)

EXIT_PROMOTED = 0
EXIT_KEPT = 3
EVAL_IDS_ARTIFACT = "split/eval_image_ids.txt"
AUC_TIE = 1e-9
COLLECT_BATCH = 256  # rows pulled to the driver and scored at a time


@dataclass
class PromotionDecision:
    """What was compared, the verdict, and whether the alias moved."""

    model_name: str
    candidate_version: str
    champion_version: str | None
    better: bool  # the rule's verdict, before --force / --dry-run
    promoted: bool  # the alias now points at the candidate because of this run
    forced: bool
    dry_run: bool
    reason: str
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    eval_source: str = "artifact"  # or "all_labelled"
    n_eval: int = 0
    decided_at: str = ""
    mlflow_run_id: str | None = None

    @property
    def decision(self) -> str:
        """'promote' (alias moves, or would in a dry run) or 'keep'."""
        return "promote" if self.better or self.forced else "keep"

    @property
    def exit_code(self) -> int:
        """0 promoted (or would be, in a dry run), 3 kept."""
        return EXIT_PROMOTED if self.decision == "promote" else EXIT_KEPT


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    min_auc_gain: float,
    min_accuracy_gain: float,
) -> tuple[bool, str]:
    """The promotion rule on two metric dicts -> (candidate is better, why)."""
    acc, base = candidate["accuracy"], candidate["majority_baseline"]
    if champion is None:
        if acc > base:
            return True, f"no champion; accuracy {acc:.4f} beats the majority baseline {base:.4f}"
        return False, (
            f"no champion, but accuracy {acc:.4f} does not beat the majority baseline {base:.4f}"
        )
    auc_gain = candidate["auc"] - champion["auc"]
    acc_gain = acc - champion["accuracy"]
    if abs(auc_gain) <= AUC_TIE:
        if acc_gain > min_accuracy_gain:
            return True, (
                f"AUC equal ({candidate['auc']:.4f}); accuracy {acc_gain:+.4f} >"
                f" min_accuracy_gain {min_accuracy_gain:g}"
            )
        return False, (
            f"AUC equal ({candidate['auc']:.4f}); accuracy {acc_gain:+.4f} is not >"
            f" min_accuracy_gain {min_accuracy_gain:g}"
        )
    if auc_gain > min_auc_gain:
        return True, f"AUC {auc_gain:+.4f} > min_auc_gain {min_auc_gain:g}"
    return False, f"AUC {auc_gain:+.4f} is not > min_auc_gain {min_auc_gain:g}"


def newest_version(client: MlflowClient, name: str) -> str:
    """The highest version number registered under `name`."""
    from fakeface.registry import with_retry

    escaped = name.replace("'", "\\'")
    versions = with_retry(lambda: client.search_model_versions(f"name='{escaped}'"))
    if not versions:
        raise ModelError(f"no versions of model {name!r} are registered: train one first")
    return str(max(int(mv.version) for mv in versions))


def eval_image_ids(client: MlflowClient, name: str, version: str) -> list[str] | None:
    """The candidate run's evaluation image ids, or None when it logged none."""
    import mlflow

    from fakeface.registry import with_retry

    run_id = with_retry(lambda: client.get_model_version(name, version)).run_id
    if not run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="fakeface-evalids-") as tmp:
        try:
            path = with_retry(
                lambda: mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=EVAL_IDS_ARTIFACT, dst_path=tmp
                )
            )
        except Exception as exc:  # MlflowException / OSError: the artifact is not there
            log.debug("no %s in run %s: %s", EVAL_IDS_ARTIFACT, run_id, exc)
            return None
        text = Path(path).read_text()
    return sorted({line.strip() for line in text.splitlines() if line.strip()})


def evaluation_rows(
    spark: SparkSession, data_path: str, ids: list[str] | None
) -> tuple[DataFrame, int]:
    """Labelled, decodable rows of the ingested dataset (one per image_id), and their count."""
    from pyspark.sql import functions as F

    from fakeface.ingest import read_ingested

    df = read_ingested(spark, data_path).where(
        (F.col("status") == "ok") & F.col("label").isNotNull()
    )
    if ids is not None:
        wanted = spark.createDataFrame([(i,) for i in ids], "image_id string")
        df = df.join(F.broadcast(wanted), "image_id", "left_semi")
    # One image ingested on several dates (or under two names) counts once.
    rows = df.select("image_id", "image", "height", "width", "label", "level").dropDuplicates(
        ["image_id"]
    )
    return rows, rows.count()


def score_both(
    rows: DataFrame, models: list[Any], batch_size: int
) -> tuple[np.ndarray, list[str | None], list[np.ndarray]]:
    """Labels, levels and each model's scores, pulling rows to the driver in batches."""
    from fakeface.score import score_frame

    labels: list[int] = []
    levels: list[str | None] = []
    scores: list[list[np.ndarray]] = [[] for _ in models]
    chunk: list[Any] = []

    def flush() -> None:
        frame = pd.DataFrame(chunk, columns=["image", "height", "width", "label", "level"])
        for i, model in enumerate(models):
            # column 0 is P(fake) for a one-output model and a part model alike
            scores[i].append(
                score_frame(model, frame["image"], frame["height"], frame["width"], batch_size)[
                    :, 0
                ]
            )
        labels.extend(int(v) for v in frame["label"])
        levels.extend(frame["level"])
        chunk.clear()

    for row in rows.select("image", "height", "width", "label", "level").toLocalIterator():
        chunk.append(tuple(row))
        if len(chunk) >= COLLECT_BATCH:
            flush()
    if chunk:
        flush()
    joined = [np.concatenate(s) if s else np.zeros(0, np.float32) for s in scores]
    return np.asarray(labels, dtype=int), levels, joined


def _load(resolved: ResolvedModel, shapes: list[tuple[int, int]]) -> Any:
    from fakeface.model_bundle import package_model
    from fakeface.score import load_model_cached

    packed = package_model(resolved, shapes)
    return load_model_cached(packed.data, packed.key)


def _resolve_champion(client: MlflowClient, name: str, alias: str, force: bool) -> Any:
    from fakeface.registry import champion_version, resolve_model

    version = champion_version(client, name, alias)
    if version is None:
        return None
    try:
        return resolve_model(client, f"models:/{name}/{version}")
    except ModelError as exc:
        if force:
            log.warning("champion v%s is unusable (%s); --force replaces it", version, exc)
            return None
        raise ModelError(
            f"champion v{version} is unusable ({exc}); use --force to replace it"
        ) from None


def run_promote(
    spark: SparkSession,
    cfg: Config,
    data_path: str,
    candidate: str | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> PromotionDecision:
    """Compare the candidate (default: newest version) with @champion; move the alias if better."""
    from fakeface.metrics import classification_metrics
    from fakeface.registry import configure_mlflow, resolve_model

    client = configure_mlflow(cfg)
    name, alias = cfg.mlflow.registered_model, cfg.mlflow.champion_alias
    if candidate is not None and not str(candidate).isdigit():
        raise ModelError(f"--candidate must be a version number of {name!r}, got {candidate!r}")
    version = str(candidate) if candidate is not None else newest_version(client, name)
    cand = resolve_model(client, f"models:/{name}/{version}")
    champ = _resolve_champion(client, name, alias, force)
    decided_at = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")

    decision = PromotionDecision(
        model_name=name,
        candidate_version=cand.version,
        champion_version=champ.version if champ else None,
        better=False,
        promoted=False,
        forced=force,
        dry_run=dry_run,
        reason="",
        decided_at=decided_at,
    )
    if champ is not None and champ.version == cand.version:
        decision.reason = f"v{cand.version} already holds @{alias}"
        decision.mlflow_run_id = record(cfg, client, decision)
        return decision

    ids = eval_image_ids(client, name, cand.version)
    rows, n_rows = evaluation_rows(spark, data_path, ids)
    note = ""
    if ids is None:
        decision.eval_source = "all_labelled"
        note = f" (the candidate's run has no {EVAL_IDS_ARTIFACT}: evaluated on all labelled rows)"
        log.warning(
            "candidate v%s logged no %s; using all labelled rows", version, EVAL_IDS_ARTIFACT
        )
    elif n_rows < len(ids):
        log.warning(
            "%d of the candidate's %d evaluation images are in %s", n_rows, len(ids), data_path
        )
    if n_rows == 0:
        raise InputError(
            f"no labelled evaluation images of candidate v{cand.version} in {data_path}:"
            " pass the ingested dataset it was trained on"
        )

    shapes = [
        (int(r["height"]), int(r["width"]))
        for r in rows.select("height", "width").distinct().collect()
    ]
    resolved = [cand] + ([champ] if champ else [])
    models = [_load(r, shapes) for r in resolved]
    y, levels, scores = score_both(rows, models, cfg.score.inference_batch_size)
    usable = np.all([np.isfinite(s) for s in scores], axis=0)
    if not usable.all():
        log.warning("%d evaluation rows could not be scored; left out", int((~usable).sum()))
    y, levels = y[usable], [lv for lv, ok in zip(levels, usable, strict=True) if ok]
    if y.min(initial=1) == y.max(initial=0) or len(y) == 0:
        raise InputError(
            f"the evaluation set ({len(y)} images) holds only one class: cannot compare models"
        )
    metrics = [
        classification_metrics(y, s[usable], r.threshold, levels)
        for r, s in zip(resolved, scores, strict=True)
    ]
    decision.n_eval = len(y)
    decision.candidate_metrics = metrics[0]
    decision.champion_metrics = metrics[1] if champ else None
    decision.better, why = decide(
        decision.candidate_metrics,
        decision.champion_metrics,
        cfg.promote.min_auc_gain,
        cfg.promote.min_accuracy_gain,
    )
    decision.reason = why + note
    if force and not decision.better:
        decision.reason = f"forced: {decision.reason}"
    decision.mlflow_run_id = record(cfg, client, decision)
    return decision


def record(cfg: Config, client: MlflowClient, decision: PromotionDecision) -> str:
    """Move the alias (unless dry run) and record the decision in MLflow; return the run id."""
    from mlflow.entities import Metric, Param, RunTag

    from fakeface.registry import ensure_experiment, set_version_tags, with_retry

    name, alias = decision.model_name, cfg.mlflow.champion_alias
    experiment_id = ensure_experiment(cfg, cfg.mlflow.experiment)
    run = with_retry(lambda: client.create_run(experiment_id, run_name="promotion"))
    run_id = run.info.run_id
    moves = decision.decision == "promote" and not decision.dry_run
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    metrics: dict[str, float] = {}
    for prefix, values in (
        ("candidate", decision.candidate_metrics),
        ("champion", decision.champion_metrics or {}),
    ):
        metrics.update({f"{prefix}_{k}": v for k, v in values.items() if _finite(v)})
    if decision.champion_metrics:
        for key in ("auc", "accuracy"):
            gain = decision.candidate_metrics[key] - decision.champion_metrics[key]
            if _finite(gain):
                metrics[f"{key}_gain"] = gain
    params = {
        "model_name": name,
        "candidate_version": decision.candidate_version,
        "champion_version": decision.champion_version or "none",
        "eval_source": decision.eval_source,
        "n_eval": decision.n_eval,
        "min_auc_gain": cfg.promote.min_auc_gain,
        "min_accuracy_gain": cfg.promote.min_accuracy_gain,
        "dry_run": decision.dry_run,
        "forced": decision.forced,
    }
    tags = {
        "job": "promote",
        "decision": decision.decision,
        "reason": decision.reason,
        "better": str(decision.better).lower(),
        "forced": str(decision.forced).lower(),
        "dry_run": str(decision.dry_run).lower(),
        "promoted": "false",
    }
    with_retry(
        lambda: client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v[:5000]) for k, v in tags.items()],
        )
    )
    try:
        if moves:
            with_retry(
                lambda: client.set_registered_model_alias(name, alias, decision.candidate_version)
            )
            decision.promoted = True
            with_retry(lambda: client.set_tag(run_id, "promoted", "true"))
        if not decision.dry_run:  # a dry run leaves the registry exactly as it was
            note = f"{decision.decision}{' (forced)' if decision.forced else ''}: {decision.reason}"
            note = f"{note} [candidate v{decision.candidate_version}, run {run_id}]"
            key = f"promotion_{decision.decided_at}"
            set_version_tags(client, name, decision.candidate_version, {key: note[:5000]})
            if decision.champion_version:
                set_version_tags(client, name, decision.champion_version, {key: note[:5000]})
            if decision.promoted:
                set_version_tags(
                    client, name, decision.candidate_version, {"promoted_at": decision.decided_at}
                )
                if decision.champion_version:
                    set_version_tags(
                        client, name, decision.champion_version, {"demoted_at": decision.decided_at}
                    )
    except Exception:
        with_retry(lambda: client.set_terminated(run_id, "FAILED"))
        raise
    with_retry(lambda: client.set_terminated(run_id))
    return run_id


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def format_decision(decision: PromotionDecision, alias: str = "champion") -> list[str]:
    """The lines the job prints: both models' metrics, the verdict and why."""
    lines = []
    champ = f"v{decision.champion_version}" if decision.champion_version else "none"
    if decision.n_eval:
        lines.append(
            f"promotion {decision.model_name}: candidate v{decision.candidate_version} vs"
            f" champion {champ} on {decision.n_eval} evaluation images ({decision.eval_source})"
        )
    for label, version, values in (
        ("candidate", decision.candidate_version, decision.candidate_metrics),
        ("champion", decision.champion_version, decision.champion_metrics),
    ):
        if values:
            lines.append(
                f"  {label:<9} v{version}: auc={values['auc']:.4f}"
                f" accuracy={values['accuracy']:.4f} threshold={values['threshold']:.4g}"
                f" majority_baseline={values['majority_baseline']:.4f}"
            )
    verb = {
        (True, False): f"promoted v{decision.candidate_version} to @{alias}",
        (False, False): f"kept @{alias} on {champ}",
        (True, True): f"dry run: would promote v{decision.candidate_version} to @{alias}",
        (False, True): f"dry run: would keep @{alias} on {champ}",
    }[(decision.decision == "promote", decision.dry_run)]
    forced = " (forced)" if decision.forced else ""
    lines.append(
        f"decision: {verb}{forced}: {decision.reason} [mlflow run {decision.mlflow_run_id}]"
    )
    return lines
