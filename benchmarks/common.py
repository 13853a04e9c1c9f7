"""Shared benchmark helpers: corpora, a peak-memory sampler, marginal rates, tables."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"


def setup_environment() -> None:
    """Spark workers run this interpreter; quiet TF; logs as the jobs configure them."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))


def synth_corpus(n_images: int, size: int = 600, seed: int = 0) -> Path:
    """A cached synthetic corpus of n_images (half real, half fake) at size px."""
    from fakeface.synth import write_corpus

    out = BENCH_DIR / f"corpus-{n_images}-{size}-{seed}"
    marker = out / "_complete"
    if not marker.exists():
        write_corpus(
            out, n_real=n_images // 2, n_fake=n_images - n_images // 2, size=size, seed=seed
        )
        marker.write_text("ok")
    return out


def link_spread_subset(src: Path, dst: Path, n: int) -> Path:
    """Hard-link `n` JPEGs spread evenly over `src` into `dst` (same relative paths), once.

    No extra disk, and the subset looks like the whole: same kinds, levels and sizes.
    """
    marker = dst / "_complete"
    if marker.exists():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    files = sorted(src.rglob("*.jpg"))
    for f in files[:: max(1, len(files) // n)][:n]:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, target)
    marker.write_text("ok")
    return dst


def spark_submit_prefix() -> list[str]:
    """`spark-submit` of this interpreter's environment with the project's log4j config."""
    log4j = ROOT / "conf" / "log4j2.properties"
    return [
        str(Path(sys.executable).parent / "spark-submit"),
        "--driver-java-options",
        f"-Dlog4j2.configurationFile=file:{log4j}",
    ]


def image_files(folder: Path) -> list[Path]:
    """The corpus's image files."""
    return sorted(p for p in folder.rglob("*.jpg"))


def _process_kind(proc: psutil.Process, root: psutil.Process | None = None) -> str:
    """'jvm', 'python-workers' (pyspark daemon/workers), 'python-driver' or 'other'.

    A process forked but not yet exec'ed shares its parent's pages: the JVM's forks carry a
    thread's name ('Thread-4'), not 'java'; a Python process counts as the driver only as
    the JVM's child (spark-submit) or the watched root, so a fork of the driver is 'other'.
    """
    name = proc.name()
    if name == "java":
        return "jvm"
    cmdline = " ".join(proc.cmdline())
    if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
        return "python-workers"
    if "python" not in name:
        return "other"
    if root is not None and proc.pid == root.pid:
        return "python-driver"
    parent = proc.parent()
    return "python-driver" if parent is not None and parent.name() == "java" else "other"


class PeakMemory:
    """Samples RSS of this process and all its children (JVM, Python workers) every 50 ms."""

    def __init__(self, wait_for_watch: bool = False) -> None:
        self.peak_bytes = 0
        self._root: psutil.Process | None = None  # None: this process and its children
        # True: sample nothing until `watch` names the process (never this one by mistake)
        self._wait_for_watch = wait_for_watch
        # "jvm" / "python-driver" / "python-workers" / "driver" (the first two at one moment):
        # each kind's own peak
        self.peak_by_kind: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            kinds: dict[str, int] = {}
            if self._wait_for_watch and self._root is None:
                time.sleep(0.01)
                continue
            root = self._root or me
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:  # the watched command has exited
                tree = []
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    rss = proc.memory_info().rss
                    total += rss
                    kind = _process_kind(proc, self._root)
                    kinds[kind] = kinds.get(kind, 0) + rss
            self.peak_bytes = max(self.peak_bytes, total)
            # The driver: its JVM (in local mode it runs the tasks too) and the Python driver.
            kinds["driver"] = kinds.get("jvm", 0) + kinds.get("python-driver", 0)
            for kind, rss in kinds.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), rss)
            time.sleep(0.05)

    def watch(self, pid: int) -> None:
        """Sample only `pid` and its descendants (a launched command, not this process)."""
        self._root = psutil.Process(pid)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process (default: this one) and its descendants (JVM,
    Python workers, a server's workers): a step's cost in CPU, which other jobs on the
    machine disturb far less than its wall time."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return total
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def marginal_rate(n_small: int, t_small: float, n_large: int, t_large: float) -> float:
    """Items per second between two sizes: fixed start-up costs cancel out."""
    return (n_large - n_small) / max(t_large - t_small, 1e-9)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> str:
    """A markdown table, printed and returned."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    for row in rows:
        lines.append("| " + " | ".join(_fmt(c) for c in row) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def machine_line() -> str:
    """Cores, memory and load, to print beside the figures."""
    load = os.getloadavg()[0]
    mem = psutil.virtual_memory().total / 2**30
    return f"machine: {os.cpu_count()} cores, {mem:.0f} GiB RAM, load average {load:.2f} at start"


def relative_key(path: str) -> str:
    """'file:/.../training_fake/mid_1_0001.jpg' -> 'training_fake/mid_1_0001.jpg'."""
    return "/".join(path.rstrip("/").split("/")[-2:])


def lake_pixels(lake: Path) -> dict[str, tuple]:
    """relative key -> (image_id, (H, W, 3) uint8 pixels, label, level) of every decoded row.

    Read with pyarrow, not collected through Spark: at 600 px the pixels are 1.6 GB, over
    spark.driver.maxResultSize.
    """
    import numpy as np
    import pyarrow.parquet as pq

    columns = ["image_id", "path", "image", "height", "width", "status", "label", "level"]
    rows = pq.read_table(lake, columns=columns).to_pandas()
    rows = rows[rows.status == "ok"]
    return {
        relative_key(p): (i, np.frombuffer(img, np.uint8).reshape(h, w, 3), label, level)
        for i, p, img, h, w, label, level in zip(
            rows.image_id, rows.path, rows.image, rows.height, rows.width, rows.label,
            rows.level, strict=True,
        )
    }  # fmt: skip


def pose_table(data_dir: Path) -> dict[str, list[float]]:
    """relative path -> the four pose numbers, from the original files.

    Cached as var/bench/pose/<folder name>.csv, shared by the accuracy and held-out benchmarks.
    """
    import csv

    from PIL import Image

    from fakeface.landmarks import POSE_FEATURES, FaceMesher

    cache_path = BENCH_DIR / "pose" / f"{data_dir.name}.csv"
    if cache_path.exists():
        with cache_path.open() as fh:
            rows = list(csv.DictReader(fh))
        table = {r["key"]: [float(r[k]) for k in POSE_FEATURES] for r in rows}
        if len(table) == sum(1 for _ in data_dir.rglob("*.jpg")):
            return table
    mesher = FaceMesher()
    table = {}
    for path in sorted(data_dir.rglob("*.jpg")):
        with Image.open(path) as image:
            table[relative_key(str(path))] = [float(v) for v in mesher.pose_features(image)]
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with cache_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", *POSE_FEATURES])
        for key, values in sorted(table.items()):
            writer.writerow([key, *values])
    return table
