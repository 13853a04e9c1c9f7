"""Cluster benchmark: the packed environment's size, its unpack time, and scoring through it.

    python benchmarks/cluster.py [--images 1000] [--px 256] [--cores 2] [--workdir DIR]

(`make bench-cluster` builds the archive first with `make package`.)

- The archive `make package` wrote: its size, its unpacked size and file count, and a plain
  `tar -xzf` of it (what Spark's executor runs, through Hadoop's FileUtil.unTar).
- A Spark standalone master and one worker (`--cores`, 6 GiB) on 127.0.0.1, from pyspark's
  own Spark, as tests/test_cluster.py starts them.
- The same drop (a synthetic one, --images JPEGs at --px) scored twice by
  `spark-submit jobs/score.py` in client mode, with the production recipe (fresh weights) as
  @champion in a SQLite store under the work folder:
    archive: the worker has no route to this venv; conf/cluster.yaml's spark.archives and
             spark.pyspark.python ship `dist/fakeface-<version>-env.tar.gz#environment`;
    venv:    the worker runs this checkout's .venv Python (PYSPARK_PYTHON), no archive.
  Timed: the whole command, and the job's own images/s (its summary line). The executor's
  and the driver's logs (millisecond timestamps) give the time from fetching the archive to
  the end of its unpacking: what a first task waits for on a fresh executor, and what a
  client-mode driver spends (Spark unpacks archives on the driver too).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DIR, ROOT, machine_line, print_table, setup_environment

RUN_DATE = "2026-11-27"
LOG4J = """rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = info
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = info
logger.context.name = org.apache.spark.SparkContext
logger.context.level = info
"""


def archive_facts(archive: Path) -> dict[str, float]:
    """Size on disk, unpacked size and files, and the seconds a plain `tar -xzf` takes."""
    members = 0
    unpacked = 0
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            members += 1
            unpacked += member.size
    with tempfile.TemporaryDirectory(prefix="fakeface-untar-", dir=BENCH_DIR) as tmp:
        started = time.perf_counter()
        subprocess.run(["tar", "-xzf", str(archive), "-C", tmp], check=True)
        tar_seconds = time.perf_counter() - started
    return {
        "archive_mib": archive.stat().st_size / 2**20,
        "unpacked_mib": unpacked / 2**20,
        "files": members,
        "tar_seconds": tar_seconds,
    }


def write_conf(work: Path, mode: str, master: str, archive: Path, cores: int) -> Path:
    """conf/cluster.yaml sized to the one local worker; `venv` drops the archive."""
    base = "cluster.yaml" if mode == "archive" else "local.yaml"
    ship = f"    spark.archives: {archive}#environment\n" if mode == "archive" else ""
    conf = work / f"{mode}.yaml"
    conf.write_text(
        f"""extends: {ROOT / "conf" / base}
spark:
  master: {master}
  driver_memory: 2g
  shuffle_partitions: 4
  conf:
    spark.submit.deployMode: client
    spark.executor.instances: "1"
    spark.executor.cores: "{cores}"
    spark.executor.memory: 2g
    spark.executor.memoryOverhead: 1g
    spark.executor.extraJavaOptions: -Dlog4j2.configurationFile=file:{work / "log4j2-ms.properties"}
{ship}ingest:
  max_partition_bytes: 16m
mlflow:
  artifact_root: {work / "artifacts"}
"""
    )
    return conf


def score(work: Path, mode: str, conf: Path, drop: Path, worker_dir: Path) -> dict[str, float]:
    """One spark-submit of the scoring job; the executor's unpack time from its log."""
    from fakeface.config import load_config
    from fakeface.spark import submit_options

    out = work / f"scores-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    before = set(worker_dir.glob("app-*"))
    driver_log4j = work / "log4j2-ms.properties"  # the driver unpacks archives too
    cmd = [
        str(Path(sys.executable).parent / "spark-submit"),
        *submit_options(load_config(conf), sys.executable),
        "--driver-java-options", f"-Dlog4j2.configurationFile=file:{driver_log4j}",
        str(ROOT / "jobs" / "score.py"), "--conf", str(conf),
        "--input", str(drop), "--output", str(out), "--run-date", RUN_DATE,
        "--model", "models:/load-bench@champion",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed ({done.returncode}): {done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("score "))
    print(f"#   {mode}: {line}", file=sys.stderr)
    rows = int(re.search(r"rows=(\d+)", line)[1])
    job_rate = float(re.search(r"images/s=([\d.]+)", line)[1])
    (app,) = set(worker_dir.glob("app-*")) - before
    log = "\n".join(p.read_text() for p in sorted(app.glob("*/stderr")))
    driver = {f"driver_{k}": v for k, v in unpack_seconds(done.stderr).items()}
    job_s = float(re.search(r"seconds=([\d.]+)", line)[1])
    facts = {"rows": rows, "seconds": seconds, "job_rate": job_rate, **unpack_seconds(log)}
    # The job's rate once the executor has its environment (its first task waits for it).
    facts["steady_rate"] = rows / max(job_s - facts.get("fetch_unpack_s", 0.0), 1e-9)
    return {**facts, **driver}


_STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) ", re.MULTILINE)


def unpack_seconds(log: str) -> dict[str, float]:
    """Fetch start -> unpack start -> the executor's next log line, from its stderr."""
    fetch = re.search(r"^(\S+) INFO \w+: Fetching \S+env\.tar\.gz", log, re.MULTILINE) or (
        re.search(r"^(\S+) INFO \w+: Added archive ", log, re.MULTILINE)
    )
    unpack = re.search(r"^(\S+) INFO \w+: Unpacking an archive", log, re.MULTILINE)
    if not unpack:
        return {}
    after = _STAMP.search(log, unpack.end())
    t = {name: datetime.strptime(m[1], "%H:%M:%S.%f") for name, m in
         (("fetch", fetch), ("unpack", unpack), ("after", after)) if m}  # fmt: skip
    facts = {}
    if "after" in t:
        facts["unpack_s"] = (t["after"] - t["unpack"]).total_seconds()
    if "fetch" in t and "after" in t:
        facts["fetch_unpack_s"] = (t["after"] - t["fetch"]).total_seconds()
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--px", type=int, default=256)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=str(BENCH_DIR / "cluster"))
    args = parser.parse_args(argv)
    setup_environment()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    (work / "log4j2-ms.properties").write_text(LOG4J)
    print(machine_line(), flush=True)

    from importlib.metadata import version

    from benchmarks.load import make_drops, register_champion
    from fakeface.config import load_config
    from tests.test_cluster import bare_worker_env, running_cluster

    archive = ROOT / "dist" / f"fakeface-{version('fakeface')}-env.tar.gz"
    # Up to date with the checkout (seconds when it is), so driver and executors match.
    subprocess.run(["make", "-s", "-o", ".venv/.installed", "package"], cwd=ROOT, check=True)
    facts = archive_facts(archive)
    print_table(
        "Packed environment",
        ["archive MiB", "unpacked MiB", "files", "tar -xzf s"],
        [[facts["archive_mib"], facts["unpacked_mib"], int(facts["files"]), facts["tar_seconds"]]],
    )
    _, drop, _ = make_drops(work, args.images, args.images, args.px)
    cfg = load_config(ROOT / "conf" / "local.yaml")
    register_champion(work, cfg.train.variant, cfg.ingest.image_size)

    results: dict[str, dict[str, float]] = {}
    for mode in ("archive", "venv"):
        run_dir = work / f"cluster-{mode}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        worker_env = bare_worker_env() if mode == "archive" else None
        with running_cluster(run_dir, 1, worker_env, cores=args.cores, memory="6g") as cluster:
            conf = write_conf(work, mode, cluster["url"], archive, args.cores)
            results[mode] = score(work, mode, conf, drop, cluster["workers"][0]["work_dir"])
        for unpacked in run_dir.glob("work*/app-*/*/environment"):  # 2.4 GB each
            shutil.rmtree(unpacked, ignore_errors=True)
    rows = []
    for mode, r in results.items():
        rate = r["rows"] / r["seconds"]
        rows.append(
            [mode, r["rows"], r["seconds"], rate, r["job_rate"], r["steady_rate"],
             r.get("fetch_unpack_s", "-"), r.get("unpack_s", "-"), r.get("driver_unpack_s", "-")]
        )  # fmt: skip
    print_table(
        f"Scoring {args.images} images at {args.px} px on a standalone cluster"
        f" (1 worker, {args.cores} cores)",
        ["mode", "rows", "command s", "images/s (command)", "images/s (job)",
         "images/s (job, after unpack)", "executor fetch + unpack s", "executor unpack s",
         "driver unpack s"],
        rows,
    )  # fmt: skip
    a, v = results["archive"], results["venv"]
    print(
        f"ratio archive / venv: {(a['rows'] / a['seconds']) / (v['rows'] / v['seconds']):.2f}"
        f" (whole command), {a['job_rate'] / v['job_rate']:.2f} (job's images/s),"
        f" {a['steady_rate'] / v['steady_rate']:.2f} (job's images/s after the unpack)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
