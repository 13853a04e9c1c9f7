"""The scoring job under spark-submit on a real Spark standalone cluster on 127.0.0.1.

One master, one worker (1 core, 1 GiB), both from the pyspark package's own Spark. The
executor gets the model only through the broadcast: no MLflow access from the worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, encode
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[dict]:
    """A running master + worker; yields the master URL and its web UI port."""
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp_path / "logs"),
        "SPARK_WORKER_DIR": str(tmp_path / "work"),
        "PYSPARK_PYTHON": sys.executable,
    }
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "daemons.log"
    master_cmd = [
        spark_class, "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port),
    ]  # fmt: skip
    worker_cmd = [
        spark_class, "org.apache.spark.deploy.worker.Worker", master_url,
        "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
        "--webui-port", str(worker_ui), "--work-dir", str(tmp_path / "work"),
    ]  # fmt: skip
    procs: list[subprocess.Popen] = []
    try:
        with logs.open("ab") as log:
            for cmd in (master_cmd, worker_cmd):
                # A session of its own, so stop() can kill the JVM that spark-class starts.
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        deadline = time.monotonic() + 90
        while True:
            try:
                workers = cluster_state(ui_port).get("workers", [])
                if any(w.get("state") == "ALIVE" for w in workers):
                    break
            except OSError:
                pass  # the master's UI is not up yet
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"cluster did not start ({dead}): {logs.read_text()[-3000:]}")
            time.sleep(1)
        yield {"url": master_url, "ui_port": ui_port}
    finally:
        for proc in reversed(procs):
            stop(proc)


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

    submit = Path(sys.executable).parent / "spark-submit"
    cmd = [
        str(submit), "--master", standalone_cluster["url"],
        "--driver-memory", "1g", "--conf", "spark.executor.memory=768m",
        "--driver-java-options",
        f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT / 'conf' / 'log4j2.properties'}",
        str(PROJECT_ROOT / "jobs" / "score.py"),
        "--input", str(drop), "--output", str(out), "--run-date", "2026-04-01",
        "--model", f"models:/{name}@champion",
        "--set", "ingest.image_size=32", "--set", "score.max_error_share=0.5",
        "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
    }
    env.pop("SPARK_HOME", None)  # spark-submit finds the pyspark package's own
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
