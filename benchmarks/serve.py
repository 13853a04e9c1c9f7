"""Serving benchmark: the registered model behind `mlflow models serve`, held to the nightly job.

    .venv/bin/python benchmarks/serve.py [--venv DIR] [--workdir DIR] [--train-per-class 48]
        [--epochs 2] [--parity 64] [--latency 100] [--throughput 256] [--batch 32]
        [--passes 3] [--repeats 2] [--load-requests 320] [--load-threads 8] [--load-seconds 240]

(`make bench-serve` runs it with the defaults; pass `--venv var/bench/serve-venv` to keep
the fresh serving venv between runs: it is reused when its requirements are the model's.)

One run, on the same files, everything under a temporary folder with its own MLflow store:
1. Model: the production recipe (the config's train.variant) trained by `run_train` on a
   small labelled set ingested by `run_ingest` (the 600 px originals in ../shared/data,
   else a synthetic corpus), logged by the job (`fakeface.serving.log_serving_model`),
   registered, aliased @champion, downloaded with
   `mlflow.artifacts.download_artifacts("models:/NAME@champion")`; its size is printed.
2. A fresh venv from the folder's requirements.txt alone; checked: no pyspark, no
   petastorm, no fakeface in its `pip list`.
3. `mlflow models serve --env-manager local` from that venv (its bin first on PATH, cwd
   outside the checkout, no PYTHONPATH), on 127.0.0.1 and a free port; killed at the end.
4. Parity: --parity distinct JPEGs plus random bytes, a truncated JPEG, an empty file and
   two decompression bombs (a tiny PNG declaring 10000x10000: the decoder's max_pixels
   check; one declaring 20000x20000: Pillow's own bomb check) through the server, the
   pyfunc in-process (this checkout's fakeface, already imported) and the nightly job
   (`run_score` on a folder of the same files, same model URI):
   p_fake within 1e-5 and equal statuses for every file, or the run fails.
5. Latency: --latency one-image requests, sequential, distinct files.
6. Throughput: --batch images per request, --passes over the --throughput files, one
   client; images per CPU-second of the server's process tree (psutil), against the
   nightly job on the same files (`run_score` in one Spark session, the fastest of
   --repeats at --parity and --throughput images: the marginal rate divided by the cores,
   as benchmarks/load.py reports it, and the marginal images per CPU-second of this
   process's tree: driver, JVM, Python workers) and against the limit: decode alone and
   the model alone on in-memory arrays, per CPU-second (`decode_image` on one thread, the
   model's process CPU time) and by wall clock / cores (`benchmarks.score.decode_limit`,
   `model_limit`). On a shared machine only the CPU-second figures are fair.
7. Load: --load-threads client threads, --load-requests requests of 1-8 images with bad
   files mixed in, bounded by --load-seconds; checked: every request answered, no 5xx, no
   connection error, every row's status as expected, the server's RSS at the end within
   1.5x of its RSS after the first request.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import (  # noqa: E402
    machine_line,
    print_table,
    setup_environment,
    tree_cpu_seconds,
)

SHARED_600 = ROOT.parent / "shared" / "data" / "real-and-fake-face-600"
MODEL_NAME = "bench-serve"
RUN_DATE = "2026-01-01"
P_TOL = 1e-5
RSS_LIMIT = 1.5
FORBIDDEN = ("pyspark", "petastorm", "fakeface")


# --------------------------------------------------------------------------- files


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


def source_files(n_train_per_class: int, n_bench: int) -> tuple[list[Path], list[Path], Path, str]:
    """(training files, benchmark files, their root, what they are): disjoint sets.

    The 600 px originals when present (training: the first files of each class; benchmark:
    a spread of the rest of both classes), else a synthetic 600 px corpus.
    """
    if (SHARED_600 / "training_real").is_dir() and (SHARED_600 / "training_fake").is_dir():
        root, what = SHARED_600, "600 px originals (real-and-fake-face-600)"
    else:
        from benchmarks.common import synth_corpus

        root = synth_corpus(2 * n_train_per_class + n_bench + 8, size=600)
        what = "synthetic 600 px JPEGs (benchmarks.common.synth_corpus)"
    real = sorted((root / "training_real").rglob("*.jpg"))
    fake = sorted((root / "training_fake").rglob("*.jpg"))
    train = real[:n_train_per_class] + fake[:n_train_per_class]
    rest_real, rest_fake = real[n_train_per_class:], fake[n_train_per_class:]
    bench: list[Path] = []
    for a, b in zip(rest_real, rest_fake, strict=False):  # alternate the classes
        bench += [a, b]
    bench += rest_real[len(rest_fake) :] + rest_fake[len(rest_real) :]
    if len(bench) < n_bench:
        raise SystemExit(f"only {len(bench)} benchmark files under {root}; need {n_bench}")
    return train, bench[:n_bench], root, what


def bad_files(a_jpeg: bytes) -> dict[str, bytes]:
    """name -> bytes of the bad uploads (names the nightly job lists: image extensions)."""
    from fakeface.synth import decompression_bomb_png

    rng = np.random.default_rng(7)
    return {
        "bad_random.jpg": b"\x13\x37" + rng.integers(0, 256, 8190, dtype=np.uint8).tobytes(),
        "bad_truncated.jpg": a_jpeg[: len(a_jpeg) // 3],
        "bad_empty.jpg": b"",
        "bad_bomb_10000.png": decompression_bomb_png(10_000, 10_000),
        "bad_bomb_20000.png": decompression_bomb_png(20_000, 20_000),
    }


# --------------------------------------------------------------------------- model


def train_and_register(
    spark: Any, cfg: Any, work: Path, train_files: list[Path], root: Path, epochs: int
) -> tuple[str, str, float]:
    """Ingest + run_train (registers through log_serving_model), alias @champion.

    Returns (version, variant, seconds)."""
    from mlflow import MlflowClient

    from fakeface.ingest import run_ingest
    from fakeface.train import run_train

    started = time.perf_counter()
    corpus = work / "train_corpus"
    for f in train_files:
        _link(f, corpus / f.relative_to(root))
    lake = work / "lake"
    run_ingest(spark, cfg, str(corpus), str(lake), RUN_DATE)
    (result,) = run_train(
        spark, cfg, str(lake), [cfg.train.variant], folds=1, weights="none", epochs=epochs
    )
    if result.version is None:
        raise SystemExit("run_train registered no version")
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", result.version)
    return str(result.version), result.variant, time.perf_counter() - started


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- venv


def read_requirements(path: Path) -> list[str]:
    lines = [x.strip() for x in path.read_text().splitlines()]
    return sorted(x for x in lines if x and not x.startswith("#"))


def ensure_venv(venv: Path, requirements: Path) -> tuple[float, bool]:
    """A venv made only from `requirements`; reused when it was made from the same list.

    Returns (seconds spent, reused)."""
    marker = venv / ".bench-serve-requirements"
    wanted = read_requirements(requirements)
    if (venv / "bin" / "python").exists() and marker.exists():
        if json.loads(marker.read_text()) == wanted:
            return 0.0, True
        print(f"# {venv}: requirements changed, reinstalling", file=sys.stderr)
        shutil.rmtree(venv)
    elif venv.exists() and any(venv.iterdir()):
        raise SystemExit(f"--venv {venv} exists but was not made by this benchmark")
    started = time.perf_counter()
    python = shutil.which("python3.11") or sys._base_executable  # type: ignore[attr-defined]
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "install", "-q", "-r", str(requirements)],
        env=_clean_env(venv),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"pip install -r {requirements} failed:\n{done.stderr[-3000:]}")
    marker.write_text(json.dumps(wanted))
    return time.perf_counter() - started, False


def _clean_env(venv: Path) -> dict[str, str]:
    """This environment minus anything that would let the checkout or .venv leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        and not k.startswith(("PYSPARK", "SPARK_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def venv_packages(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "list",
            "--format=json",
            "--disable-pip-version-check",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=_clean_env(venv),
    ).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow models serve` from the fresh venv in its own process group."""

    def __init__(self, venv: Path, model_dir: Path, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        cmd = [
            str(venv / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self._log = self.log_path.open("w")
        cwd = work / "server_cwd"
        cwd.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=_clean_env(venv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float) -> float:
        import requests

        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.5)
        raise SystemExit(f"the server did not answer /ping in {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def tree(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def rss_bytes(self) -> int:
        import psutil

        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):  # anything left in the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def request_body(contents: list[bytes]) -> bytes:
    data = [[base64.b64encode(c).decode("ascii")] for c in contents]
    return json.dumps({"dataframe_split": {"columns": ["content"], "data": data}}).encode()


def post(
    session: Any, url: str, contents: list[bytes], timeout_s: float = 120
) -> tuple[int, Any, float]:
    """(HTTP status, predictions or the error text, seconds) of one request."""
    body = request_body(contents)
    started = time.perf_counter()
    response = session.post(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=timeout_s,
    )
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return response.status_code, response.text[:500], seconds
    return 200, response.json()["predictions"], seconds


def score_via_server(url: str, contents: list[bytes], batch: int) -> list[dict[str, Any]]:
    import requests

    rows: list[dict[str, Any]] = []
    with requests.Session() as session:
        for start in range(0, len(contents), batch):
            chunk = contents[start : start + batch]
            code, out, _ = post(session, url, chunk)
            if code != 200 or len(out) != len(chunk):
                raise SystemExit(f"server answered {code} to a parity request: {out}")
            rows += out
    return rows


# --------------------------------------------------------------------------- nightly job


def nightly(
    spark: Any, cfg: Any, folder: Path, out: Path, model_uri: str
) -> tuple[Any, float, float]:
    """(scored rows as pandas, wall seconds, CPU seconds) of one run_score on `folder`."""
    import pandas as pd

    from fakeface.score_run import run_score

    shutil.rmtree(out, ignore_errors=True)
    cpu0, t0 = tree_cpu_seconds(), time.perf_counter()
    run_score(spark, cfg, str(folder), str(out), RUN_DATE, model_uri)
    seconds, cpu = time.perf_counter() - t0, tree_cpu_seconds() - cpu0
    rows = pd.read_parquet(out / f"run_date={RUN_DATE}")
    return rows, seconds, cpu


def decode_cpu_rate(contents: list[bytes], size: int, max_pixels: int) -> float:
    """Images per CPU-second of `decode_image` alone (one thread, its own CPU time)."""
    from fakeface.decode import decode_image

    started = time.thread_time()
    for data in contents:
        decode_image(data, size, max_pixels)
    return len(contents) / (time.thread_time() - started)


# --------------------------------------------------------------------------- load


def load_run(
    url: str, pool: list[bytes], bad: list[bytes], n_requests: int, threads: int, deadline_s: float
) -> dict[str, Any]:
    """n_requests of 1-8 images over `threads` threads; every 4th request carries a bad file."""
    import requests

    lock = threading.Lock()
    # (HTTP status or the connection error's name, seconds, rows as expected, images)
    results: list[tuple[int | str, float, bool, int]] = []
    stop_at = time.perf_counter() + deadline_s
    counter = iter(range(n_requests))

    def plan(i: int) -> tuple[list[bytes], list[bool]]:
        k = 1 + (i * 5) % 8
        files = [pool[(i * 8 + j) % len(pool)] for j in range(k)]
        expect_ok = [True] * k
        if i % 4 == 0:
            files[-1] = bad[(i // 4) % len(bad)]
            expect_ok[-1] = False
        return files, expect_ok

    def worker() -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                files, expect_ok = plan(i)
                try:
                    code, out, seconds = post(session, url, files, timeout_s=60)
                except requests.RequestException as exc:
                    with lock:
                        results.append((type(exc).__name__, 0.0, False, len(files)))
                    continue
                rows_ok = (
                    code == 200
                    and len(out) == len(files)
                    and all((r["status"] == "ok") == e for r, e in zip(out, expect_ok, strict=True))
                )
                with lock:
                    results.append((code, seconds, rows_ok, len(files)))

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as ex:
        for f in [ex.submit(worker) for _ in range(threads)]:
            f.result()
    wall = time.perf_counter() - started
    codes = [r[0] for r in results]
    latencies = [r[1] for r in results if r[0] == 200]
    return {
        "sent": n_requests,
        "answered": sum(isinstance(c, int) for c in codes),
        "ok": sum(c == 200 for c in codes),
        "5xx": sum(isinstance(c, int) and c >= 500 for c in codes),
        "4xx": sum(isinstance(c, int) and 400 <= c < 500 for c in codes),
        "conn_errors": sum(isinstance(c, str) for c in codes),
        "rows_wrong": sum(1 for c, _, ok, _ in results if c == 200 and not ok),
        "images": sum(r[3] for r in results if r[0] == 200),
        "latencies": latencies,
        "wall": wall,
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=None, help="serving venv to make or reuse")
    parser.add_argument("--workdir", default=None, help="kept when given; default a temp dir")
    parser.add_argument("--train-per-class", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--parity", type=int, default=64, help="JPEGs in the parity set")
    parser.add_argument("--latency", type=int, default=100, help="one-image requests")
    parser.add_argument("--throughput", type=int, default=256, help="files (>= --parity)")
    parser.add_argument("--batch", type=int, default=32, help="images per batched request")
    parser.add_argument("--passes", type=int, default=3, help="throughput passes over the files")
    parser.add_argument("--repeats", type=int, default=2, help="nightly runs per size (fastest)")
    parser.add_argument("--load-requests", type=int, default=320)
    parser.add_argument("--load-threads", type=int, default=8)
    parser.add_argument("--load-seconds", type=float, default=240.0)
    args = parser.parse_args(argv)
    if args.throughput < max(args.parity, args.latency):
        parser.error("--throughput must be >= --parity and --latency")
    setup_environment()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fakeface-bench-serve-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    try:
        return _run(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    import mlflow
    import pandas as pd

    from benchmarks.score import decode_limit, model_limit
    from fakeface.config import load_config
    from fakeface.spark import build_spark_session

    began = time.perf_counter()
    cores = os.cpu_count() or 1
    print(machine_line())
    print(f"workdir: {work}\n")
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        [
            f"spark.master=local[{cores}]",
            "spark.driver_memory=2g",
            f"mlflow.artifact_root={work / 'artifacts'}",
            f"mlflow.registered_model={MODEL_NAME}",
            "train.batch_size=16",
            "train.gradcam_examples=0",
            f"train.feed_cache_dir={work / 'petastorm'}",
        ],
        project_root=work,
    )
    checks: list[tuple[str, bool, str]] = []

    # ---- files
    train_files, bench_files, root, what = source_files(args.train_per_class, args.throughput)
    files = {f"{p.parent.name}/{p.name}": p.read_bytes() for p in bench_files}
    names = list(files)
    bad = bad_files(files[names[0]])
    parity_names = names[: args.parity] + list(bad)
    parity_dir, small_dir, large_dir = (
        work / "parity",
        work / "nightly_small",
        work / "nightly_large",
    )
    for name in names[: args.parity]:
        _link(root / name, parity_dir / name)
        _link(root / name, small_dir / name)
    for name, data in bad.items():
        (parity_dir / name).write_bytes(data)
    for name in names:
        _link(root / name, large_dir / name)
    contents = {**files, **bad}
    print(f"files: {what}; {len(train_files)} for training, {len(names)} others for serving\n")

    # ---- 1. model
    spark = build_spark_session(cfg, "bench-serve")
    server: Server | None = None
    try:
        version, variant, train_s = train_and_register(
            spark, cfg, work, train_files, root, args.epochs
        )
        champion = f"models:/{MODEL_NAME}@champion"
        model_dir = Path(mlflow.artifacts.download_artifacts(champion, dst_path=str(work / "dl")))
        sizes = [
            ["whole folder", folder_bytes(model_dir) / 2**20],
            ["data/model.keras", (model_dir / "data" / "model.keras").stat().st_size / 2**20],
            ["code/", folder_bytes(model_dir / "code") / 2**20],
        ]
        print(
            f"model: `{variant}` version {version} (@champion), trained by run_train on "
            f"{len(train_files)} images in {train_s:.0f} s; downloaded to {model_dir}\n"
        )
        print_table("Model folder", ["part", "MiB"], sizes)
        print()
        requirements = model_dir / "requirements.txt"
        print("requirements.txt: " + ", ".join(read_requirements(requirements)) + "\n")

        # ---- 2. fresh venv
        venv = Path(args.venv).resolve() if args.venv else work / "serve-venv"
        venv_s, reused = ensure_venv(venv, requirements)
        packages = venv_packages(venv)
        leaked = [n for n in FORBIDDEN if n in packages]
        checks.append(("venv holds no pyspark/petastorm/fakeface", not leaked, str(leaked)))
        importable = (
            subprocess.run(
                [str(venv / "bin" / "python"), "-c", "import fakeface"],
                cwd=work,
                env=_clean_env(venv),
                capture_output=True,
            ).returncode
            == 0
        )
        checks.append(
            ("`import fakeface` fails in the venv (outside the model)", not importable, "")
        )
        how = "reused (same requirements)" if reused else f"made in {venv_s:.0f} s"
        print(
            f"serving venv {venv}: {how}, "
            f"{len(packages)} packages; pyspark: {'pyspark' in packages}, "
            f"petastorm: {'petastorm' in packages}, fakeface: {'fakeface' in packages}\n"
        )

        # ---- 3. server
        server = Server(venv, model_dir, work)
        ready_s = server.wait_ready(240)
        import requests

        with requests.Session() as s:
            code, out, first_s = post(s, server.url, [files[names[0]]])
        if code != 200:
            raise SystemExit(f"first request failed: {code} {out}\n{server.tail()}")
        rss_first = server.rss_bytes()
        tree = ", ".join(f"{p.name()} ({p.pid})" for p in server.tree())
        print(
            f"server: {tree}; /ping answered {ready_s:.1f} s after start; first request "
            f"{first_s * 1000:.0f} ms; RSS {rss_first / 2**20:.0f} MiB\n"
        )

        # ---- 4. parity
        parity_contents = [contents[n] for n in parity_names]
        by_server = score_via_server(server.url, parity_contents, 8)
        pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        by_pyfunc = pyfunc.predict(pd.DataFrame({"content": parity_contents}))
        nightly_rows, _, _ = nightly(spark, cfg, parity_dir, work / "out_parity", champion)
        nightly_by_name = {
            "/".join(str(p).split("/")[-2:]) if "/training_" in str(p) else str(p).split("/")[-1]: r
            for p, r in zip(nightly_rows["path"], nightly_rows.to_dict("records"), strict=True)
        }
        paths = [("server", by_server), ("pyfunc", by_pyfunc.to_dict("records"))]
        parity_rows = []
        worst = 0.0
        all_match = True
        status_matches = 0
        for i, name in enumerate(parity_names):
            night = nightly_by_name.get(name)
            values = {"nightly": night}
            values.update({label: rows[i] for label, rows in paths})
            statuses = {k: (v["status"] if v else "missing") for k, v in values.items()}
            ps = {k: (v.get("p_fake") if v else None) for k, v in values.items()}
            ps = {k: (None if p is None or pd.isna(p) else float(p)) for k, p in ps.items()}
            same_status = len(set(statuses.values())) == 1
            if any(p is None for p in ps.values()):
                diff = 0.0 if all(p is None for p in ps.values()) else float("inf")
            else:
                diff = max(ps.values()) - min(ps.values())
            worst = max(worst, diff)
            status_matches += same_status
            all_match &= same_status and diff <= P_TOL
            if name in bad or not same_status or diff > P_TOL:
                err = (values["server"].get("error") or "")[:60] if values["server"] else ""
                parity_rows.append(
                    [
                        name,
                        statuses["server"],
                        statuses["pyfunc"],
                        statuses["nightly"],
                        f"{diff:.1e}",
                        err,
                    ]
                )
        n_ok = sum(1 for n in parity_names if (nightly_by_name.get(n) or {}).get("status") == "ok")
        print_table(
            "Parity: server vs pyfunc in-process vs nightly job (rows shown: bad files and misses)",
            ["file", "server", "pyfunc", "nightly run_score", "max |dp|", "server's error"],
            parity_rows,
        )
        print(
            f"\n{len(parity_names)} files ({n_ok} scored 'ok' by the nightly job); "
            f"statuses equal on all three paths for {status_matches}/{len(parity_names)}; "
            f"max |p_fake difference| {worst:.2e} (limit {P_TOL:g})\n"
        )
        checks.append(("parity", all_match, f"{status_matches}/{len(parity_names)}, {worst:.1e}"))
        del pyfunc

        # ---- 5. latency
        one = [contents[n] for n in names[: args.latency]]
        latencies = []
        with requests.Session() as s:
            post(s, server.url, [one[-1]])  # warm the one-image path
            for data in one:
                code, out, seconds = post(s, server.url, [data])
                if code != 200 or out[0]["status"] != "ok":
                    raise SystemExit(f"latency request failed: {code} {out}")
                latencies.append(seconds)
        print_table(
            f"Latency: {len(one)} one-image requests, sequential, distinct files",
            ["p50 ms", "p95 ms", "mean ms", "max ms"],
            [
                [
                    pct(latencies, 50),
                    pct(latencies, 95),
                    float(np.mean(latencies)) * 1000,
                    max(latencies) * 1000,
                ]
            ],
        )
        print()

        # ---- 6. throughput (server): --passes over the files, the server's CPU time counted
        batch_contents = [contents[n] for n in names]
        with requests.Session() as s:
            post(s, server.url, batch_contents[: args.batch])  # trace the batch shape
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            for _ in range(args.passes):
                for start in range(0, len(batch_contents), args.batch):
                    code, out, _ = post(s, server.url, batch_contents[start : start + args.batch])
                    if code != 200:
                        raise SystemExit(f"throughput request failed: {code} {out}")
            server_s, server_cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
        server_images = len(batch_contents) * args.passes
        server_rate = server_images / server_s
        server_per_cpu = server_images / server_cpu

        # ---- 7. load
        bad_list = list(bad.values())
        load = load_run(
            server.url,
            batch_contents,
            bad_list,
            args.load_requests,
            args.load_threads,
            args.load_seconds,
        )
        rss_end = server.rss_bytes()
        server_alive = server.proc.poll() is None
        server.stop()
        server = None

        # ---- the nightly job on the same files (the server gone): the fastest of --repeats
        t_small = t_large = cpu_small = cpu_large = float("inf")
        for _ in range(args.repeats):
            _, t, cpu = nightly(spark, cfg, small_dir, work / "out_small", champion)
            t_small, cpu_small = min(t_small, t), min(cpu_small, cpu)
            _, t, cpu = nightly(spark, cfg, large_dir, work / "out_large", champion)
            t_large, cpu_large = min(t_large, t), min(cpu_large, cpu)
    finally:
        if server is not None:
            server.stop()
        spark.stop()

    n_small, n_large = args.parity, len(names)
    nightly_rate = (n_large - n_small) / max(t_large - t_small, 1e-9)
    nightly_per_core = nightly_rate / cores
    nightly_per_cpu = (n_large - n_small) / max(cpu_large - cpu_small, 1e-9)

    # ---- limits (this process, Spark and the server gone)
    from fakeface.serving import load_keras_archive, read_settings

    keras_model = load_keras_archive(model_dir / "data" / "model.keras")
    settings = read_settings(model_dir / "data")
    size, max_pixels, batch = settings.image_size, settings.max_pixels, settings.batch_size
    decode_rate = decode_limit(large_dir, size, max_pixels, cores)  # benchmarks/score.py's
    model_rate = model_limit(keras_model, len(names), size, batch)
    both = 1.0 / (1.0 / decode_rate + 1.0 / model_rate)
    decode_cpu = decode_cpu_rate(batch_contents, size, max_pixels)
    model_cpu = model_limit(keras_model, len(names), size, batch, clock=time.process_time)
    both_cpu = 1.0 / (1.0 / decode_cpu + 1.0 / model_cpu)

    n_cpu = cpu_large - cpu_small
    rows = [
        [
            f"server: {args.batch} images/request, 1 client, {server_images} images",
            server_rate,
            server_per_cpu,
            "-",
            f"server tree (mlflow + uvicorn), {server_cpu:.1f} s",
        ],
        [
            f"nightly run_score, raw folder, marginal {n_small}->{n_large}",
            nightly_rate,
            nightly_per_cpu,
            nightly_per_core,
            f"driver + JVM + Python workers, {n_cpu:.1f} s",
        ],
        [
            "limit: decode alone",
            decode_rate,
            decode_cpu,
            decode_rate / cores,
            f"one thread's CPU time; wall: {cores} processes",
        ],
        [
            "limit: model alone (in-memory uint8)",
            model_rate,
            model_cpu,
            model_rate / cores,
            "this process's CPU time (TF threads)",
        ],
        ["limit: decode + model", both, both_cpu, both / cores, "1 / (1/decode + 1/model)"],
    ]
    for row in rows:
        row += [server_per_cpu / row[2], server_per_cpu / row[3] if row[3] != "-" else "-"]
    print_table(
        f"Throughput on the same {len(names)} files (`{variant}`, decoded at {size} px, "
        f"{cores} cores)",
        [
            "path",
            "images/s (wall)",
            "images per CPU-second",
            "images/s per core (wall / cores)",
            "CPU time of",
            "server per CPU-s / this per CPU-s",
            "server per CPU-s / this per core (wall)",
        ],
        rows,
    )
    print(
        f"\nserver: {server_images} images in {server_s:.1f} s wall. nightly (fastest of "
        f"{args.repeats}): t({n_small}) = {t_small:.1f} s, t({n_large}) = {t_large:.1f} s, "
        "Spark session reused (JVM start excluded). 'per core (wall / cores)' is "
        "benchmarks/load.py's figure; it assumes the cores were this run's alone.\n"
    )

    rss_ratio = rss_end / rss_first
    load_ok = (
        load["answered"] == load["sent"]
        and load["5xx"] == 0
        and load["conn_errors"] == 0
        and load["rows_wrong"] == 0
        and load["4xx"] == 0
    )
    checks.append(("load: all answered, no 5xx/4xx/connection error, rows right", load_ok, ""))
    checks.append(("server alive after load", server_alive, ""))
    checks.append(
        (
            f"server RSS end / after first request <= {RSS_LIMIT}",
            rss_ratio <= RSS_LIMIT,
            f"{rss_ratio:.2f}",
        )
    )
    print_table(
        f"Load: {args.load_threads} threads, {load['sent']} requests of 1-8 images "
        f"(every 4th with a bad file), 127.0.0.1",
        [
            "requests answered",
            "5xx",
            "4xx",
            "connection errors",
            "wrong rows",
            "images",
            "wall s",
            "requests/s",
            "images/s",
            "p50 ms",
            "p95 ms",
            "RSS first MiB",
            "RSS end MiB",
            "RSS ratio",
        ],
        [
            [
                f"{load['answered']}/{load['sent']}",
                load["5xx"],
                load["4xx"],
                load["conn_errors"],
                load["rows_wrong"],
                load["images"],
                load["wall"],
                load["answered"] / load["wall"],
                load["images"] / load["wall"],
                pct(load["latencies"], 50),
                pct(load["latencies"], 95),
                rss_first / 2**20,
                rss_end / 2**20,
                rss_ratio,
            ]
        ],
    )
    print()
    print_table(
        "Checks",
        ["check", "result", "detail"],
        [[name, "pass" if ok else "FAIL", detail] for name, ok, detail in checks],
    )
    print(f"\nwhole benchmark: {(time.perf_counter() - began) / 60:.1f} min")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
