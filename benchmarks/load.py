"""Load benchmark: a 100,000-image night scored end to end by the real job, memory kept flat.

    python benchmarks/load.py [--images 100000] [--small 10000] [--px 600] [--workdir DIR]

- A synthetic drop of --images JPEGs at --px (fakeface.synth, half real, half fake); the
  --small drop hard-links a spread subset of it, so both runs read the same kind of files.
  The disk the drop takes is printed.
- The production recipe's model (the config's train.variant, random weights: the speed of
  a trained one) is registered as @champion in a SQLite store under the work folder,
  tagged as trained on --train-size px images (160: the shared data set's size), so the
  job decodes every JPEG at that size, as it will at night.
- Each drop is scored by `spark-submit jobs/score.py` as the nightly cron runs it. Timed:
  the whole command (JVM start and model broadcast included). Peak memory: the resident
  set of spark-submit and everything under it (JVM, Python workers), sampled every 50 ms.
- Checked: rows out == files in, every path once.
- Marginal images/s = (large - small) / (t_large - t_small); from it the core-hours of a
  1M and a 10M night. Compared with the machine's limit for the same work: Pillow
  decode (one process per core) and the model alone on in-memory arrays, shared cores.
  The peers a user would pick (mlflow.pyfunc.spark_udf, predict_batch_udf) are compared
  in benchmarks/score.py; at this scale they would only repeat those ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    ROOT,
    PeakMemory,
    link_spread_subset,
    machine_line,
    setup_environment,
    spark_submit_prefix,
)

RUN_DATE = "2026-11-26"
MODEL_NAME = "load-bench"


def disk_bytes(folder: Path) -> int:
    """Bytes the files under `folder` take on disk (allocated blocks, like du)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def make_drops(work: Path, n_large: int, n_small: int, px: int) -> tuple[Path, Path, float]:
    """The large drop (cached between runs) and a hard-linked spread subset of it."""
    from fakeface.synth import write_corpus

    large = work / f"drop_{n_large}_{px}"
    seconds = 0.0
    if not (large / "_complete").exists():
        started = time.perf_counter()
        write_corpus(large, n_large // 2, n_large - n_large // 2, size=px, seed=0)
        seconds = time.perf_counter() - started
        (large / "_complete").write_text("ok")
    small = link_spread_subset(large, work / f"drop_{n_small}_{px}", n_small)
    return large, small, seconds


def register_champion(work: Path, variant: str, size: int) -> int:
    """Register the variant (fresh weights) as @champion trained at `size` px, as training
    tags it (images are decoded at that size, the model resizes in-graph)."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from fakeface.models.factory import build_model

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, "champion")
        if version.tags.get("variant") == variant and version.tags["input_size"] == str(size):
            return size
    except mlflow.exceptions.MlflowException:
        pass  # no champion yet
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, size, size, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1))]),
    )
    if mlflow.get_experiment_by_name("bench-load") is None:
        mlflow.create_experiment("bench-load", artifact_location=(work / "artifacts").as_uri())
    mlflow.set_experiment("bench-load")
    with mlflow.start_run():
        info = mlflow.keras.log_model(
            build_model(variant), name="model", signature=signature, pip_requirements=["keras"]
        )
    tags = {"threshold": "0.5", "variant": variant, "input_size": str(size)}
    version = mlflow.register_model(info.model_uri, MODEL_NAME, tags=tags).version
    client.set_registered_model_alias(MODEL_NAME, "champion", version)
    return size


def score_drop(drop: Path, out: Path, work: Path) -> dict[str, float]:
    """Run the nightly scoring command on `drop`; time it, sample its memory, check rows."""
    import pyarrow.dataset as pads

    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        *spark_submit_prefix(),
        str(ROOT / "jobs" / "score.py"),
        "--conf", str(ROOT / "conf" / "local.yaml"),
        "--input", str(drop), "--output", str(out), "--run-date", RUN_DATE,
        "--model", f"models:/{MODEL_NAME}@champion",
        "--set", f"mlflow.artifact_root={work / 'artifacts'}",
    ]  # fmt: skip
    log_path = out.parent / f"{out.name}.log"
    out_path = out.parent / f"{out.name}.stdout"
    with (
        PeakMemory(wait_for_watch=True) as peak,
        log_path.open("w") as log,
        out_path.open("w") as stdout,
    ):
        started = time.perf_counter()
        job = subprocess.Popen(cmd, cwd=work, stdout=stdout, stderr=log, text=True)
        peak.watch(job.pid)  # the job's tree only: this process holds TensorFlow already
        returncode = job.wait()
        seconds = time.perf_counter() - started
    if returncode != 0:
        raise SystemExit(f"scoring {drop} failed ({returncode}); see {log_path}")
    n_files = sum(1 for _ in drop.rglob("*.jpg"))
    table = (
        pads.dataset(str(out), format="parquet", partitioning="hive", exclude_invalid_files=True)
        .to_table(columns=["path", "status"])
        .to_pandas()
    )
    if len(table) != n_files or not table.path.is_unique:
        raise SystemExit(f"rows out {len(table)} != files in {n_files} (or duplicates)")
    n_ok = int((table.status == "ok").sum())
    line = next((x for x in out_path.read_text().splitlines() if x.startswith("score ")), "")
    print(f"#   {line}", file=sys.stderr)
    return {
        "images": n_files,
        "ok": n_ok,
        "seconds": seconds,
        "peak_gib": peak.peak_mib / 1024,
        "jvm_gib": peak.peak_by_kind.get("jvm", 0) / 2**30,
        "driver_gib": peak.peak_by_kind.get("python-driver", 0) / 2**30,
        "workers_gib": peak.peak_by_kind.get("python-workers", 0) / 2**30,
    }


def machine_limit(drop: Path, model_size: int, variant: str, cores: int) -> dict[str, float]:
    """Decode alone and model alone on a 2,000-image sample; both on shared cores."""
    from benchmarks.score import decode_limit, model_limit
    from fakeface.config import load_config
    from fakeface.models.factory import build_model

    cfg = load_config(ROOT / "conf" / "local.yaml")
    sample = link_spread_subset(drop, drop.parent / "limit_sample", 2000)
    decode_rate = decode_limit(sample, model_size, cfg.ingest.max_pixels, cores)
    model_rate = model_limit(build_model(variant), 2000, model_size, cfg.score.inference_batch_size)
    return {
        "decode": decode_rate,
        "model": model_rate,
        "both": 1.0 / (1.0 / decode_rate + 1.0 / model_rate),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--px", type=int, default=600, help="side of the synthetic JPEGs")
    parser.add_argument("--variant", default=None, help="default: the config's train.variant")
    parser.add_argument(
        "--train-size", type=int, default=160, help="px the model was trained at (decode size)"
    )
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench" / "load"))
    args = parser.parse_args(argv)
    if not 0 < args.small < args.images:
        parser.error("need 0 < --small < --images")
    setup_environment()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    cores = os.cpu_count() or 1
    print(machine_line())

    from fakeface.config import load_config

    variant = args.variant or load_config(ROOT / "conf" / "local.yaml").train.variant
    free_before = shutil.disk_usage(work).free
    large, small, gen_s = make_drops(work, args.images, args.small, args.px)
    drop_bytes = disk_bytes(large)
    print(
        f"drop: {args.images} synthetic {args.px} px JPEGs, {drop_bytes / 2**30:.2f} GiB on disk"
        f" ({drop_bytes / args.images / 1024:.0f} KiB each; {free_before / 2**30:.0f} GiB were"
        f" free){f'; generated in {gen_s / 60:.1f} min' if gen_s else ''}"
    )
    size = register_champion(work, variant, args.train_size)
    runs = {}
    for n, drop in ((args.small, small), (args.images, large)):
        print(f"# scoring {n} images ...", file=sys.stderr)
        runs[n] = score_drop(drop, work / f"scores_{n}", work)
    out_bytes = disk_bytes(work / f"scores_{args.images}")
    limit = machine_limit(large, size, variant, cores)

    a, b = runs[args.small], runs[args.images]
    if b["seconds"] <= a["seconds"]:
        raise SystemExit("the large drop did not take longer than the small one: rerun")
    marginal = (b["images"] - a["images"]) / (b["seconds"] - a["seconds"])
    per_core = marginal / cores
    print(
        f"\nLoad benchmark: `spark-submit jobs/score.py`, model `{variant}` (decoded at {size}"
        f" px), local[{cores}]\n"
    )
    print(
        "| images | ok | seconds | images/s (whole run) | peak memory GiB"
        " | JVM | Python driver | Python workers |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (args.small, args.images):
        r = runs[n]
        print(
            f"| {n:,} | {r['ok']:,} | {r['seconds']:.0f} | {r['images'] / r['seconds']:.0f}"
            f" | {r['peak_gib']:.2f} | {r['jvm_gib']:.2f} | {r['driver_gib']:.2f}"
            f" | {r['workers_gib']:.2f} |"
        )
    print("(JVM, driver and workers: each one's own peak, so they need not add up)")
    print()
    print(f"- marginal rate: {marginal:.0f} images/s ({per_core:.0f} per core)")
    print(
        f"- machine limit for the same work: decode {limit['decode']:.0f}/s, model"
        f" {limit['model']:.0f}/s, both on shared cores {limit['both']:.0f}/s;"
        f" marginal / limit = {marginal / limit['both']:.2f}"
    )
    print(
        f"- peak memory {args.images:,} / {args.small:,} images ="
        f" {b['peak_gib'] / a['peak_gib']:.2f} (1.00 = flat)"
    )
    for night in (1_000_000, 10_000_000):
        hours = night / marginal * cores / 3600
        print(
            f"- {night:,} images a night: {hours:.1f} core-hours at the marginal rate"
            f" (+{a['seconds'] - a['images'] / marginal:.0f} s of start-up per run)"
        )
    print(f"- output Parquet for {args.images:,} images: {out_bytes / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
