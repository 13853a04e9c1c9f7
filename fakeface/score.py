"""Scoring core: numpy in, numpy out, and the thin Spark wrappers that run it on workers.

`predict_scores` / `score_frame` are plain functions on arrays (no Spark). Each Python worker
loads the broadcast model once (`load_model_cached`, keyed by version and content digest)
and scores Arrow batches: raw files are decoded and scored in one `mapInPandas` pass
(`decode_and_score`), ingested pixels go through a scalar-iterator pandas UDF
(`make_score_udf`). Both settle their rows on the worker with `settle_scores`, the function
the served model answers with too, so the nightly row and the served row follow one set of
rules; `score_columns` adds the run's constants. A model outputs (N, 1) P(fake) or the part
model's (N, 6) `fakeface.outputs.MODEL_OUTPUTS`; the core widens both to (N, 6).
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
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fakeface.errors import ModelError
from fakeface.model_bundle import unpack_model
from fakeface.outputs import FACE_FOUND, MODEL_OUTPUTS, PART_COLUMNS, PART_NAMES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from fakeface.config import Config
    from fakeface.registry import ResolvedModel

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_ERROR = "error"
ERROR_NO_SCORE = "no_score"

N_OUTPUTS = len(MODEL_OUTPUTS)
OUTPUT_WIDTHS = (1, N_OUTPUTS)  # P(fake) alone, or the part model's MODEL_OUTPUTS
FACE_FOUND_CUT = 0.5  # the model answers 1.0 (face found) or 0.0; anything between rounds
PARTS_FLAGGED = "parts_flagged"

# Columns of a settled row (`settle_scores`), in order; new columns go at the end, so older
# partitions are a prefix of newer ones.
_PART_SCHEMA = ", ".join(
    [*(f"{c} float" for c in PART_COLUMNS), f"{FACE_FOUND} boolean", f"{PARTS_FLAGGED} string"]
)
SETTLED_SCHEMA = "p_fake float, is_fake boolean, status string, error string, " + _PART_SCHEMA
SETTLED_COLUMNS = [c.strip().split(" ")[0] for c in SETTLED_SCHEMA.split(",")]
OUTPUT_SCHEMA = (
    "image_id string, path string, p_fake float, is_fake boolean, threshold double, "
    "model_name string, model_version string, scored_at timestamp, status string, error string, "
    + _PART_SCHEMA
)
OUTPUT_COLUMNS = [c.strip().split(" ")[0] for c in OUTPUT_SCHEMA.split(",")]

# --------------------------------------------------------------------------- numpy core


def model_outputs(pred: Any, n: int) -> np.ndarray:
    """A model's answer for `n` images as float32 (n, 6) in MODEL_OUTPUTS order.

    A one-output model's (n, 1) P(fake) fills column 0; its part scores and face_found are
    NaN (it has none). Any other width is refused: the columns would mean nothing.
    """
    pred = np.asarray(pred, dtype=np.float32)
    if pred.shape == (n, N_OUTPUTS):
        return pred
    if pred.size == n and pred.ndim in (1, 2):  # (n,) or (n, 1)
        out = np.full((n, N_OUTPUTS), np.nan, dtype=np.float32)
        out[:, 0] = pred.reshape(-1)
        return out
    raise ModelError(
        f"model returned shape {pred.shape} for {n} images; expected ({n}, 1) P(fake) or"
        f" ({n}, {N_OUTPUTS}) {', '.join(MODEL_OUTPUTS)}: not a fakeface model"
    )


_ALIGN = 64  # bytes: TensorFlow's kernels abort on a shared buffer less aligned than Eigen's


def model_input(batch: np.ndarray) -> Any:
    """A uint8 batch as a TensorFlow tensor over the same memory (DLPack) where it can be.

    Keras would copy a numpy batch into a fresh tensor: at 600 px that is 69 MB a batch of 64
    in newly mapped pages, 0.3-0.4 ms an image of page faults. Only a C-contiguous, writable,
    64-byte aligned array is shared; any other (or no TensorFlow) is passed as it is.
    """
    if not (batch.flags.c_contiguous and batch.flags.writeable and batch.ctypes.data % _ALIGN == 0):
        return batch
    try:
        import tensorflow as tf
    except ImportError:
        return batch
    return tf.experimental.dlpack.from_dlpack(batch.__dlpack__())


def predict_scores(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Model outputs for uint8 images (N, H, W, 3), `batch_size` at a time -> float32 (N, 6).

    Columns are MODEL_OUTPUTS; a one-output model's columns 1-5 are NaN.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ModelError(
            f"scoring expects uint8 images shaped (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    n = len(images)
    out = np.empty((n, N_OUTPUTS), dtype=np.float32)
    for start in range(0, n, max(1, batch_size)):
        batch = np.ascontiguousarray(images[start : start + batch_size])
        # predict_on_batch runs one traced function per shape; Keras generalises the trace
        # after the first ragged last batch instead of retracing every size.
        pred = model.predict_on_batch(model_input(batch))
        out[start : start + len(batch)] = model_outputs(pred, len(batch))
    return out


_BUFFERS = threading.local()


def batch_buffer(n: int, height: int, width: int) -> np.ndarray:
    """A (n, height, width, 3) uint8 array reused by this thread's batches.

    The rows of a batch are copied into memory the process already touched: a fresh 69 MB
    batch (64 images of 600 px) costs more in page faults than its copy.
    """
    size = n * height * width * 3
    buffer = getattr(_BUFFERS, "pixels", None)
    if buffer is None or buffer.size < size:
        raw = np.empty(size + _ALIGN, np.uint8)
        offset = -raw.ctypes.data % _ALIGN  # aligned, so `model_input` can share it
        buffer = _BUFFERS.pixels = raw[offset : offset + size]
    return buffer[:size].reshape(n, height, width, 3)


def score_frame(
    model: Any, images: pd.Series, heights: pd.Series, widths: pd.Series, batch_size: int
) -> np.ndarray:
    """(N, 6) outputs for a pandas batch of raw pixel bytes; NaN where a row has no usable image."""
    scores = np.full((len(images), N_OUTPUTS), np.nan, dtype=np.float32)
    groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for i, (data, h, w) in enumerate(zip(images, heights, widths, strict=True)):
        if data is None or pd.isna(h) or pd.isna(w):
            continue
        h, w = int(h), int(w)
        if len(data) == h * w * 3:  # anything else is corrupt; the row becomes an error
            groups[(h, w)].append(i)
    # Rows of one size are stacked; datasets ingested at several sizes still score.
    step = max(1, batch_size)
    for (h, w), rows in groups.items():
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            batch = batch_buffer(len(chunk), h, w)
            for k, i in enumerate(chunk):
                batch[k] = np.frombuffer(images.iat[i], dtype=np.uint8).reshape(h, w, 3)
            scores[chunk] = predict_scores(model, batch, step)
    scores[~np.isfinite(scores)] = np.nan
    return scores


def score_decoded(load_model: Any, decoded: pd.DataFrame, batch_size: int) -> np.ndarray:
    """(N, 6) outputs for `frames.decode_frame` rows: NaN where a row did not decode.

    `load_model()` is called only when some row decoded: a batch of broken files loads no
    model. The nightly job (`decode_and_score`) and the served model both score here.
    """
    scores = np.full((len(decoded), N_OUTPUTS), np.nan, dtype=np.float32)
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
        freeze_loaded_objects()
        return model


def freeze_loaded_objects() -> None:
    """Move every object alive now (TensorFlow, Keras, the model: over half a million) out
    of the garbage collector's reach for the process's life.

    PySpark's daemon runs a full `gc.collect()` in a reused worker after every task; with
    TensorFlow loaded that walk takes 0.3-0.36 s, added to every task of the core (and the
    collector's own full passes during a task walk them too). Objects made afterwards are
    collected as usual and garbage alive now is collected first; what is frozen and later
    dropped in a reference cycle is never freed: in a worker, the model and its libraries,
    which live as long as the process anyway.
    """
    import gc

    gc.collect()
    gc.freeze()


# --------------------------------------------------------------------------- settling


def settle_parts(
    has_score: np.ndarray, outputs: np.ndarray, part_thresholds: Mapping[str, float]
) -> pd.DataFrame:
    """The part columns of a batch: the one place their null rules live.

    - `face_found`: null for a row without a score and for a one-output model (its column
      is NaN), else whether the model found a face;
    - `p_<part>`: null unless a face was found (the part scores are meaningless without one);
    - `parts_flagged`: null when the row has no part score, else the parts at or above their
      own threshold (`part_thresholds`), comma-separated in PART_NAMES order ("" for none).
      A part without a threshold is never flagged: there is no calibrated cut for it.
    """
    face = outputs[:, MODEL_OUTPUTS.index(FACE_FOUND)]
    known = has_score & np.isfinite(face)
    found = known & (face >= FACE_FOUND_CUT)
    parts = {}
    for column in PART_COLUMNS:
        values = outputs[:, MODEL_OUTPUTS.index(column)]
        keep = found & np.isfinite(values)
        parts[column] = [float(v) if k else None for v, k in zip(values, keep, strict=True)]
    cuts = [part_thresholds.get(name) for name in PART_NAMES]
    flagged = [
        None
        if all(p is None for p in row)
        # float32 score vs double threshold, compared as doubles (as is_fake is)
        else ",".join(
            name
            for name, p, cut in zip(PART_NAMES, row, cuts, strict=True)
            if p is not None and cut is not None and p >= cut
        )
        for row in zip(*parts.values(), strict=True)
    ]
    columns = {c: pd.Series(v, dtype=object) for c, v in parts.items()}
    columns[FACE_FOUND] = pd.Series(
        [bool(f) if k else None for f, k in zip(found, known, strict=True)], dtype=object
    )
    columns[PARTS_FLAGGED] = pd.Series(flagged, dtype=object)
    return pd.DataFrame(columns)


def settle_scores(
    status: pd.Series,
    error: pd.Series,
    scores: np.ndarray,
    threshold: float,
    part_thresholds: dict[str, float] | None = None,
) -> pd.DataFrame:
    """A batch's model outputs -> SETTLED_COLUMNS (p_fake, is_fake, status, error, parts...).

    `scores` is (N, 6) (`predict_scores`) or a one-output model's (N,). The nightly job
    (`decode_and_score`, `make_score_udf`) and the registered model's pyfunc both settle
    their rows here, so the two answer alike by construction. A row keeps p_fake, is_fake
    and status 'ok' whether or not a face was found.
    """
    ok_in = (pd.Series(list(status), dtype=object) == STATUS_OK).to_numpy()
    outputs = model_outputs(scores, len(ok_in))
    p_raw = outputs[:, 0]
    has_score = ok_in & np.isfinite(p_raw)
    p_fake = [float(s) if keep else None for s, keep in zip(p_raw, has_score, strict=True)]
    # float32 score vs double threshold, compared as doubles: what Spark would do.
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
    settled = pd.DataFrame(
        {
            "p_fake": pd.Series(p_fake, dtype=object),
            "is_fake": pd.Series(is_fake, dtype=object),
            "status": [STATUS_OK if keep else STATUS_ERROR for keep in has_score],
            "error": pd.Series(errors, dtype=object),
        }
    )
    parts = settle_parts(has_score, outputs, part_thresholds or {})
    return pd.concat([settled, parts], axis=1)[SETTLED_COLUMNS]


# --------------------------------------------------------------------------- Spark wrapper


def make_score_udf(
    model: Any,
    version_key: str,
    task_cpus: int,
    batch_size: int,
    threshold: float,
    part_thresholds: dict[str, float] | None = None,
) -> Any:
    """Scalar-iterator pandas UDF (image, height, width, status, error) -> settled struct.

    The struct holds SETTLED_COLUMNS (`settle_scores`); `model` is a broadcast of
    `pack_model_dir` bytes (or the bytes/folder in local tests).
    """
    from pyspark.sql.functions import pandas_udf

    cuts = dict(part_thresholds or {})

    def score_batches(
        batches: Iterator[tuple[pd.Series, pd.Series, pd.Series, pd.Series, pd.Series]],
    ) -> Iterator[pd.DataFrame]:
        def load() -> Any:  # lazily: a partition of error rows loads nothing
            return load_model_cached(model, version_key, task_cpus)

        for images, heights, widths, status, error in batches:
            rows = pd.DataFrame(
                {"image": images, "height": heights, "width": widths, "status": status}
            )
            scores = score_decoded(load, rows, batch_size)
            yield settle_scores(status, error, scores, threshold, cuts)

    # Spark infers the scalar-iterator kind from the hints (resolved in this module's globals).
    return pandas_udf(score_batches, SETTLED_SCHEMA)


def score_columns(
    scored: DataFrame, settled: Column, resolved: ResolvedModel, scored_at: dt.datetime
) -> DataFrame:
    """Rows with their settled struct (`settle_scores`) -> OUTPUT_COLUMNS with the run's
    constants (threshold, model, scored_at)."""
    from pyspark.sql import functions as F

    # A separate projection: the struct is computed once, not once per field it holds.
    raw = scored.select("image_id", "path", settled.alias("_s"))
    constants = {
        "threshold": F.lit(resolved.threshold).cast("double"),
        "model_name": F.lit(resolved.name).cast("string"),
        "model_version": F.lit(resolved.version).cast("string"),
        "scored_at": F.lit(scored_at).cast("timestamp"),
    }
    return raw.select(
        *(
            constants[c].alias(c)
            if c in constants
            else F.col(c)
            if c in ("image_id", "path")
            else F.col(f"_s.{c}").alias(c)
            for c in OUTPUT_COLUMNS
        )
    )


FUSED_SCHEMA = "image_id string, path string, " + SETTLED_SCHEMA


def decode_and_score(
    cfg: Config,
    df: DataFrame,
    size: int,
    model: Any,
    version_key: str,
    task_cpus: int,
    batch_size: int,
    threshold: float,
    part_thresholds: dict[str, float] | None = None,
) -> DataFrame:
    """Raw files -> (image_id, path, SETTLED_COLUMNS) in ONE Python pass per batch.

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
    cuts = dict(part_thresholds or {})

    def load() -> Any:  # called only for a batch with a decoded image (cached per process)
        return load_model_cached(model, version_key, task_cpus)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            if read_here:
                frame = read_frame(frame, max_bytes)
            decoded = decode_frame(frame, size, max_pixels, labeled=False)
            scores = score_decoded(load, decoded, batch_size)
            settled = settle_scores(decoded["status"], decoded["error"], scores, threshold, cuts)
            settled.insert(0, "path", decoded["path"].to_numpy())
            settled.insert(0, "image_id", decoded["image_id"].to_numpy())
            yield settled

    columns = ["path"] if read_here else ["path", "content"]
    if "read_error" in df.columns:
        columns.append("read_error")  # why a file could not be read, kept in its row
    return df.select(*columns).mapInPandas(run, schema=FUSED_SCHEMA)
