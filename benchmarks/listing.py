"""Listing at scale: `spark-submit jobs/ingest.py` and `jobs/score.py` on 1,000,000 small files.

    python benchmarks/listing.py [--files 1000000] [--small 100000] [--per-folder 1000]
                                 [--driver-memory 4g] [--jobs ingest score] [--keep]

- Two drops of valid ~1 KB JPEGs (a handful of distinct 32 x 32 images written to many
  files, --per-folder to a sub-folder): --files and --small files. Generated fast, deleted
  at the end unless --keep.
- Each drop is ingested (`ingest.image_size=16`: the output stays small, this measures the
  listing, not the pixels) and scored (a tiny registered model at 16 px: the same) by
  `spark-submit` with the same --driver-memory, as the nightly job runs them.
- Reported per run: the whole command's seconds; the listing: the driver's walk over the
  folders (from the job's log) and the tasks' listing stage (from Spark's event log);
  the driver's peak memory: resident set of the driver JVM plus the Python driver, sampled
  every 50 ms (in local mode the JVM also runs the tasks); rows out == files in.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    ROOT,
    PeakMemory,
    machine_line,
    setup_environment,
    spark_submit_prefix,
)

RUN_DATE = "2026-11-27"
MODEL_NAME = "listing-bench"
SIZE = 16  # decode size of both jobs
DISTINCT = 16  # distinct JPEG byte strings in a drop


def tiny_jpegs(n: int = DISTINCT) -> list[bytes]:
    """`n` distinct valid 32 x 32 JPEGs of about 1 KB."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32]
    out = []
    for i in range(n):
        base = np.stack([x * 8, y * 8, np.full_like(x, 16 * i)], -1)
        noisy = np.clip(base + rng.integers(-24, 24, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def _write_folders(task: tuple[str, int, int, int, list[bytes]]) -> int:
    root, first, last, per_folder, blobs = task
    written = 0
    for folder in range(first, last):
        path = os.path.join(root, f"part-{folder:05d}")
        os.makedirs(path, exist_ok=True)
        for i in range(per_folder):
            index = folder * per_folder + i
            with open(os.path.join(path, f"img-{index:07d}.jpg"), "wb") as handle:
                handle.write(blobs[index % len(blobs)])
            written += 1
    return written


def make_drop(root: Path, files: int, per_folder: int) -> tuple[Path, float]:
    """`files` tiny JPEGs in folders of `per_folder`; (root, seconds), cached by a marker."""
    marker = root.parent / f"{root.name}.complete"
    if marker.exists():
        return root, 0.0
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    blobs = tiny_jpegs()
    folders = files // per_folder
    step = max(1, folders // (8 * (os.cpu_count() or 1)))
    tasks = [
        (str(root), a, min(a + step, folders), per_folder, blobs) for a in range(0, folders, step)
    ]
    with mp.get_context("forkserver").Pool(os.cpu_count()) as pool:
        assert sum(pool.map(_write_folders, tasks)) == folders * per_folder
    marker.write_text("ok")
    return root, time.perf_counter() - started


def register_tiny_model(work: Path) -> None:
    """A tiny Keras model (mean brightness -> sigmoid) as @champion, trained at SIZE px."""
    import keras
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from fakeface.models.layers import CastToFloat32

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    try:
        client.get_model_version_by_alias(MODEL_NAME, "champion")
        return
    except mlflow.exceptions.MlflowException:
        pass
    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = CastToFloat32()(inputs)
    x = keras.layers.Rescaling(1.0 / 255)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, -1, -1, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1))]),
    )
    if mlflow.get_experiment_by_name("bench-listing") is None:
        mlflow.create_experiment("bench-listing", artifact_location=(work / "artifacts").as_uri())
    mlflow.set_experiment("bench-listing")
    with mlflow.start_run():
        info = mlflow.keras.log_model(
            model, name="model", signature=signature, pip_requirements=["keras"]
        )
    tags = {"threshold": "0.5", "variant": "tiny", "input_size": str(SIZE)}
    version = mlflow.register_model(info.model_uri, MODEL_NAME, tags=tags).version
    client.set_registered_model_alias(MODEL_NAME, "champion", version)


def listing_stage_seconds(events: Path) -> float | None:
    """Seconds of the tasks' listing stage: the stage that runs MapInPandas over the folders
    and writes the shuffle that spreads the paths (from Spark's event log)."""
    lines = [
        line
        for log in sorted(p for p in events.rglob("*") if p.is_file())
        for line in log.read_text().splitlines()
        if line.startswith("{")
    ]
    best = None
    for line in lines:
        event = json.loads(line)
        if event.get("Event") != "SparkListenerStageCompleted":
            continue
        info = event["Stage Info"]
        scopes = " ".join(r.get("Scope", "") for r in info.get("RDD Info", []))
        written = sum(
            a.get("Value", 0)
            for a in info.get("Accumulables", [])
            if a.get("Name") == "internal.metrics.shuffle.write.recordsWritten"
        )
        if "MapInPandas" in scopes and written and "Completion Time" in info:
            seconds = (info["Completion Time"] - info["Submission Time"]) / 1000
            best = seconds if best is None else best + seconds
    return best


def run_job(job: str, drop: Path, out: Path, work: Path, driver_memory: str) -> dict:
    """One `spark-submit jobs/<job>.py` on `drop`: seconds, listing, driver memory, rows."""
    import pyarrow.dataset as pads

    shutil.rmtree(out, ignore_errors=True)
    events = work / f"events-{out.name}"
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    cmd = [
        *spark_submit_prefix(),
        "--driver-memory", driver_memory,
        "--conf", "spark.eventLog.enabled=true",
        "--conf", f"spark.eventLog.dir={events.as_uri()}",
        "--conf", "spark.eventLog.compress=false",
        "--conf", "spark.eventLog.rolling.enabled=false",
        str(ROOT / "jobs" / f"{job}.py"),
        "--conf", str(ROOT / "conf" / "local.yaml"),
        "--input", str(drop), "--output", str(out), "--run-date", RUN_DATE,
        "--set", f"ingest.image_size={SIZE}",
    ]  # fmt: skip
    if job == "ingest":
        cmd.append("--unlabeled")
    else:
        cmd += ["--model", f"models:/{MODEL_NAME}@champion"]
        cmd += ["--set", f"mlflow.artifact_root={work / 'artifacts'}"]
    log_path = work / f"{out.name}.log"
    with PeakMemory(wait_for_watch=True) as peak, log_path.open("w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, text=True)
        peak.watch(proc.pid)
        returncode = proc.wait()
        seconds = time.perf_counter() - started
    text = log_path.read_text()
    if returncode != 0:
        raise SystemExit(f"{job} on {drop} failed ({returncode}); see {log_path}")
    walk = re.search(r"walked (\d+) folders .* in ([0-9.]+) s", text)
    table = pads.dataset(str(out), format="parquet", partitioning="hive").to_table(["path"])
    rows = table.num_rows
    unique = len(set(table.column("path").to_pylist()))
    line = next((x for x in text.splitlines() if x.startswith(f"{job} ")), "")
    return {
        "seconds": seconds,
        "walk_s": float(walk.group(2)) if walk else None,
        "folders": int(walk.group(1)) if walk else None,
        "listing_stage_s": listing_stage_seconds(events),
        "driver_gib": peak.peak_by_kind.get("driver", 0) / 2**30,
        "jvm_gib": peak.peak_by_kind.get("jvm", 0) / 2**30,
        "python_driver_gib": peak.peak_by_kind.get("python-driver", 0) / 2**30,
        "rows": rows,
        "unique": unique,
        "summary": line,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--per-folder", type=int, default=1000)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--jobs", nargs="+", default=["ingest", "score"])
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench" / "listing"))
    parser.add_argument("--keep", action="store_true", help="keep the drops for a rerun")
    args = parser.parse_args(argv)
    setup_environment()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    print(machine_line(), flush=True)
    print(f"disk free at start: {shutil.disk_usage(work).free / 2**30:.0f} GiB", flush=True)
    drops = {}
    for n in (args.small, args.files):
        drops[n], gen = make_drop(work / f"drop-{n}", n, args.per_folder)
        print(f"drop of {n:,} files ready ({gen:.0f} s to generate)", flush=True)
    if "score" in args.jobs:
        register_tiny_model(work)
    results: dict[tuple[str, int], dict] = {}
    try:
        for job in args.jobs:
            for n, drop in drops.items():
                print(f"# {job} {n:,} files ...", file=sys.stderr, flush=True)
                r = run_job(job, drop, work / f"{job}-{n}", work, args.driver_memory)
                if r["rows"] != n or r["unique"] != n:
                    raise SystemExit(f"{job}: rows out {r['rows']} ({r['unique']} paths) != {n}")
                results[job, n] = r
                print(f"#   {r['summary']}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            for drop in drops.values():
                shutil.rmtree(drop, ignore_errors=True)
                (work / f"{drop.name}.complete").unlink(missing_ok=True)
            for job in args.jobs:
                for n in drops:
                    shutil.rmtree(work / f"{job}-{n}", ignore_errors=True)
    print(
        f"\nListing at scale: spark-submit --driver-memory {args.driver_memory}, local[*],"
        f" {args.per_folder} files a folder, decoded at {SIZE} px\n"
    )
    print(
        "| job | files | rows out | seconds | walk (driver) s | listing stage (tasks) s"
        " | driver peak GiB (JVM + Python) | JVM | Python driver |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (job, n), r in results.items():
        stage = r["listing_stage_s"]
        print(
            f"| {job} | {n:,} | {r['rows']:,} | {r['seconds']:.0f} | {r['walk_s']}"
            f" | {stage if stage is None else round(stage, 1)} | {r['driver_gib']:.2f}"
            f" | {r['jvm_gib']:.2f} | {r['python_driver_gib']:.2f} |"
        )
    for job in args.jobs:
        a, b = results[job, args.small], results[job, args.files]
        print(
            f"- {job}: driver memory {args.files:,} / {args.small:,} files ="
            f" {b['driver_gib'] / a['driver_gib']:.2f} (goal <= 1.5)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
