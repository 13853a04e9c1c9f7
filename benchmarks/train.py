"""Training benchmark: seconds per epoch and images/s per variant; the petastorm feed's cost.

    python benchmarks/train.py [--data DIR] [--images 512] [--variants custom,custom_aug,...]
    (default variants: the study's five, `residual`, `residual_sbi`, the production recipe
    `texture_kernel`)

On the same rows for every variant (synthetic unless --data names an ingested dataset):
- per variant: one warm-up epoch, then one timed epoch fed by petastorm (seconds, images/s);
- the feed alone: petastorm -> tf.data images/s against an in-memory `tf.data` of the same
  arrays (the limit), and the feed's share of a `custom` epoch (goal: under 10%).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DIR,
    machine_line,
    print_table,
    setup_environment,
    synth_corpus,
)


def feed_rate(dataset, batches: int, batch_size: int) -> float:
    """Images/s of pulling `batches` batches from a dataset."""
    iterator = iter(dataset)
    next(iterator)  # first batch pays for start-up
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="ingested dataset (default: synthetic)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=160, help="ingest size for synthetic data")
    parser.add_argument(
        "--variants",
        default="custom,custom_aug,simple,vgg16,efficientnetb4,residual,residual_sbi,texture_kernel",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    setup_environment()
    print(machine_line())

    import keras
    import tensorflow as tf

    from fakeface import feed
    from fakeface.config import load_config
    from fakeface.fitting import _compile
    from fakeface.ingest import run_ingest
    from fakeface.models.factory import build_model, get_variant, with_region_head
    from fakeface.models.texture import adapt_kernels, kernel_layers
    from fakeface.spark import build_spark_session
    from fakeface.train import configure_tensorflow, load_training_frame

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "conf" / "local.yaml", [f"ingest.image_size={args.size}"])
    spark = build_spark_session(cfg, "bench-train")
    data = args.data
    if data is None:
        data = str(BENCH_DIR / f"train-lake-{args.images}-{args.size}")
        if not Path(data).exists():
            run_ingest(spark, cfg, str(synth_corpus(args.images, 600)), data, "2026-01-01")
    configure_tensorflow(spark)
    feed.set_cache_dir(spark, (BENCH_DIR / "petastorm").as_uri())
    df = load_training_frame(spark, data).limit(args.images)
    size = int(df.select("height").first()[0])
    converter = feed.make_converter(
        df.select("image_id", "image", "label", "level", "regions"), size
    )
    n = len(converter)
    batch = args.batch_size
    steps = max(1, math.ceil(n / batch))
    arrays = feed.collect_numpy(converter)
    memory = (
        tf.data.Dataset.from_tensor_slices((arrays["image"], arrays["label"].reshape(-1, 1)))
        .repeat()
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )
    with feed.training_dataset(converter, batch, 256, 0) as petastorm_ds:
        petastorm_rate = feed_rate(petastorm_ds, steps, batch)
    memory_rate = feed_rate(memory, steps, batch)

    rows = []
    epoch_seconds: dict[str, float] = {}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        keras.utils.set_random_seed(0)
        spec = get_variant(variant)
        model = build_model(variant)
        if kernel_layers(model):  # adapted to the training rows first, as the job does
            started = time.perf_counter()
            adapt_kernels(model, feed.collect_numpy(converter)["image"], batch)
            print(f"{variant}: kernel adapted in {time.perf_counter() - started:.1f} s", flush=True)
        if spec.region_weight:  # trained with a region head, as the training job does
            model = with_region_head(model)
        _compile(model, cfg, 1e-3, steps, spec.region_weight)
        with feed.training_dataset(
            converter,
            batch,
            256,
            0,
            self_blend=spec.self_blend,
            region_targets=spec.region_weight > 0,
        ) as dataset:
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up: tracing
            started = time.perf_counter()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds = time.perf_counter() - started
        epoch_seconds[variant] = seconds
        # images/s counts the rows read; self-blending adds fakes on top of them
        rows.append([variant, n, seconds, steps * batch / seconds])
        print(f"{variant}: {seconds:.1f} s/epoch", flush=True)
    converter.delete()
    spark.stop()

    print_table(
        f"Training on CPU, {n} images at {size}px, batch {batch} (one epoch after a warm-up)",
        ["variant", "images", "s/epoch", "images/s"],
        rows,
    )
    print_table(
        "Feed: petastorm -> tf.data vs in-memory tf.data of the same arrays (the limit)",
        ["feed", "images/s", "ratio to limit"],
        [
            ["petastorm (make_spark_converter)", petastorm_rate, petastorm_rate / memory_rate],
            ["in-memory tf.data", memory_rate, 1.0],
        ],
    )
    if "custom" in epoch_seconds:
        feed_seconds = steps * batch / petastorm_rate
        share = feed_seconds / epoch_seconds["custom"]
        print(
            f"\nfeed time for one epoch {feed_seconds:.2f} s = {share:.1%} of a `custom` epoch"
            " (goal < 10%; the feed overlaps compute through prefetch, so this is an upper bound)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
