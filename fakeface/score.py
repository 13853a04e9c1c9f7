"""Scoring core: numpy in, numpy out, and the thin Spark wrappers that run it on workers.

`predict_scores` / `score_frame` are plain functions on arrays (no Spark). Each Python worker
loads the broadcast model once (`load_model_cached`, keyed by version and content digest)
and scores Arrow batches: raw files are decoded and scored in one `mapInPandas` pass
(`decode_and_score`), ingested pixels go through a scalar-iterator pandas UDF
(`make_score_udf`). `score_columns` settles the output columns, statuses and errors.
The run itself (resolve, check, broadcast, write, summarise) is `fakeface.score_run`.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fakeface.errors import ModelError
from fakeface.model_bundle import unpack_model

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from fakeface.config import Config
    from fakeface.registry import ResolvedModel

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_ERROR = "error"
ERROR_NO_SCORE = "no_score"

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


def score_decoded(load_model: Any, decoded: pd.DataFrame, batch_size: int) -> np.ndarray:
    """Scores for `frames.decode_frame` rows: NaN where a row did not decode.

    `load_model()` is called only when some row decoded: a batch of broken files loads no
    model. The nightly job (`decode_and_score`) and the served model both score here.
    """
    scores = np.full(len(decoded), np.nan, dtype=np.float32)
    if (decoded["status"] == STATUS_OK).any():
        scores = score_frame(
            load_model(), decoded["image"], decoded["height"], decoded["width"], batch_size
        )
    return scores


# --------------------------------------------------------------------------- model cache

_MODEL_CACHE: collections.OrderedDict[str, Any] = collections.OrderedDict()
_MODEL_CACHE_SIZE = 2  # promotion holds champion + candidate; workers need one
_MODEL_LOCK = threading.Lock()


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


def settle_scores(
    status: pd.Series, error: pd.Series, scores: np.ndarray, threshold: float
) -> pd.DataFrame:
    """`score_columns` on a pandas batch: (p_fake, is_fake, status, error), one row each.

    The registered model's pyfunc answers with this; the nightly job settles the same way
    in Spark (`score_columns`), and a parity test holds the two together.
    """
    ok_in = (pd.Series(list(status), dtype=object) == STATUS_OK).to_numpy()
    scores = np.asarray(scores, dtype=np.float32)
    has_score = ok_in & np.isfinite(scores)
    p_fake = [float(s) if keep else None for s, keep in zip(scores, has_score, strict=True)]
    # float32 score vs double threshold, compared as doubles: what Spark does.
    is_fake = [bool(p >= threshold) if p is not None else None for p in p_fake]
    errors = [
        None
        if keep
        else (
            f"{ERROR_NO_SCORE}: the model gave no score"
            if ok
            else (e if isinstance(e, str) else None)
        )
        for keep, ok, e in zip(has_score, ok_in, list(error), strict=True)
    ]
    return pd.DataFrame(
        {
            "p_fake": pd.Series(p_fake, dtype=object),
            "is_fake": pd.Series(is_fake, dtype=object),
            "status": [STATUS_OK if keep else STATUS_ERROR for keep in has_score],
            "error": pd.Series(errors, dtype=object),
        }
    )


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
    per task instead of two, and the decoded pixels never cross back to the JVM. Rows
    without a `content` column are local files listed by `ingest.list_local_files`: the
    worker reads their bytes itself, so they never cross to the JVM either.
    """
    from fakeface.frames import decode_frame
    from fakeface.ingest import max_file_bytes, read_frame

    max_pixels = cfg.ingest.max_pixels
    read_here = "content" not in df.columns
    max_bytes = max_file_bytes(df.sparkSession)

    def load() -> Any:  # called only for a batch with a decoded image (cached per process)
        return load_model_cached(model, version_key, task_cpus)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            if read_here:
                frame = read_frame(frame, max_bytes)
            decoded = decode_frame(frame, size, max_pixels, labeled=False)
            scores = score_decoded(load, decoded, batch_size)
            yield pd.DataFrame(
                {
                    "image_id": decoded["image_id"],
                    "path": decoded["path"],
                    "status": decoded["status"],
                    "error": decoded["error"],
                    "p_raw": scores,
                }
            )

    columns = ["path"] if read_here else ["path", "content"]
    if "read_error" in df.columns:
        columns.append("read_error")  # why a file could not be read, kept in its row
    return df.select(*columns).mapInPandas(run, schema=FUSED_SCHEMA)
