"""Ingest benchmark: the Spark job vs the machine's limit and vs Spark's `image` source.

    python benchmarks/ingest.py [--small 300] [--large 900] [--size 600]

Every figure is a marginal rate between two corpus sizes (start-up costs cancel out):
- fakeface ingest: `run_ingest` (binaryFile + mapInPandas decode + Parquet write, committed);
- limit: a plain Pillow loop running the same `decode_image`, one process per core;
- peer: Spark's built-in `image` data source, then the same bilinear resize in a pandas
  UDF, written to Parquet.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DIR,
    PeakMemory,
    image_files,
    machine_line,
    marginal_rate,
    print_table,
    setup_environment,
    synth_corpus,
    timed,
)

SIZE = 256


def _decode_file(path: str) -> int:
    from fakeface.decode import decode_image

    with open(path, "rb") as f:
        result = decode_image(f.read(), SIZE, 64_000_000)
    return len(result.image or b"")


def pillow_limit(files: list[Path]) -> float:
    """Seconds for the same decode + resize in one process per core, no Spark."""
    ctx = mp.get_context("forkserver")
    with ctx.Pool(os.cpu_count()) as pool:
        pool.map(_decode_file, [str(files[0])])  # warm the workers up
        return timed(lambda: pool.map(_decode_file, [str(p) for p in files], chunksize=16))


def fakeface_ingest(spark, cfg, corpus: Path, out: Path) -> float:
    from fakeface.ingest import run_ingest

    shutil.rmtree(out, ignore_errors=True)
    return timed(lambda: run_ingest(spark, cfg, str(corpus), str(out), "2026-01-01"))


def spark_image_source(spark, corpus: Path, out: Path) -> float:
    """The peer: `spark.read.format('image')` decodes full size, then resize in a UDF."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from pyspark.sql import functions as F

    from fakeface.storage import qualify

    def resize(batches):
        for frame in batches:
            out_rows = []
            for h, w, c, data in zip(
                frame["height"], frame["width"], frame["nChannels"], frame["data"], strict=True
            ):
                bgr = np.frombuffer(data, np.uint8).reshape(h, w, c)
                rgb = Image.fromarray(np.ascontiguousarray(bgr[..., 2::-1]))
                resized = rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
                out_rows.append(np.asarray(resized).tobytes())
            yield pd.DataFrame({"path": frame["origin"], "image": out_rows})

    def run() -> None:
        df = (
            spark.read.format("image")
            .option("recursiveFileLookup", "true")
            .load(qualify(str(corpus)))
        )
        flat = df.select(
            F.col("image.origin").alias("origin"),
            F.col("image.height").alias("height"),
            F.col("image.width").alias("width"),
            F.col("image.nChannels").alias("nChannels"),
            F.col("image.data").alias("data"),
        )
        flat.mapInPandas(resize, "path string, image binary").write.mode("overwrite").parquet(
            qualify(str(out))
        )

    shutil.rmtree(out, ignore_errors=True)
    return timed(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=900)
    parser.add_argument("--size", type=int, default=600)
    args = parser.parse_args()
    setup_environment()
    print(machine_line())

    from fakeface.config import load_config
    from fakeface.spark import build_spark_session

    corpora = {n: synth_corpus(n, args.size) for n in (args.small, args.large)}
    cfg = load_config(Path(__file__).resolve().parent.parent / "conf" / "local.yaml")
    spark = build_spark_session(cfg, "bench-ingest")
    out = BENCH_DIR / "out"
    times: dict[str, dict[int, float]] = {"fakeface": {}, "limit": {}, "peer": {}}
    peaks: dict[int, float] = {}
    # Warm-up: JVM JIT, Python workers, imports.
    fakeface_ingest(spark, cfg, corpora[args.small], out / "warm")
    for n, corpus in corpora.items():
        with PeakMemory() as mem:
            times["fakeface"][n] = fakeface_ingest(spark, cfg, corpus, out / "ff")
        peaks[n] = mem.peak_mib
        times["peer"][n] = spark_image_source(spark, corpus, out / "peer")
        times["limit"][n] = pillow_limit(image_files(corpus))
    spark.stop()

    rates = {
        name: marginal_rate(args.small, t[args.small], args.large, t[args.large])
        for name, t in times.items()
    }
    rows = [
        ["fakeface ingest (Spark, binaryFile + draft decode)", rates["fakeface"], 1.0],
        [
            "limit: Pillow loop, same decode, 1 process/core",
            rates["limit"],
            rates["limit"] / rates["fakeface"],
        ],
        ["peer: Spark `image` source + resize", rates["peer"], rates["peer"] / rates["fakeface"]],
    ]
    for name, t in times.items():
        print(
            f"{name}: {args.small} images in {t[args.small]:.1f}s,"
            f" {args.large} images in {t[args.large]:.1f}s"
        )
    print_table(
        f"Ingest, {args.size}px JPEG -> {SIZE}px Parquet, marginal {args.small}->{args.large}",
        ["pipeline", "images/s", "ratio to fakeface"],
        rows,
    )
    print(
        f"\nfakeface / limit = {rates['fakeface'] / rates['limit']:.2f} (goal >= 0.8); "
        f"fakeface / peer = {rates['fakeface'] / rates['peer']:.2f} (goal >= 2)"
    )
    print(
        f"peak memory (driver JVM + Python workers): {peaks[args.small]:.0f} MiB at "
        f"{args.small} images, {peaks[args.large]:.0f} MiB at {args.large} images"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
