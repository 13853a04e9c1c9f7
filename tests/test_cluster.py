"""The scoring job under spark-submit on a real Spark standalone cluster on 127.0.0.1.

One master, one worker (1 core, 1 GiB), both from the pyspark package's own Spark. The
executor gets the model only through the broadcast: no MLflow access from the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, encode
from tests.faults import free_port
from tests.test_score import (
    bright,
    check_rows,
    dark,
    log_tiny_model,
    read_output,
    register_version,
    write,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPARK_HOME = Path(__import__("pyspark").__file__).resolve().parent


def cluster_state(ui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json", timeout=5) as resp:
        return json.loads(resp.read())


def stop(proc: subprocess.Popen) -> None:
    """Terminate a daemon's whole process group (spark-class execs the JVM in it)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def running_cluster(
    tmp_path: Path,
    n_workers: int = 1,
    worker_env: dict[str, str | None] | None = None,
    cores: int = 1,
    memory: str = "1g",
) -> Iterator[dict]:
    """A running master + `n_workers` workers (`cores` cores, `memory` each).

    By default the daemons' Python is this venv's (PYSPARK_PYTHON); `worker_env` overrides
    their environment (None removes a variable), and then they also start outside the
    checkout. Yields the master URL, its web UI port, and per worker its process, web UI port
    and work folder (the executors' working directories are inside it).
    """
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp_path / "logs"),
        "SPARK_WORKER_DIR": str(tmp_path / "work"),
        "PYSPARK_PYTHON": sys.executable,
    }
    for key, value in (worker_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cwd = tmp_path if worker_env is not None else None
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "daemons.log"
    master_cmd = [
        spark_class, "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port),
    ]  # fmt: skip
    worker_uis = [free_port() for _ in range(n_workers)]

    def worker_cmd(i: int, worker_ui: int) -> list[str]:
        return [
            spark_class, "org.apache.spark.deploy.worker.Worker", master_url,
            "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
            "--webui-port", str(worker_ui), "--work-dir", str(tmp_path / f"work{i}"),
        ]  # fmt: skip

    worker_cmds = [worker_cmd(i, worker_ui) for i, worker_ui in enumerate(worker_uis)]
    procs: list[subprocess.Popen] = []
    try:
        with logs.open("ab") as log:
            for cmd in (master_cmd, *worker_cmds):
                # A session of its own, so stop() can kill the JVM that spark-class starts
                # (and, for a worker, the executors and Python workers it forks).
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        cwd=cwd,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 90
        while True:
            try:
                workers = cluster_state(ui_port).get("workers", [])
                if sum(w.get("state") == "ALIVE" for w in workers) == n_workers:
                    break
            except OSError:
                pass  # the master's UI is not up yet
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"cluster did not start ({dead}): {logs.read_text()[-3000:]}")
            time.sleep(1)
        yield {
            "url": master_url,
            "ui_port": ui_port,
            "workers": [
                {"proc": proc, "ui_port": worker_ui, "work_dir": tmp_path / f"work{i}"}
                for i, (proc, worker_ui) in enumerate(zip(procs[1:], worker_uis, strict=True))
            ],
        }
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[dict]:
    """A running master + one worker."""
    with running_cluster(tmp_path, 1) as cluster:
        yield cluster


def submit_score(
    master_url: str, drop: Path, out: Path, name: str, tmp_path: Path, *extra: str
) -> list[str]:
    """The nightly spark-submit command line for the scoring job against `master_url`."""
    submit = Path(sys.executable).parent / "spark-submit"
    return [
        str(submit), "--master", master_url,
        "--driver-memory", "1g", "--conf", "spark.executor.memory=768m", *extra,
        "--driver-java-options",
        f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT / 'conf' / 'log4j2.properties'}",
        str(PROJECT_ROOT / "jobs" / "score.py"),
        "--input", str(drop), "--output", str(out), "--run-date", "2026-04-01",
        "--model", f"models:/{name}@champion",
        "--set", "ingest.image_size=32", "--set", "score.max_error_share=0.5",
        "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}",
    ]  # fmt: skip


def submit_env() -> dict[str, str]:
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
    }
    env.pop("SPARK_HOME", None)  # spark-submit finds the pyspark package's own
    return env


@pytest.mark.timeout(180)
def test_score_job_on_standalone_cluster(standalone_cluster: dict, tmp_path: Path) -> None:
    uri, run_id = log_tiny_model()
    name = "cluster-tests"
    version = register_version(uri, name, run_id, alias="champion")
    drop = tmp_path / "drop"
    for i in range(3):
        write(drop / f"bright_{i}.jpg", encode(bright(i)))
        write(drop / f"dark_{i}.png", encode(dark(i), "PNG"))
    write(drop / "broken.jpg", b"not a jpeg")
    out = tmp_path / "scores"

    cmd = submit_score(standalone_cluster["url"], drop, out, name, tmp_path)
    env = submit_env()
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "score 2026-04-01:" in result.stdout and "rows=7" in result.stdout

    df = read_output(out)
    check_rows(df, {"name": name, "version": version}, n_files=7)
    assert (df.status == "ok").sum() == 6
    flagged = {p.rsplit("/", 1)[-1] for p in df[df.is_fake == True].path}  # noqa: E712
    assert flagged == {f"bright_{i}.jpg" for i in range(3)}
    apps = cluster_state(standalone_cluster["ui_port"]).get("completedapps", [])
    assert any(app.get("name") == "fakeface-score" for app in apps), apps


def running_tasks_by_worker_ui(driver_ui: int) -> dict[int, int]:
    """Active tasks per executor, keyed by the web UI port of the worker that runs it."""
    base = f"http://127.0.0.1:{driver_ui}/api/v1/applications"
    with urllib.request.urlopen(base, timeout=5) as resp:
        app_id = json.loads(resp.read())[0]["id"]
    with urllib.request.urlopen(f"{base}/{app_id}/executors", timeout=5) as resp:
        executors = json.loads(resp.read())
    active: dict[int, int] = {}
    for ex in executors:
        log_url = ex.get("executorLogs", {}).get("stdout", "")
        if ex.get("id") == "driver" or not log_url:
            continue
        worker_ui = int(urllib.parse.urlsplit(log_url).port or 0)
        active[worker_ui] = active.get(worker_ui, 0) + int(ex.get("activeTasks", 0))
    return active


@pytest.mark.reliability
@pytest.mark.timeout(420)
def test_worker_killed_mid_job_the_night_still_completes_exactly(tmp_path: Path) -> None:
    """SIGKILL a worker's JVM and its executor while that executor runs a scoring task (its
    Python workers, in their own process group, exit when the executor's pipes close):
    Spark reruns the lost task on the other worker; the output holds every file once."""
    uri, run_id = log_tiny_model()
    name = "cluster-kill-tests"
    version = register_version(uri, name, run_id, alias="champion")
    drop = tmp_path / "drop"
    n_good = 40
    for i in range(n_good // 2):
        write(drop / f"bright_{i}.jpg", encode(bright(i)))
        write(drop / f"dark_{i}.png", encode(dark(i), "PNG"))
    write(drop / "broken.jpg", b"not a jpeg")
    out = tmp_path / "scores"
    driver_ui = free_port()

    with running_cluster(tmp_path, n_workers=2) as cluster:
        cmd = submit_score(
            cluster["url"], drop, out, name, tmp_path,
            "--conf", "spark.ui.enabled=true", "--conf", f"spark.ui.port={driver_ui}",
        )  # fmt: skip
        out_log, err_log = tmp_path / "job.out", tmp_path / "job.err"
        with out_log.open("w") as out_file, err_log.open("w") as err_file:
            job = subprocess.Popen(
                cmd, cwd=tmp_path, env=submit_env(), stdout=out_file, stderr=err_file, text=True
            )
        try:
            victim = None
            deadline = time.monotonic() + 150
            while victim is None and job.poll() is None and time.monotonic() < deadline:
                try:
                    tasks = running_tasks_by_worker_ui(driver_ui)
                except (OSError, ValueError, IndexError, KeyError):
                    tasks = {}  # the driver's UI or the app is not up yet
                busy = [w for w in cluster["workers"] if tasks.get(w["ui_port"])]
                if busy:
                    victim = busy[0]
                    os.killpg(victim["proc"].pid, signal.SIGKILL)
                else:
                    time.sleep(0.2)
            job.wait(timeout=120)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        stdout, stderr = out_log.read_text(), err_log.read_text()
        assert victim is not None, f"no task was ever seen running: {stderr[-3000:]}"
        workers = cluster_state(cluster["ui_port"]).get("workers", [])

    assert job.returncode == 0, stderr[-4000:]
    # The master saw the worker go, and the driver lost (and replaced) an executor's work.
    assert sum(w.get("state") == "ALIVE" for w in workers) == 1, workers
    n_files = n_good + 1
    assert f"rows={n_files}" in stdout
    df = read_output(out)
    check_rows(df, {"name": name, "version": version}, n_files=n_files)
    assert df.path.is_unique
    assert (df.status == "ok").sum() == n_good
    flagged = {p.rsplit("/", 1)[-1] for p in df[df.is_fake == True].path}  # noqa: E712
    assert flagged == {f"bright_{i}.jpg" for i in range(n_good // 2)}


# ------------------------------------------ a cluster whose machines never saw the project


def env_archive_path() -> Path:
    from importlib.metadata import version

    return PROJECT_ROOT / "dist" / f"fakeface-{version('fakeface')}-env.tar.gz"


@pytest.fixture(scope="session")
def env_archive() -> Path:
    """The packed environment `make package` builds (in seconds when nothing changed).

    `-o .venv/.installed`: never reinstall the venv this test session runs in.
    """
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "package"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    path = env_archive_path()
    assert path.is_file(), done.stdout[-3000:]
    return path


def bare_worker_env() -> dict[str, str | None]:
    """A worker machine's environment: no PYSPARK_PYTHON, nothing of this checkout on PATH."""
    path = [
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and not Path(p).resolve().is_relative_to(PROJECT_ROOT)
    ]
    gone = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {**dict.fromkeys(gone), "PATH": os.pathsep.join(path)}


def archive_conf(tmp_path: Path, master_url: str, archive: Path, name: str) -> Path:
    """conf/standalone.yaml (conf/cluster.yaml in client mode), on one 1-core worker."""
    conf = tmp_path / "conf" / "cluster-test.yaml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f"""extends: {PROJECT_ROOT / "conf" / "standalone.yaml"}
spark:
  master: {master_url}
  driver_memory: 1g
  shuffle_partitions: 2
  conf:
    spark.executor.cores: "1"
    spark.executor.memory: 768m
    spark.executor.memoryOverhead: 384m
    spark.archives: {archive}#environment
ingest:
  image_size: 32
mlflow:
  registered_model: {name}
  artifact_root: {tmp_path / "artifacts"}
score:
  max_error_share: 0.5
"""
    )
    return conf


def executor_environments_of(stdout: str) -> list[dict]:
    return [json.loads(line[len("executor ") :]) for line in stdout.splitlines()
            if line.startswith("executor {")]  # fmt: skip


@pytest.mark.timeout(1500)
def test_nightly_on_a_cluster_whose_workers_never_saw_the_project(
    env_archive: Path, tmp_path: Path, request
) -> None:
    """The worker has no route to this venv: the executors run the shipped archive's Python,
    and jobs/nightly.sh on conf/cluster.yaml ingests and scores the drop exactly."""
    from fakeface.config import load_config
    from fakeface.spark import submit_options

    def drop_unpacked() -> None:  # 2.7 GB per executor: not kept with the test's tmp_path
        for unpacked in tmp_path.glob("work*/app-*/*/environment"):
            shutil.rmtree(unpacked, ignore_errors=True)

    request.addfinalizer(drop_unpacked)

    worker_env = bare_worker_env()
    bare = {k: v for k, v in {**os.environ, **worker_env}.items() if v is not None}
    for module in ("fakeface", "tensorflow"):  # the worker's own Python has neither
        probe = subprocess.run(
            ["python3", "-c", f"import {module}"], cwd=tmp_path, env=bare, capture_output=True
        )
        assert probe.returncode != 0, f"the worker's python3 imports {module}"

    name = "cluster-archive"
    uri, run_id = log_tiny_model()
    version = register_version(uri, name, run_id, alias="champion")
    drop = tmp_path / "drops" / "2026-04-01"
    for i in range(3):
        write(drop / f"bright_{i}.jpg", encode(bright(i)))
        write(drop / f"dark_{i}.png", encode(dark(i), "PNG"))
    write(drop / "broken.jpg", b"not a jpeg")
    lake = tmp_path / "lake"
    # Left to themselves the executors would run the worker's python3, and fail: only the
    # config's spark.pyspark.python (./environment/bin/python, from the archive) beats it.
    env = {**submit_env(), "PYSPARK_PYTHON": "python3"}

    with running_cluster(tmp_path, 1, worker_env=worker_env) as cluster:
        conf = archive_conf(tmp_path, cluster["url"], env_archive, name)
        submit = Path(sys.executable).parent / "spark-submit"
        opts = submit_options(load_config(conf), sys.executable)
        check = subprocess.run(
            [str(submit), *opts, str(PROJECT_ROOT / "jobs" / "check_env.py"), "--conf", str(conf)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr[-4000:]
        nightly = subprocess.run(
            ["bash", str(PROJECT_ROOT / "jobs" / "nightly.sh"), "2026-04-01"],
            cwd=tmp_path,
            env={
                **env, "CONF": str(conf), "PYTHON": sys.executable,
                "DROP_ROOT": str(tmp_path / "drops"), "LAKE_ROOT": str(lake),
            },
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert nightly.returncode == 0, nightly.stderr[-4000:]
        work = cluster["workers"][0]["work_dir"]

    # The executors ran the unpacked archive, in their own working folders on the worker.
    envs = executor_environments_of(check.stdout)
    assert envs, check.stdout
    for found in envs:
        prefix = Path(found["prefix"])
        assert prefix == Path(found["cwd"]) / "environment", found
        assert prefix.is_relative_to(work), found
        assert Path(found["fakeface"]).is_relative_to(prefix / "lib"), found
        assert Path(found["executable"]).is_relative_to(prefix), found
        assert found["tensorflow"] and found["python"].startswith("3.11"), found
    # Each application's executor unpacked it (check_env, ingest, score).
    logs = sorted(work.glob("app-*/*/stderr"))
    assert len(logs) == 3 and all("Unpacking an archive" in p.read_text() for p in logs), logs

    assert "ingest 2026-04-01:" in nightly.stdout and "rows=7" in nightly.stdout
    ingested = read_output(lake / "ingested")
    assert len(ingested) == 7 and (ingested.status == "ok").sum() == 6
    df = read_output(lake / "scores")
    check_rows(df, {"name": name, "version": version}, n_files=7)
    assert (df.status == "ok").sum() == 6
    flagged = {p.rsplit("/", 1)[-1] for p in df[df.is_fake == True].path}  # noqa: E712
    assert flagged == {f"bright_{i}.jpg" for i in range(3)}
