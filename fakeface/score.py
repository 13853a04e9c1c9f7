"""Nightly scoring: numpy core, model distribution, pandas-UDF wrapper and `run_score`.

The driver resolves the model URI once (`models:/NAME@champion` -> one version), checks its
signature and archive against the data, packs its MLflow folder into bytes and broadcasts
them. Each Python worker unpacks and loads that version once (cached by version and content
digest) and scores Arrow batches with `predict_scores`, which is plain numpy in, numpy out:
raw files are decoded and scored in one `mapInPandas` pass (`decode_and_score`), ingested
pixels go through a scalar-iterator pandas UDF (`make_score_udf`).

Output: `<output>/run_date=<date>/` Parquet, one row per input image (OUTPUT_SCHEMA), written
through `storage` (staged, swapped in under the date's lock; a rerun replaces the date).
Input is a folder of raw images (decoded in the same pass) or an ingested Parquet dataset
(every row of every `run_date=` partition, or one partition folder given directly).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fakeface.errors import InputError, ModelError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from pyspark.sql import Column, DataFrame, SparkSession

    from fakeface.config import Config
    from fakeface.registry import ResolvedModel

log = logging.getLogger(__name__)

EXIT_ERROR_SHARE = 4
STATUS_OK = "ok"
STATUS_ERROR = "error"
ERROR_NO_SCORE = "no_score"
HISTOGRAM_BINS = 10

OUTPUT_SCHEMA = (
    "image_id string, path string, p_fake float, is_fake boolean, threshold double, "
    "model_name string, model_version string, scored_at timestamp, status string, error string"
)
OUTPUT_COLUMNS = [c.strip().split(" ")[0] for c in OUTPUT_SCHEMA.split(",")]

# --------------------------------------------------------------------------- numpy core


def predict_scores(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """P(fake) for uint8 images (N, H, W, 3), `batch_size` at a time -> float32 (N,)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ModelError(
            f"scoring expects uint8 images shaped (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    n = len(images)
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, max(1, batch_size)):
        batch = images[start : start + batch_size]
        # predict_on_batch runs one traced function per shape; Keras generalises the trace
        # after the first ragged last batch instead of retracing every size.
        pred = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        if pred.size != len(batch):
            raise ModelError(
                f"model returned shape {pred.shape} for {len(batch)} images; expected"
                f" ({len(batch)}, 1): not a one-unit fake/real classifier"
            )
        out[start : start + len(batch)] = pred.reshape(-1)
    return out


def score_frame(
    model: Any, images: pd.Series, heights: pd.Series, widths: pd.Series, batch_size: int
) -> np.ndarray:
    """Scores for a pandas batch of raw pixel bytes; NaN where a row has no usable image."""
    scores = np.full(len(images), np.nan, dtype=np.float32)
    groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for i, (data, h, w) in enumerate(zip(images, heights, widths, strict=True)):
        if data is None or pd.isna(h) or pd.isna(w):
            continue
        h, w = int(h), int(w)
        if len(data) == h * w * 3:  # anything else is corrupt; the row becomes an error
            groups[(h, w)].append(i)
    # Rows of one size are stacked; datasets ingested at several sizes still score.
    for (h, w), rows in groups.items():
        buffer = b"".join(bytes(images.iat[i]) for i in rows)
        batch = np.frombuffer(buffer, dtype=np.uint8).reshape(len(rows), h, w, 3)
        scores[rows] = predict_scores(model, batch, batch_size)
    scores[~np.isfinite(scores)] = np.nan
    return scores


# --------------------------------------------------------------------------- model packing

_MODEL_CACHE: collections.OrderedDict[str, Any] = collections.OrderedDict()
_MODEL_CACHE_SIZE = 2  # promotion holds champion + candidate; workers need one
_MODEL_LOCK = threading.Lock()


def pack_model_dir(model_dir: str | Path) -> bytes:
    """An MLflow model folder as uncompressed tar bytes (the .keras file is a zip already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # Same files -> same bytes (no mtimes/owners), so the digest in the cache key is
        # stable across downloads and reused Python workers keep their loaded model.
        tar.add(str(model_dir), arcname="model", filter=_normalized)
    return buffer.getvalue()


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def unpack_model(data: bytes, dest: str | Path) -> Path:
    """Unpack `pack_model_dir` bytes under `dest`; return the model folder."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        if hasattr(tarfile, "data_filter"):  # refuses links and paths outside dest
            tar.extractall(str(dest), filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(str(dest))
    return Path(dest) / "model"


def configure_tf_threads(num_threads: int | None) -> None:
    """Limit TensorFlow to `num_threads` (spark.task.cpus); only possible before its first op."""
    if not num_threads or num_threads < 1:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    except RuntimeError:  # TF already ran an op in this process: keep its pools
        log.debug("TensorFlow already initialised; thread settings unchanged")


def load_model_cached(
    model_bytes_or_path: Any, version_key: str, num_threads: int | None = None
) -> Any:
    """The Keras model of `version_key`, loaded once per Python process.

    `model_bytes_or_path` is `pack_model_dir` bytes, a Spark broadcast of them (read only on
    a cache miss), or a local MLflow model folder.
    """
    with _MODEL_LOCK:
        if version_key in _MODEL_CACHE:
            _MODEL_CACHE.move_to_end(version_key)
            return _MODEL_CACHE[version_key]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        configure_tf_threads(num_threads)
        import mlflow.keras

        import fakeface  # noqa: F401  (registers the custom layers before the model loads)

        source = getattr(model_bytes_or_path, "value", model_bytes_or_path)
        if isinstance(source, bytes | bytearray | memoryview):
            tmp = tempfile.mkdtemp(prefix="fakeface-model-")
            try:
                model = mlflow.keras.load_model(str(unpack_model(bytes(source), tmp)))
            finally:  # the weights are in memory now; workers must not leak model copies
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            model = mlflow.keras.load_model(str(source))
        _MODEL_CACHE[version_key] = model
        while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
            _MODEL_CACHE.popitem(last=False)
        return model


@dataclass(frozen=True)
class PackedModel:
    """A resolved model version and its MLflow folder as bytes, ready to broadcast."""

    resolved: ResolvedModel
    data: bytes
    digest: str

    @property
    def key(self) -> str:
        """Cache key: the version plus a content digest (two stores may reuse numbers)."""
        return f"{self.resolved.name}/{self.resolved.version}/{self.digest[:16]}"


def download_model(resolved: ResolvedModel, dest: str | Path) -> Path:
    """Download a registered version's MLflow folder to `dest`."""
    import mlflow

    from fakeface.registry import with_retry

    try:
        path = with_retry(
            lambda: mlflow.artifacts.download_artifacts(
                artifact_uri=resolved.uri, dst_path=str(dest)
            )
        )
    except Exception as exc:
        raise ModelError(f"cannot download {resolved.uri}: {str(exc).splitlines()[0]}") from None
    if not (Path(path) / "MLmodel").is_file():
        # MLflow "downloads" an emptied or deleted artifact folder without complaint.
        raise ModelError(
            f"{resolved.uri} has no files at its artifact location (deleted or never"
            " uploaded); re-register the model from its training run"
        )
    return Path(path)


def package_model(resolved: ResolvedModel, image_shapes: Iterable[tuple[int, int]]) -> PackedModel:
    """Download, check the signature against the data's image shapes, and pack into bytes."""
    with tempfile.TemporaryDirectory(prefix="fakeface-dl-") as tmp:
        model_dir = download_model(resolved, tmp)
        label = f"model {resolved.name} v{resolved.version}"
        check_signature(model_dir, image_shapes, label)
        check_model_files(model_dir, label)
        data = pack_model_dir(model_dir)
    return PackedModel(resolved, data, hashlib.sha256(data).hexdigest())


def check_signature(
    model_dir: str | Path, image_shapes: Iterable[tuple[int, int]], label: str
) -> None:
    """Refuse a model whose MLflow signature does not take (N, H, W, 3) uint8 of our sizes."""
    from mlflow.models import Model
    from mlflow.types.schema import TensorSpec

    try:
        meta = Model.load(str(model_dir))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{label} has no readable MLmodel file: {first}") from None
    if "keras" not in meta.flavors:
        raise ModelError(
            f"{label} is not a Keras model (flavors: {', '.join(sorted(meta.flavors))})"
        )
    signature = meta.signature
    if signature is None or signature.inputs is None:
        raise ModelError(
            f"{label} has no input signature, so its input cannot be checked against the"
            " images; log it with signature=(-1, -1, -1, 3) uint8"
        )
    specs = signature.inputs.inputs
    if len(specs) != 1 or not isinstance(specs[0], TensorSpec):
        raise ModelError(
            f"{label} expects {signature.inputs.to_json()}; scoring feeds one uint8"
            " tensor (N, H, W, 3)"
        )
    spec = specs[0]
    shape, dtype = tuple(spec.shape), np.dtype(spec.type)
    wanted = "(N, H, W, 3) uint8"
    if dtype != np.uint8 or len(shape) != 4 or shape[3] not in (-1, 3):
        raise ModelError(
            f"{label} expects {dtype} tensors of shape {_shape_text(shape)}, but the data are"
            f" {wanted} images"
        )
    for h, w in sorted(set(image_shapes)):
        if shape[1] not in (-1, h) or shape[2] not in (-1, w):
            raise ModelError(
                f"{label} expects images of shape {_shape_text(shape)}, but the data are"
                f" {h}x{w}x3 uint8; ingest at its size or log it with a (-1, -1, -1, 3) signature"
            )
    outputs = signature.outputs.inputs if signature.outputs is not None else []
    if len(outputs) == 1 and isinstance(outputs[0], TensorSpec):
        out_shape = tuple(outputs[0].shape)
        if out_shape[1:] not in ((), (1,)):
            raise ModelError(
                f"{label} outputs {_shape_text(out_shape)}; scoring needs one probability per"
                " image (N, 1)"
            )


def check_model_files(model_dir: str | Path, label: str) -> None:
    """Refuse a model folder whose Keras archive is missing, truncated or altered.

    Checked on the driver, before anything is broadcast: a bad archive found by the
    executors instead fails every task four times and buries the cause in a stack trace.
    The zip CRCs cover every byte of the weights, so no TensorFlow import is needed here.
    """
    from mlflow.models import Model

    meta = Model.load(str(model_dir))
    data_dir = Path(model_dir) / str(meta.flavors["keras"].get("data", "data"))
    archives = sorted(data_dir.glob("*.keras"))
    if not archives:
        exported = data_dir / "model"
        if exported.is_dir() and any(exported.iterdir()):
            return  # a TF SavedModel export (save_exported_model=True): no archive to check
        raise ModelError(
            f"{label} has no Keras archive under {data_dir.name}/: the artifact is incomplete;"
            " re-register the model from its training run"
        )
    for archive in archives:
        try:
            with zipfile.ZipFile(archive) as bundle:
                names = set(bundle.namelist())
                if "config.json" not in names:
                    raise zipfile.BadZipFile("no config.json inside")
                if not names & {"model.weights.h5", "model.weights.npz"}:
                    raise zipfile.BadZipFile("no model.weights.h5 inside")
                damaged = bundle.testzip()
                if damaged is not None:
                    raise zipfile.BadZipFile(f"checksum mismatch in {damaged}")
                json.loads(bundle.read("config.json"))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelError(
                f"{label} has a corrupt Keras archive {archive.name} ({exc}); re-register the"
                " model from its training run"
            ) from None


def _shape_text(shape: tuple[int, ...]) -> str:
    """(-1, -1, 64, 3) -> '(N, ?, 64, 3)'."""
    names = ["N" if i == 0 and d == -1 else "?" if d == -1 else str(d) for i, d in enumerate(shape)]
    return "(" + ", ".join(names) + ")"


# --------------------------------------------------------------------------- Spark wrapper


def make_score_udf(model: Any, version_key: str, task_cpus: int, batch_size: int) -> Any:
    """Scalar-iterator pandas UDF (image, height, width) -> p_fake float; NaN/null if unusable.

    `model` is a broadcast of `pack_model_dir` bytes (or the bytes/folder in local tests).
    """
    from pyspark.sql.functions import pandas_udf

    def score_batches(
        batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]],
    ) -> Iterator[pd.Series]:
        keras_model = None
        for images, heights, widths in batches:
            if keras_model is None:  # lazily: an empty partition loads nothing
                keras_model = load_model_cached(model, version_key, task_cpus)
            yield pd.Series(score_frame(keras_model, images, heights, widths, batch_size))

    # Spark infers the scalar-iterator kind from the hints (resolved in this module's globals).
    return pandas_udf(score_batches, "float")


def score_columns(
    decoded: DataFrame, score: Column, resolved: ResolvedModel, scored_at: dt.datetime
) -> DataFrame:
    """Decoded rows + the score column -> OUTPUT_COLUMNS, statuses and errors settled."""
    from pyspark.sql import functions as F

    raw = decoded.select("image_id", "path", "status", "error", score.alias("_p"))
    p = F.when(F.isnan("_p"), F.lit(None)).otherwise(F.col("_p")).cast("float")
    ok_in = F.col("status") == STATUS_OK
    scored = raw.select(
        "image_id",
        "path",
        F.when(ok_in, p).alias("p_fake"),
        "status",
        "error",
    )
    has_score = F.col("p_fake").isNotNull()
    return scored.select(
        "image_id",
        "path",
        "p_fake",
        F.when(has_score, F.col("p_fake") >= F.lit(resolved.threshold)).alias("is_fake"),
        F.lit(resolved.threshold).cast("double").alias("threshold"),
        F.lit(resolved.name).alias("model_name"),
        F.lit(resolved.version).alias("model_version"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.when(has_score, F.lit(STATUS_OK)).otherwise(F.lit(STATUS_ERROR)).alias("status"),
        F.when(has_score, F.lit(None).cast("string"))
        .when(F.col("status") == STATUS_OK, F.lit(f"{ERROR_NO_SCORE}: the model gave no score"))
        .otherwise(F.col("error"))
        .alias("error"),
    )


# --------------------------------------------------------------------------- inputs


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
    spark: SparkSession, cfg: Config, input_path: str, kind: str
) -> tuple[DataFrame, DataFrame]:
    """(rows to score with image_id/path/image/height/width/status/error, rows to count)."""
    from pyspark.sql import functions as F

    from fakeface.ingest import read_image_files, read_ingested
    from fakeface.storage import qualify

    if kind == "images":
        files = read_image_files(spark, input_path, cfg.ingest.extensions)
        # image_id before decoding (sha256 of the bytes, as decode computes it), so that
        # --incremental can drop known images without decoding them.
        keyed = files.withColumn("image_id", F.sha2(F.col("content"), 256))
        return keyed, files.select("path")
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


FUSED_SCHEMA = "image_id string, path string, status string, error string, p_raw float"


def decode_and_score(
    cfg: Config,
    df: DataFrame,
    size: int,
    model: Any,
    version_key: str,
    task_cpus: int,
    batch_size: int,
) -> DataFrame:
    """Raw files -> (image_id, path, status, error, p_raw) in ONE Python pass per batch.

    Decoding and scoring in the same worker keeps one Python process (and one TensorFlow)
    per task instead of two, and the decoded pixels never cross back to the JVM.
    """
    from fakeface.ingest import decode_frame

    max_pixels = cfg.ingest.max_pixels

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        keras_model = None
        for frame in batches:
            decoded = decode_frame(frame, size, max_pixels, labeled=False)
            scores = np.full(len(decoded), np.nan, dtype=np.float32)
            if (decoded["status"] == STATUS_OK).any():
                if keras_model is None:  # lazily: a partition of broken files loads nothing
                    keras_model = load_model_cached(model, version_key, task_cpus)
                scores = score_frame(
                    keras_model, decoded["image"], decoded["height"], decoded["width"], batch_size
                )
            yield pd.DataFrame(
                {
                    "image_id": decoded["image_id"],
                    "path": decoded["path"],
                    "status": decoded["status"],
                    "error": decoded["error"],
                    "p_raw": scores,
                }
            )

    return df.select("path", "content").mapInPandas(run, schema=FUSED_SCHEMA)


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

    from fakeface.storage import HadoopFS, partition_name, qualify

    fs = HadoopFS(spark, output_path)
    names = sorted(
        n for n in fs.list_names() if n.startswith("run_date=") and n != partition_name(run_date)
    )
    if not names:
        return None
    base = output_path.rstrip("/")
    existing = spark.read.parquet(*[qualify(f"{base}/{n}") for n in names])
    return (
        existing.where(
            (F.col("model_name") == resolved.name)
            & (F.col("model_version") == resolved.version)
            & (F.col("status") == STATUS_OK)
        )
        .select("image_id")
        .distinct()
    )


# --------------------------------------------------------------------------- run_score


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
        "scoring with %s (version %s, threshold %.4g)",
        resolved.name,
        resolved.version,
        resolved.threshold,
    )

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.score.arrow_batch_size))
    kind = detect_input(spark, input_path)
    rows, countable = read_input(spark, cfg, input_path, kind)
    size = decode_size(cfg, resolved)
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
        if kind == "images":
            decoded = decode_and_score(
                cfg, rows, size, broadcast, packed.key, task_cpus, batch_size
            )
            score = F.col("p_raw")
        else:
            decoded = rows
            udf = make_score_udf(broadcast, packed.key, task_cpus, batch_size)
            # asNondeterministic: the optimizer must neither duplicate nor re-run the model.
            score = udf.asNondeterministic()(F.col("image"), F.col("height"), F.col("width"))
        scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        out = score_columns(decoded, score, resolved, scored_at)
        staged = storage.stage_dataframe(out, output_path, run_date)
    finally:
        broadcast.destroy()
    counts = summarize_scores(spark.read.parquet(storage.staged_uri(output_path, staged)))
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
