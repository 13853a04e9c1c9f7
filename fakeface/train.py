"""Training: ingested Parquet -> petastorm -> Keras, tracked and registered in MLflow.

One MLflow run per training. `--variant all` nests one run per variant under a parent;
`--folds K` nests one run per fold and reports mean +- std (cross-validation only: fold
models are not registered). The evaluation split never drives early stopping, the
checkpoint or the threshold: the validation split, carved from the training side, does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fakeface import split as splits
from fakeface.errors import FakefaceError, InputError
from fakeface.fitting import TimeBudget, fit_variant, metric_name  # noqa: F401  (the job's API)
from fakeface.metrics import LEVEL_KEYS, calibrated_threshold, classification_metrics
from fakeface.outputs import PART_COLUMNS

if TYPE_CHECKING:
    import keras
    from pyspark.sql import DataFrame, SparkSession

    from fakeface.config import Config

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
EVAL_IDS_ARTIFACT = "split/eval_image_ids.txt"


@dataclass
class VariantResult:
    """What one trained variant measured on its evaluation side."""

    variant: str
    metrics: dict[str, float]
    threshold: float
    epochs_run: int
    seconds: float
    run_id: str = ""
    version: str | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None  # evaluation rows: image_id, label, level, p_fake
    fold_results: list[VariantResult] = field(default_factory=list)
    # The fitted Keras model, in memory only: lets a benchmark score other copies of the
    # evaluation images (e.g. a re-encode) with each fold's model. Never logged from here.
    model: Any = field(default=None, repr=False)
    # A part model's per-part thresholds (part -> threshold); empty for one-output models.
    part_thresholds: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingSession:
    """What every training of one job shares: data, tracking, device strategy, budget."""

    spark: SparkSession
    cfg: Config
    client: Any
    df: DataFrame
    meta: pd.DataFrame
    strategy: Any
    weights: str
    epochs: int
    context: dict[str, Any]
    # The training batch size each variant runs at: train.batch_size, or less where the
    # memory estimate says that would not fit (see check_variants_fit).
    batch_sizes: dict[str, int] = field(default_factory=dict)


def resolve_variants(requested: str | None, cfg: Config) -> list[str]:
    """`--variant NAME|A,B|all` (default: the production recipe in config) -> variant names."""
    from fakeface.models.factory import get_variant, list_variants

    name = requested or cfg.train.variant
    if name == "all":
        return list_variants()
    names = [n.strip() for n in name.split(",") if n.strip()]
    for variant in names:
        try:
            get_variant(variant)
        except ValueError as exc:
            raise FakefaceError(str(exc)) from None
    return names


def load_training_frame(spark: SparkSession, data_path: str) -> DataFrame:
    """Labelled, decoded rows of an ingested dataset; the latest run date wins per path."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from fakeface.ingest import read_ingested

    df = read_ingested(spark, data_path).where(
        (F.col("status") == "ok") & F.col("label").isNotNull()
    )
    latest = Window.partitionBy("path").orderBy(F.col("run_date").desc())
    # The latest run date per path is chosen on the keys alone and the rows are kept by a
    # semi-join: a window over whole rows would shuffle and sort every image's pixels in the
    # JVM (1.08 MB a row at 600 px; it ran a 4 GiB driver heap out of memory).
    keys = (
        df.select("path", "run_date")
        .withColumn("_rank", F.row_number().over(latest))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )
    return df.join(F.broadcast(keys), ["path", "run_date"], "left_semi")


def collect_metadata(df: DataFrame) -> pd.DataFrame:
    """One small row per image (no pixels): what splits and digests are computed from."""
    meta = df.select("image_id", "path", "label", "level", "regions", "height").toPandas()
    if meta.empty:
        raise InputError("no labelled images with status 'ok' in the data: check the ingest")
    counts = meta["label"].value_counts()
    if len(counts) < 2 or counts.min() < 4:
        raise InputError(
            f"training needs both classes with at least 4 images each, got {counts.to_dict()}"
            " (label 1 = fake, 0 = real)"
        )
    if meta["height"].nunique() != 1:
        raise InputError("the data mixes image sizes: ingest it again with one ingest.image_size")
    return meta


def dataset_digest(meta: pd.DataFrame) -> dict[str, Any]:
    """Rows, class and level balance, and a hash of the image ids."""
    import hashlib

    levels = meta.loc[meta.label == 1, "level"].fillna("unknown").value_counts().to_dict()
    return {
        "data.rows": len(meta),
        "data.distinct_images": int(meta.image_id.nunique()),
        "data.fake": int((meta.label == 1).sum()),
        "data.real": int((meta.label == 0).sum()),
        "data.levels": json.dumps(levels, sort_keys=True),
        "data.image_size": int(meta.height.iloc[0]),
        "data.image_ids_sha256": hashlib.sha256(
            "\n".join(sorted(meta.image_id)).encode()
        ).hexdigest(),
    }


def configure_tensorflow(spark: SparkSession | None) -> Any:
    """GPU: memory growth, mixed precision, MirroredStrategy. CPU: threads Spark leaves free."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        keras.mixed_precision.set_global_policy("mixed_float16")
        return tf.distribute.MirroredStrategy()
    cores = os.cpu_count() or 1
    busy = 0
    if spark is not None and not spark.sparkContext.master.startswith("local"):
        busy = int(spark.conf.get("spark.driver.cores", "1"))
    # In local mode Spark's executors sit idle while Keras fits, so TF gets every core.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores - busy))
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # TF already running in this process (notebooks, tests): keep it
        log.debug("TensorFlow already initialised; thread settings unchanged")
    return tf.distribute.get_strategy()


def _role_frame(spark: SparkSession, split: splits.Split) -> DataFrame:
    rows = [(i, splits.TRAIN) for i in split.train] + [(i, splits.VAL) for i in split.val]
    rows += [(i, splits.EVAL) for i in split.eval]
    return spark.createDataFrame(rows, "image_id string, role string")


def predict(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """p(fake) (N,) for a batch of uint8 images, from a one-output or a part model."""
    from fakeface.score import model_outputs

    if len(images) == 0:
        return np.zeros(0, np.float32)
    # model.predict runs under the fit's distribution strategy; model_outputs checks the
    # width (1 or 6) and column 0 is P(fake) either way.
    pred = model.predict(images, batch_size=batch_size, verbose=0)
    return model_outputs(pred, len(images))[:, 0]


def predict_outputs(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """float32 (N, 6) in `fakeface.outputs.MODEL_OUTPUTS` order (NaN columns 1-5 for a
    one-output model): what the nightly job scores with (`score.predict_scores`)."""
    from fakeface.score import predict_scores

    return predict_scores(model, np.asarray(images, np.uint8), batch_size)


def log_and_register_model(
    cfg: Config,
    client: Any,
    model: keras.Model,
    variant: str,
    threshold: float,
    metrics: dict[str, float],
    image_size: int,
    run_id: str,
    example_image: np.ndarray | None = None,
    part_thresholds: dict[str, float] | None = None,
) -> str | None:
    """Log the self-contained model (`fakeface.serving`), register it with its tags.

    The threshold is written into the model folder and into the version's tag, the same
    value; so is each part's of `part_thresholds` (a part model's, part -> threshold; tag
    `threshold_<part>`). `example_image` (a synthetic face) becomes the model's input example.
    """
    import mlflow

    from fakeface import registry
    from fakeface.models.factory import input_size
    from fakeface.outputs import checked_part_thresholds, part_threshold_tag
    from fakeface.serving import ServingSettings, log_serving_model

    settings = ServingSettings(
        threshold=float(threshold),
        image_size=int(image_size),
        max_pixels=int(cfg.ingest.max_pixels),
        batch_size=int(cfg.score.inference_batch_size),
        variant=variant,
        part_thresholds=checked_part_thresholds(part_thresholds),
    )
    info = registry.with_retry(
        lambda: log_serving_model(model, MODEL_ARTIFACT, settings, example_image)
    )
    mlflow.set_tag("model_uri", info.model_uri)
    if not cfg.train.register:
        return None
    tags: dict[str, Any] = {
        registry.TAG_VARIANT: variant,
        registry.TAG_THRESHOLD: settings.threshold,
        registry.TAG_INPUT_SIZE: image_size,
        "model_input_size": input_size(variant),
        "run_id": run_id,
    }
    # floats: registry._stringify keeps every digit, so the tags equal the folder's values
    tags.update({part_threshold_tag(p): t for p, t in settings.part_thresholds.items()})
    tags.update({f"eval_{k}": v for k, v in metrics.items()})
    return registry.register_model(
        client, info.model_uri, cfg.mlflow.registered_model, tags, run_id
    )


def _example_image(size: int, seed: int) -> np.ndarray:
    """A synthetic face for the model's input example: every model folder carries it, so it
    must be nobody's photo (not a lake image)."""
    from fakeface.synth import MIN_SIZE, render_face

    image, _ = render_face(np.random.default_rng(seed), max(size, MIN_SIZE))
    return image


def train_one(
    session: TrainingSession, split: splits.Split, variant: str, register: bool, run_name: str
) -> VariantResult:
    """Fit one variant on one split inside its own (nested) MLflow run."""
    import mlflow
    from pyspark.sql import functions as F

    from fakeface import feed
    from fakeface.models.part_model import is_part_model
    from fakeface.part_training import part_thresholds

    spark, cfg, client, df, meta = (
        session.spark,
        session.cfg,
        session.client,
        session.df,
        session.meta,
    )
    weights, epochs = session.weights, session.epochs
    started = time.monotonic()
    image_size = int(meta.height.iloc[0])
    roles = _role_frame(spark, split)
    tagged = df.join(F.broadcast(roles), "image_id")
    converters = {
        role: feed.make_converter(tagged.where(F.col("role") == role), image_size)
        for role in (splits.TRAIN, splits.VAL, splits.EVAL)
    }
    try:
        with mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None) as run:
            mlflow.set_tags({"variant": variant, "job": "train"})
            log_run_context(cfg, session.context)
            batch_size = session.batch_sizes.get(variant, cfg.train.batch_size)
            mlflow.log_params(
                {
                    "variant": variant,
                    "weights": weights,
                    "epochs_max": epochs,
                    "train.batch_size_used": batch_size,
                }
            )
            mlflow.log_text("\n".join(sorted(split.eval)), EVAL_IDS_ARTIFACT)
            mlflow.set_tag("eval_image_ids_sha256", split.eval_ids_digest())
            mlflow.log_params(
                {
                    "split.train": len(split.train),
                    "split.val": len(split.val),
                    "split.eval": len(split.eval),
                }
            )
            val = feed.collect_numpy(converters[splits.VAL])
            evaluation = feed.collect_numpy(converters[splits.EVAL])
            model, history = fit_variant(
                variant,
                cfg,
                converters[splits.TRAIN],
                val,
                session.strategy,
                weights,
                epochs,
                batch_size,
            )
            batch = cfg.train.batch_size
            val_outputs = predict_outputs(model, val["image"], batch)
            threshold = calibrated_threshold(val["label"], val_outputs[:, 0])
            eval_outputs = predict_outputs(model, evaluation["image"], batch)
            scores = eval_outputs[:, 0]
            thresholds_by_part = None
            if is_part_model(model):  # each part's own cut, calibrated like the image's
                thresholds_by_part = part_thresholds(val_outputs, val["regions"], val["label"])
                mlflow.log_metrics({f"threshold_{k}": v for k, v in thresholds_by_part.items()})
            metrics = classification_metrics(
                evaluation["label"], scores, threshold, list(evaluation["level"])
            )
            mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items() if math.isfinite(v)})
            mlflow.log_metric("threshold", threshold)
            _log_artifacts(
                cfg,
                model,
                evaluation,
                eval_outputs,
                threshold,
                history,
                tagged_paths(meta),
                thresholds_by_part,
            )
            version = None
            if register:
                version = log_and_register_model(
                    cfg,
                    client,
                    model,
                    variant,
                    threshold,
                    metrics,
                    image_size,
                    run.info.run_id,
                    example_image=_example_image(image_size, cfg.train.seed),
                    part_thresholds=thresholds_by_part,
                )
            result = VariantResult(
                variant=variant,
                metrics=metrics,
                threshold=threshold,
                epochs_run=len(history.get("loss", [])),
                seconds=time.monotonic() - started,
                run_id=run.info.run_id,
                version=version,
                history=history,
                model=model,
                predictions=pd.DataFrame(
                    {
                        "image_id": evaluation["image_id"],
                        "label": evaluation["label"].astype(int),
                        "level": evaluation["level"],
                        "p_fake": scores,
                        "threshold": threshold,
                        "regions": [
                            r.decode() if isinstance(r, bytes) else str(r)
                            for r in evaluation["regions"]
                        ],
                        **{column: eval_outputs[:, 1 + k] for k, column in enumerate(PART_COLUMNS)},
                    }
                ),
                part_thresholds=thresholds_by_part or {},
            )
            mlflow.log_metric("train_seconds", result.seconds)
            mlflow.log_metric("epochs_run", result.epochs_run)
    finally:
        for converter in converters.values():
            converter.delete()
    return result


def tagged_paths(meta: pd.DataFrame) -> dict[str, str]:
    """image_id -> path (first), for prediction tables."""
    return dict(zip(meta.image_id, meta.path, strict=True))


def _log_artifacts(
    cfg: Config,
    model: keras.Model,
    evaluation: dict[str, np.ndarray],
    outputs: np.ndarray,
    threshold: float,
    history: dict[str, list[float]],
    paths: dict[str, str],
    part_thresholds: dict[str, float] | None = None,
) -> None:
    import mlflow

    scores = outputs[:, 0]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from fakeface.evaluate import write_evaluation_artifacts

            write_evaluation_artifacts(
                Path(tmp),
                model=model,
                images=evaluation["image"],
                y_true=evaluation["label"],
                scores=scores,
                threshold=threshold,
                levels=list(evaluation["level"]),
                history=history,
                image_ids=list(evaluation["image_id"]),
                paths=[paths.get(i, "") for i in evaluation["image_id"]],
                gradcam_examples=cfg.train.gradcam_examples,
                regions=[
                    r.decode() if isinstance(r, bytes) else str(r) for r in evaluation["regions"]
                ],
                part_scores=outputs[:, 1:5] if part_thresholds else None,
                part_thresholds=part_thresholds,
            )
        except Exception as exc:  # pictures must never cost a trained model
            log.warning("could not draw evaluation artifacts: %s", exc)
            pd.DataFrame(
                {
                    "image_id": evaluation["image_id"],
                    "label": evaluation["label"],
                    "level": evaluation["level"],
                    "p_fake": scores,
                    "is_fake": scores >= threshold,
                }
            ).to_csv(Path(tmp) / "predictions.csv", index=False)
        mlflow.log_artifacts(tmp, "evaluation")


def summary_table(results: list[VariantResult]) -> str:
    """The study's summary table (markdown), with the majority-baseline row."""
    header = "| variant | accuracy | AUC | easy | mid | hard | real | epochs | minutes |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]

    def cell(m: dict[str, float], key: str) -> str:
        value = m.get(key)
        return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"

    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.variant} | {cell(m, 'accuracy')} | {cell(m, 'auc')} | "
            + " | ".join(cell(m, f"accuracy_{k}") for k in LEVEL_KEYS)
            + f" | {r.epochs_run} | {r.seconds / 60:.1f} |"
        )
    if results:
        base = results[0].metrics.get("majority_baseline", float("nan"))
        lines.append(f"| majority baseline | {base:.3f} | 0.500 | - | - | - | - | - | - |")
    return "\n".join(lines)


def cv_summary(variant: str, folds: list[VariantResult]) -> dict[str, float]:
    """Mean and std over folds of each evaluation metric."""
    keys = sorted({k for r in folds for k in r.metrics})
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([r.metrics.get(key, np.nan) for r in folds], dtype=float)
        out[f"cv_{key}_mean"] = float(np.nanmean(values))
        out[f"cv_{key}_std"] = float(np.nanstd(values))
    return out


def check_variants_fit(variants: list[str], cfg: Config) -> dict[str, int]:
    """The training batch size of each variant, chosen before any data is read.

    The largest batch size up to train.batch_size that the memory estimate says fits; a
    variant that would not fit even at batch 1 is refused in one line. CPU only: on a GPU
    the activations live in device memory, where TensorFlow reports its own out-of-memory
    error instead of the kernel killing the process, so every variant gets train.batch_size.
    """
    import keras
    import tensorflow as tf

    from fakeface.models.factory import build_model
    from fakeface.models.memory import (
        GIB,
        HEADROOM,
        available_bytes,
        check_training_memory,
        training_bytes,
    )

    requested = cfg.train.batch_size
    if tf.config.list_physical_devices("GPU"):
        return dict.fromkeys(variants, requested)
    available = available_bytes()
    batches: dict[str, int] = {}
    for variant in variants:
        model = build_model(variant, weights="none", augment=None, seed=cfg.train.seed)
        batches[variant] = check_training_memory(variant, model, requested, available)
        if batches[variant] != requested and available is not None:
            log.info(
                "%s: train.batch_size=%d needs about %.1f GiB, %.1f GiB available (%.1f planned"
                " for): training at batch %d",
                variant,
                requested,
                training_bytes(model, requested) / GIB,
                available / GIB,
                available * HEADROOM / GIB,
                batches[variant],
            )
    keras.backend.clear_session()
    return batches


def run_train(
    spark: SparkSession,
    cfg: Config,
    data_path: str,
    variants: list[str],
    folds: int,
    weights: str,
    epochs: int,
) -> list[VariantResult]:
    """Train the variants on one seeded split (or K folds); return what each measured."""
    import keras
    import mlflow

    from fakeface import feed, registry

    client = registry.configure_mlflow(cfg)
    registry.ensure_experiment(cfg, cfg.mlflow.experiment)
    keras.utils.set_random_seed(cfg.train.seed)
    strategy = configure_tensorflow(spark)
    batch_sizes = check_variants_fit(variants, cfg)
    keras.utils.set_random_seed(cfg.train.seed)  # the check built models: start afresh
    cache = cfg.train.feed_cache_dir
    feed.set_cache_dir(spark, cache if "://" in cache else cfg.resolve_path(cache).as_uri())

    df = load_training_frame(spark, data_path)
    meta = collect_metadata(df)
    from fakeface.spark import limit_reader_batch

    limit_reader_batch(spark, int(meta.height.max()) if len(meta) else 0)
    digest = dataset_digest(meta)
    ids, labels, levels = list(meta.image_id), list(meta.label), list(meta.level)
    if folds > 1:
        fold_list = splits.fold_splits(
            ids, labels, levels, folds, cfg.train.val_fraction, cfg.train.seed
        )
    else:
        fold_list = [
            splits.make_split(
                ids, labels, levels, cfg.train.eval_fraction, cfg.train.val_fraction, cfg.train.seed
            )
        ]
    log.info(
        "data: %d images (%d fake, %d real); %s",
        digest["data.rows"],
        digest["data.fake"],
        digest["data.real"],
        f"{folds} folds" if folds > 1 else f"eval {len(fold_list[0].eval)} images",
    )
    context = {
        **digest,
        "run.variants": ",".join(variants),
        "run.folds": folds,
        "run.epochs": epochs,
        "run.weights": weights,
        "run.data": data_path,
    }
    session = TrainingSession(
        spark, cfg, client, df, meta, strategy, weights, epochs, context, batch_sizes
    )
    results: list[VariantResult] = []
    if len(variants) == 1 and folds == 1:
        results.append(train_one(session, fold_list[0], variants[0], True, f"train-{variants[0]}"))
        return results
    parent_name = ("train-all" if len(variants) > 1 else f"train-{variants[0]}") + (
        f"-cv{folds}" if folds > 1 else ""
    )
    with mlflow.start_run(run_name=parent_name):
        log_run_context(cfg, context)
        mlflow.set_tags({"job": "train", "eval_image_ids_sha256": fold_list[0].eval_ids_digest()})
        for variant in variants:
            if folds > 1:
                results.append(_cross_validate(session, fold_list, variant))
            else:
                results.append(train_one(session, fold_list[0], variant, True, f"train-{variant}"))
        mlflow.log_text(summary_table(results), "summary.md")
    return results


def _cross_validate(
    session: TrainingSession, fold_list: list[splits.Split], variant: str
) -> VariantResult:
    import mlflow

    started = time.monotonic()
    with mlflow.start_run(run_name=f"cv-{variant}", nested=True):
        mlflow.set_tags({"variant": variant, "job": "train-cv"})
        log_run_context(session.cfg, session.context)
        fold_results = []
        for k, split in enumerate(fold_list):
            fold_results.append(train_one(session, split, variant, False, f"{variant}-fold{k}"))
            log.info("%s fold %d: %s", variant, k, _short(fold_results[-1].metrics))
        summary = cv_summary(variant, fold_results)
        mlflow.log_metrics(summary)
    means = {k[3:-5]: v for k, v in summary.items() if k.endswith("_mean")}
    result = VariantResult(
        variant=f"{variant} ({len(fold_list)}-fold)",
        metrics=means,
        threshold=float(np.mean([r.threshold for r in fold_results])),
        epochs_run=int(np.mean([r.epochs_run for r in fold_results])),
        seconds=time.monotonic() - started,
    )
    result.history = {"folds": [r.metrics.get("accuracy", np.nan) for r in fold_results]}
    # Out-of-fold predictions, each scored at its own fold's threshold.
    result.predictions = pd.concat(
        [
            r.predictions.assign(fold=k)
            for k, r in enumerate(fold_results)
            if r.predictions is not None
        ],
        ignore_index=True,
    )
    result.fold_results = fold_results
    result.metrics.update({k: v for k, v in summary.items() if k.endswith("_std")})
    return result


def log_run_context(cfg: Config, context: dict[str, Any]) -> None:
    """The whole config and the dataset digest, as params of the active run."""
    import mlflow

    params = {k: _param(v) for k, v in cfg.to_flat_dict().items()}
    params.update({k: _param(v) for k, v in context.items()})
    mlflow.log_params(params)


def _short(metrics: dict[str, float]) -> str:
    keys = ("accuracy", "auc", "accuracy_easy", "accuracy_mid", "accuracy_hard", "accuracy_real")
    return " ".join(f"{k}={metrics[k]:.3f}" for k in keys if k in metrics)


def _param(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return text[:6000]


def format_results(results: list[VariantResult], folds: int) -> str:
    """What the job prints at the end."""
    lines = [summary_table(results)]
    if folds > 1:
        for r in results:
            m = r.metrics
            nan = float("nan")
            lines.append(
                f"{r.variant}: accuracy {m.get('accuracy', nan):.3f} +- "
                f"{m.get('cv_accuracy_std', nan):.3f}, AUC {m.get('auc', nan):.3f}"
                f" +- {m.get('cv_auc_std', nan):.3f}"
            )
    for r in results:
        if r.version:
            lines.append(
                f"registered {r.variant} as version {r.version} (threshold {r.threshold:.3f})"
            )
    return "\n".join(lines)
