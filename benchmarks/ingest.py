"""Ingest benchmark: the Spark job vs the machine's limit and vs Spark's `image` source.

    python benchmarks/ingest.py [--small 400] [--large 2000] [--size 600] [--out-size 160 600]
                                [--profile] [--repeats 2]

For each output size (`ingest.image_size`), every figure is a marginal rate between two
corpus sizes (start-up costs cancel out), the best of --repeats runs, all in one session on
the same synthetic JPEGs:
- fakeface ingest: `run_ingest` as the job runs it (tasks list the folders, Python workers
  read, decode and write the Parquet with the configured codec, committed);
- previous path: binaryFile + mapInPandas decode + Parquet snappy (the code until issue 14);
- limit: a plain Pillow loop running the same `decode_image`, one process per core;
- peer: Spark's built-in `image` data source, then the same bilinear resize in a pandas
  UDF, written to Parquet.
--profile adds, on the large corpus, the cost of each step of the path (listing, reading
the bytes, JVM -> Python transfer, decoding, Python -> JVM, Parquet per codec with the
summary's counts, commit),
each as the difference between two pipelines that differ by that step alone, in wall time
and in CPU time of the JVM and the Python workers (robust to other jobs on the machine).
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
    tree_cpu_seconds,
)

MAX_PIXELS = 64_000_000
CODECS = ("none", "snappy", "lz4", "zstd")


def _decode_file(task: tuple[str, int]) -> int:
    from fakeface.decode import decode_image

    path, size = task
    with open(path, "rb") as f:
        result = decode_image(f.read(), size, MAX_PIXELS)
    return len(result.image or b"")


def pillow_limit(files: list[Path], size: int) -> float:
    """Seconds for the same read + decode + resize in one process per core, no Spark."""
    ctx = mp.get_context("forkserver")
    with ctx.Pool(os.cpu_count()) as pool:
        pool.map(_decode_file, [(str(files[0]), size)] * (os.cpu_count() or 1))  # warm up
        tasks = [(str(p), size) for p in files]
        before = tree_cpu_seconds()  # while the pool's processes are alive
        seconds = timed(lambda: pool.map(_decode_file, tasks, chunksize=16))
        LIMIT_CPU[len(files), size] = tree_cpu_seconds() - before
        return seconds


LIMIT_CPU: dict[tuple[int, int], float] = {}  # (images, size) -> CPU seconds of the pool


def fakeface_ingest(spark, cfg, corpus: Path, out: Path) -> float:
    from fakeface.ingest import run_ingest

    shutil.rmtree(out, ignore_errors=True)
    return timed(lambda: run_ingest(spark, cfg, str(corpus), str(out), "2026-01-01"))


def previous_ingest(spark, cfg, corpus: Path, out: Path) -> float:
    """The path before issue 14: binaryFile ships the bytes, Parquet snappy."""
    from fakeface.ingest import decode_images
    from fakeface.storage import qualify

    size = cfg.ingest.image_size

    def run() -> None:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        files = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", "*.jpg")
            .load(qualify(str(corpus)))
            .select("path", "content")
        )
        decoded = decode_images(files, size, MAX_PIXELS)
        decoded.write.option("compression", "snappy").mode("overwrite").parquet(qualify(str(out)))

    shutil.rmtree(out, ignore_errors=True)
    return timed(run)


def spark_image_source(spark, corpus: Path, out: Path, size: int) -> float:
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
                resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
                out_rows.append(np.asarray(resized).tobytes())
            yield pd.DataFrame({"path": frame["origin"], "image": out_rows})

    def run() -> None:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
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


# --------------------------------------------------------------------------- the profile


def profile(spark, cfg, corpus: Path, out: Path, repeats: int) -> list[list[object]]:
    """Seconds of pipelines that each add one step; a step's cost is the difference."""
    import pandas as pd
    from pyspark.sql import functions as F

    from fakeface import ingest
    from fakeface.storage import qualify

    size = cfg.ingest.image_size
    n = len(image_files(corpus))
    max_bytes = ingest.max_file_bytes(spark)
    row_bytes = size * size * 3
    rows = ingest.arrow_batch_rows(cfg, row_bytes)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(rows))
    file_bytes = cfg.ingest.output_file_mb * 2**20

    def listed():
        return ingest.list_local_files(
            spark, str(corpus), cfg.ingest.extensions, row_bytes, file_bytes
        ).frame

    def lengths(batches):
        for frame in batches:
            read = ingest.read_frame(frame, max_bytes)
            yield pd.DataFrame({"n": [sum(len(c) for c in read["content"] if c is not None)]})

    def shipped_lengths(batches):
        for frame in batches:
            yield pd.DataFrame({"n": [sum(len(c) for c in frame["content"] if c is not None)]})

    def decoded_lengths(batches):
        for frame in batches:
            decoded = ingest.decode_frame(ingest.read_frame(frame, max_bytes), size, MAX_PIXELS)
            yield pd.DataFrame({"n": [sum(len(c) for c in decoded["image"] if c is not None)]})

    def binary_file():
        return (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", "*.jpg")
            .load(qualify(str(corpus)))
        )

    def spark_write(codec: str):
        def run() -> None:
            shutil.rmtree(out, ignore_errors=True)
            frame = ingest.decode_listed(listed(), size, MAX_PIXELS, max_bytes)
            frame.write.option("compression", codec).parquet(qualify(str(out)))

        return run

    def python_write(codec: str):
        def run() -> None:
            shutil.rmtree(out, ignore_errors=True)
            frame = ingest.write_listed(
                listed(), str(out), size, MAX_PIXELS, max_bytes, True, codec
            )
            ingest.adopt_written(str(out), ingest.collect_written(frame).files)

        return run

    listing = "walk (driver) + list (tasks) + spread by path"
    decode = "+ decode + resize (pixels stay in Python)"
    noop = "+ Python -> JVM of the pixels (noop sink)"
    # (name, pipeline, the pipeline it adds one step to)
    steps = [
        (listing, lambda: listed().count(), None),
        (
            "+ read the bytes in Python workers",
            lambda: listed().mapInPandas(lengths, "n long").agg(F.sum("n")).collect(),
            listing,
        ),
        (
            decode,
            lambda: listed().mapInPandas(decoded_lengths, "n long").agg(F.sum("n")).collect(),
            "+ read the bytes in Python workers",
        ),
    ]
    steps += [
        (
            f"+ Parquet by the Python workers (pyarrow) + counts, codec {codec}",
            python_write(codec),
            decode,
        )
        for codec in CODECS
    ]
    job = str(out) + "-job"
    steps.append(
        (
            f"run_ingest (+ commit; codec {cfg.ingest.parquet_codec})",
            lambda: ingest.run_ingest(spark, cfg, str(corpus), job, "2026-01-01"),
            f"+ Parquet by the Python workers (pyarrow) + counts, codec {cfg.ingest.parquet_codec}",
        )
    )
    steps += [
        (
            noop,
            lambda: (
                ingest.decode_listed(listed(), size, MAX_PIXELS, max_bytes)
                .write.format("noop")
                .mode("overwrite")
                .save()
            ),
            decode,
        ),
        ("+ Spark's Parquet writer (JVM), codec none", spark_write("none"), noop),
        ("+ Spark's Parquet writer (JVM), codec snappy", spark_write("snappy"), noop),
    ]
    steps += [
        ("previous: binaryFile, JVM reads the bytes",
         lambda: binary_file().agg(F.sum(F.length("content"))).collect(), None),
        ("previous: + JVM -> Python of the bytes",
         lambda: binary_file().select("content").mapInPandas(shipped_lengths, "n long")
         .agg(F.sum("n")).collect(), "previous: binaryFile, JVM reads the bytes"),
    ]  # fmt: skip
    table = []
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, fn, base in steps:
        runs = []
        for _ in range(repeats):
            shutil.rmtree(job, ignore_errors=True)
            before = tree_cpu_seconds()
            wall = timed(fn)
            runs.append((wall, tree_cpu_seconds() - before))
        seconds[name], cpu[name] = min(runs)
        mib = ""
        if "Parquet" in name and not name.startswith("run_ingest"):
            mib = f"{sum(f.stat().st_size for f in out.glob('*.parquet')) / 2**20:.1f}"
        step = seconds[name] - (seconds[base] if base else 0.0)
        step_cpu = cpu[name] - (cpu[base] if base else 0.0)
        table.append(
            [name, seconds[name], f"{step / n * 1e3:.3f}", f"{step_cpu / n * 1e3:.3f}", mib]
        )
    return table


def codec_table(folder: Path, sizes: list[int], n: int = 300) -> list[list[object]]:
    """Parquet codecs on raw pixels of real photos: compressed / raw size and MB/s on one
    core (Arrow's C++ codecs, the same libraries Parquet writers use)."""
    import time

    import pyarrow as pa

    from fakeface.decode import decode_image

    files = sorted(folder.rglob("*.jpg"))
    files = files[:: max(1, len(files) // n)][:n]
    rows = []
    for size in sizes:
        images = [decode_image(p.read_bytes(), size, MAX_PIXELS).image for p in files]
        raw = sum(len(i) for i in images)
        for codec in CODECS[1:]:
            started = time.perf_counter()
            packed = sum(len(pa.compress(i, codec=codec, asbytes=True)) for i in images)
            seconds = time.perf_counter() - started
            rows.append([f"{size} px", codec, f"{packed / raw:.3f}", raw / seconds / 1e6])
    return rows


# --------------------------------------------------------------------------- main


def _keep(times: dict, cpus: dict, name: str, n: int, wall: float, cpu: float) -> None:
    """Keep the fastest run of `name` at `n` images, with its CPU seconds."""
    if wall < times[name].get(n, float("inf")):
        times[name][n], cpus[name][n] = wall, cpu


def run_peer(name: str, spark, cfg, corpus: Path, out: Path) -> float:
    """Seconds of one of the pipelines fakeface is compared with, at cfg's output size."""
    size = cfg.ingest.image_size
    if name == "peer":
        return spark_image_source(spark, corpus, out / "peer", size)
    if name == "limit":
        return pillow_limit(image_files(corpus), size)
    return previous_ingest(spark, cfg, corpus, out / "prev")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=400)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--size", type=int, default=600, help="side of the synthetic JPEGs")
    parser.add_argument("--out-size", type=int, nargs="+", default=[160, 600])
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument("--profile", action="store_true", help="also the per-step profile")
    parser.add_argument("--no-previous", action="store_true", help="skip the previous path")
    parser.add_argument("--set", action="append", default=[], help="config override k=v")
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    parser.add_argument(
        "--real",
        default=str(shared / "real-and-fake-face-600"),
        help="real photos for the codec table (skipped when absent)",
    )
    args = parser.parse_args()
    setup_environment()
    print(machine_line())

    from fakeface.config import load_config
    from fakeface.spark import build_spark_session

    corpora = {n: synth_corpus(n, args.size) for n in (args.small, args.large)}
    conf = Path(__file__).resolve().parent.parent / "conf" / "local.yaml"
    cfg = load_config(conf, args.set)
    spark = build_spark_session(cfg, "bench-ingest")
    out = BENCH_DIR / "out"
    for size in args.out_size:
        cfg = load_config(conf, [*args.set, f"ingest.image_size={size}"])
        names = ["fakeface", "limit", "peer"] + ([] if args.no_previous else ["previous"])
        times: dict[str, dict[int, float]] = {name: {} for name in names}
        peaks: dict[int, float] = {}
        fakeface_ingest(spark, cfg, corpora[args.small], out / "warm")  # JIT, workers, imports
        cpus: dict[str, dict[int, float]] = {name: {} for name in names}

        for n, corpus in corpora.items():
            for _ in range(args.repeats):
                with PeakMemory() as mem:
                    before = tree_cpu_seconds()
                    t = fakeface_ingest(spark, cfg, corpus, out / "ff")
                    _keep(times, cpus, "fakeface", n, t, tree_cpu_seconds() - before)
                peaks[n] = max(peaks.get(n, 0.0), mem.peak_mib)
                for name in ("peer", "limit", "previous"):
                    if name in times and not (name == "peer" and n in times[name]):
                        # (the peer, 20x slower, runs once: the noise matters less there)
                        before = tree_cpu_seconds()
                        t = run_peer(name, spark, cfg, corpus, out)
                        cpu = tree_cpu_seconds() - before
                        if name == "limit":  # its pool is gone by now: its own figure
                            cpu = LIMIT_CPU[n, size]
                        _keep(times, cpus, name, n, t, cpu)
        rates = {
            name: marginal_rate(args.small, t[args.small], args.large, t[args.large])
            for name, t in times.items()
        }
        labels = {
            "fakeface": "fakeface ingest (tasks list; Python workers read, decode, write"
            f" Parquet {cfg.ingest.parquet_codec})",
            "limit": "limit: Pillow loop, same read + decode, 1 process/core",
            "peer": "peer: Spark `image` source + resize",
            "previous": "previous path: binaryFile + decode + Parquet snappy",
        }
        for name, t in times.items():
            c = cpus[name]
            marginal_cpu = (c[args.large] - c[args.small]) / (args.large - args.small) * 1e3
            print(
                f"{name}: {args.small} images in {t[args.small]:.2f}s,"
                f" {args.large} images in {t[args.large]:.2f}s; marginal CPU"
                f" {marginal_cpu:.2f} ms/image (this process and its children)"
            )
        print_table(
            f"Ingest, {args.size} px JPEG -> {size} px Parquet, marginal"
            f" {args.small} -> {args.large}, best of {args.repeats}",
            ["pipeline", "images/s", "fakeface / this"],
            [[labels[k], rates[k], rates["fakeface"] / rates[k]] for k in times],
        )
        print(
            f"\n{size} px: fakeface / limit = {rates['fakeface'] / rates['limit']:.2f}"
            f" (goal >= 0.8); fakeface / peer = {rates['fakeface'] / rates['peer']:.2f}"
            " (goal >= 2)"
            + (
                f"; fakeface / previous = {rates['fakeface'] / rates['previous']:.2f}"
                if "previous" in rates
                else ""
            )
        )
        per_image = {
            k: (c[args.large] - c[args.small]) / (args.large - args.small) for k, c in cpus.items()
        }
        print(
            f"{size} px, marginal CPU per image (robust to other jobs): limit / fakeface ="
            f" {per_image['limit'] / per_image['fakeface']:.2f}; peer / fakeface ="
            f" {per_image['peer'] / per_image['fakeface']:.2f}"
        )
        print(
            f"peak memory (driver JVM + Python driver + workers): {peaks[args.small]:.0f} MiB"
            f" at {args.small} images, {peaks[args.large]:.0f} MiB at {args.large}\n"
        )
        if args.profile:
            table = profile(spark, cfg, corpora[args.large], out / "profile", args.repeats)
            print_table(
                f"Profile at {size} px, {args.large} images, best of {args.repeats}",
                ["pipeline", "seconds", "step ms/image", "step CPU ms/image", "Parquet MiB"],
                table,
            )
            print()
    spark.stop()
    if Path(args.real).is_dir():
        print_table(
            f"Parquet codecs on the raw pixels of {args.real} (300 photos)",
            ["decoded to", "codec", "compressed / raw", "MB/s (1 core)"],
            codec_table(Path(args.real), args.out_size),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
