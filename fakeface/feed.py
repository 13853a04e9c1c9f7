"""Spark DataFrame -> tf.data, through petastorm. The ONLY module that imports petastorm.

Petastorm 0.13.1 pins the stack (pyarrow < 15, numpy < 2); keeping it behind these few
functions means swapping it (for e.g. a plain pyarrow reader) touches one file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FEED_COLUMNS = ["image_id", "image", "label", "level", "regions"]


@dataclass
class Converter:
    """A materialised DataFrame that petastorm can stream; `len()` is its row count."""

    inner: Any
    image_size: int

    def __len__(self) -> int:
        return len(self.inner)

    def delete(self) -> None:
        """Remove the cached Parquet copy."""
        with contextlib.suppress(Exception):
            self.inner.delete()


def set_cache_dir(spark: SparkSession, cache_dir_url: str) -> None:
    """Where petastorm materialises DataFrames (a file:// or object-store URL)."""
    from petastorm.spark import SparkDatasetConverter

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_dir_url)


def make_converter(df: DataFrame, image_size: int) -> Converter:
    """Materialise the feed columns of `df` (image bytes, label, ids) for streaming."""
    from petastorm.spark import make_spark_converter
    from pyspark.sql import functions as F

    # Petastorm's TF reader cannot carry nulls: spell out the missing level and flags.
    feed = df.select(
        "image_id",
        "image",
        F.col("label").cast("float").alias("label"),
        F.coalesce("level", F.when(F.col("label") == 0, "real").otherwise("unknown")).alias(
            "level"
        ),
        F.coalesce("regions", F.lit("0000")).alias("regions"),
    )
    return Converter(make_spark_converter(feed), image_size)


def _decode_batch(batch: Any, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    import tensorflow as tf

    images = tf.io.decode_raw(batch.image, tf.uint8)
    images = tf.reshape(images, [-1, image_size, image_size, 3])
    return images, tf.reshape(batch.label, [-1, 1])


def _decode_flags(batch: Any) -> tf.Tensor:
    """The batch's '1101'-style region strings as (B, 4) float flags."""
    import tensorflow as tf

    codes = tf.strings.unicode_decode(batch.regions, "UTF-8").to_tensor(
        default_value=ord("0"), shape=[None, 4]
    )
    return tf.cast(tf.equal(codes, ord("1")), tf.float32)


@contextlib.contextmanager
def training_dataset(
    converter: Converter,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    workers: int = 2,
    self_blend: float = 0.0,
    region_targets: bool = False,
) -> Iterator[tf.data.Dataset]:
    """An endless, shuffled, batched, prefetched (images uint8, labels) dataset.

    ``self_blend`` > 0 appends, per real of each batch with that probability, a self-blended
    fake made from the batch's reals (fakeface.selfblend). ``region_targets`` makes the
    targets {"score": labels, "regions": (eyes, nose, mouth) flags} for a region head.
    """
    import tensorflow as tf

    from fakeface import selfblend

    with converter.inner.make_tf_dataset(
        batch_size=batch_size,
        num_epochs=None,
        workers_count=workers,
        shuffling_queue_capacity=shuffle_buffer,
        seed=seed,
    ) as dataset:
        size = converter.image_size
        if not self_blend and not region_targets:
            yield dataset.map(
                lambda batch: _decode_batch(batch, size), num_parallel_calls=tf.data.AUTOTUNE
            ).prefetch(tf.data.AUTOTUNE)
            return
        data = dataset.map(
            lambda batch: (*_decode_batch(batch, size), _decode_flags(batch)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        if self_blend:
            rng = np.random.default_rng(seed)  # one generator, so the map runs sequentially

            def blend(images: np.ndarray, labels: np.ndarray, flags: np.ndarray) -> tuple:
                return selfblend.add_self_blended(images, labels, flags, self_blend, rng)

            def blend_tf(images: tf.Tensor, labels: tf.Tensor, flags: tf.Tensor) -> tuple:
                out = tf.numpy_function(
                    blend, [images, labels, flags], [tf.uint8, tf.float32, tf.float32]
                )
                out[0].set_shape([None, size, size, 3])
                out[1].set_shape([None, 1])
                out[2].set_shape([None, 4])
                return tuple(out)

            data = data.map(blend_tf, num_parallel_calls=1)
        if region_targets:
            # selfblend.region_targets in graph ops: eyes merged, then nose and mouth.
            data = data.map(
                lambda images, labels, flags: (
                    images,
                    {
                        "score": labels,
                        "regions": tf.stack(
                            [tf.maximum(flags[:, 0], flags[:, 1]), flags[:, 2], flags[:, 3]],
                            axis=1,
                        ),
                    },
                )
            )
        else:
            data = data.map(lambda images, labels, flags: (images, labels))
        yield data.prefetch(tf.data.AUTOTUNE)


def collect_numpy(converter: Converter, batch_size: int = 64) -> dict[str, np.ndarray]:
    """All rows in memory (for evaluation sets): images, labels, ids, levels, regions."""
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in FEED_COLUMNS}
    size = converter.image_size
    with converter.inner.make_tf_dataset(
        batch_size=batch_size, num_epochs=1, workers_count=1, shuffling_queue_capacity=0
    ) as dataset:
        for batch in dataset.as_numpy_iterator():
            raw = np.stack([np.frombuffer(b, np.uint8) for b in batch.image])
            chunks["image"].append(raw.reshape(-1, size, size, 3))
            chunks["label"].append(np.asarray(batch.label, np.float32))
            for key in ("image_id", "level", "regions"):
                chunks[key].append(
                    np.array(
                        [v.decode() if isinstance(v, bytes) else v for v in getattr(batch, key)]
                    )
                )
    out = {k: (np.concatenate(v) if v else np.array([])) for k, v in chunks.items()}
    if not len(out["image"]):
        out["image"] = np.zeros((0, size, size, 3), np.uint8)
    return out
