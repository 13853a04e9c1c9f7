"""Faults outside our data: a tracking store that goes away, a model artifact gone bad.

The store is a real `mlflow server` behind a TCP proxy that cuts itself when the job sends
a chosen request (tests/faults.py): the fault lands mid-run with no hook in the job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from fakeface.errors import ModelError
from tests.conftest import PROJECT_ROOT, encode
from tests.faults import CuttableProxy, mlflow_server
from tests.test_score import (
    _load_job,
    _SharedSession,
    bright,
    check_rows,
    dark,
    log_tiny_model,
    read_output,
    register_version,
    write,
)
from tests.test_train import ingested  # noqa: F401  (the module's tiny ingested corpus)

pytestmark = pytest.mark.reliability

# A cut store must fail the call at once, not after MLflow's minutes of retries.
NO_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


@pytest.fixture
def tracking_server(tmp_path: Path, monkeypatch):
    """A real MLflow server for one test; the process-wide MLflow URI is put back after."""
    import mlflow

    before, before_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with mlflow_server(tmp_path / "server") as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for key, value in NO_RETRIES.items():
            monkeypatch.setenv(key, value)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(before)
            mlflow.set_registry_uri(before_registry)


def model_folder(name: str, version: str) -> Path:
    """The local folder holding a registered version's MLflow model files."""
    from mlflow.tracking import MlflowClient

    uri = MlflowClient().get_model_version_download_uri(name, version)
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme in ("", "file"), uri
    return Path(urllib.parse.unquote(parsed.path))


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "archive deleted": (lambda d: (d / "data" / "model.keras").unlink(), "no Keras archive"),
    "archive truncated": (lambda d: truncate_half(d / "data" / "model.keras"), "corrupt Keras"),
    "weights byte flipped": (
        lambda d: flip_middle_byte(d / "data" / "model.keras"),
        "corrupt Keras",
    ),
    "MLmodel garbage": (
        lambda d: (d / "MLmodel").write_text("{{{ not yaml"),
        "no readable MLmodel",
    ),
    "folder deleted": (lambda d: shutil.rmtree(d), "no files at its artifact location"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_model_artifact_is_refused_before_any_row(
    spark, cfg, tmp_path: Path, damage: str
) -> None:
    from fakeface.score_run import run_score

    uri, run_id = log_tiny_model()
    name = "damaged-" + damage.replace(" ", "-")
    version = register_version(uri, name, run_id, alias="champion")
    break_it, needle = DAMAGE[damage]
    break_it(model_folder(name, version))
    drop = tmp_path / "drop"
    write(drop / "a.jpg", encode(bright(1)))
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=needle) as info:
        run_score(spark, cfg, str(drop), str(out), "2026-03-01", f"models:/{name}@champion")
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_store_lost_after_the_model_is_resolved_the_night_still_lands(
    spark, tracking_server: str, tmp_path: Path, monkeypatch, capsys, request
) -> None:
    """Scores are the product, the nightly MLflow run is telemetry: rows commit, exit 0, the
    summary line says mlflow=FAILED and the summary file is still written."""
    from fakeface import spark as spark_module
    from fakeface.cli import run_job

    uri, run_id = log_tiny_model()
    version = register_version(uri, "store-lost", run_id, alias="champion")
    proxy = CuttableProxy(int(urllib.parse.urlparse(tracking_server).port), cut_on=b"runs/create")
    request.addfinalizer(proxy.cut)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.uri)
    monkeypatch.setattr(
        spark_module, "build_spark_session", lambda cfg, suffix="": _SharedSession(spark)
    )
    drop = tmp_path / "drop"
    for i in range(3):
        write(drop / f"bright_{i}.jpg", encode(bright(i)))
        write(drop / f"dark_{i}.jpg", encode(dark(i)))
    write(drop / "broken.jpg", b"nope")
    out = tmp_path / "scores"
    args = [
        "--input", str(drop), "--output", str(out), "--run-date", "2026-03-02",
        "--model", "models:/store-lost@champion",
        "--set", "ingest.image_size=32", "--set", "score.max_error_share=0.5",
        "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}",
    ]  # fmt: skip
    assert run_job(_load_job("score").main, args) == 0
    assert proxy.is_cut.is_set()  # the store really went away mid-run
    captured = capsys.readouterr()
    assert "score 2026-03-02:" in captured.out and "mlflow=FAILED" in captured.out
    check_rows(read_output(out), {"name": "store-lost", "version": version}, n_files=7)
    summaries = list((out / "_summaries").glob("*.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["n_images"] == 7 and summary.get("mlflow_error")


def run_train_job(data: Path, tmp_path: Path, tracking_uri: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, str(PROJECT_ROOT / "jobs" / "train.py"),
        "--conf", str(PROJECT_ROOT / "conf" / "local.yaml"),
        "--data", str(data), "--variant", "custom", "--epochs", "2",
        "--set", "train.batch_size=8", "--set", "train.eval_fraction=0.25",
        "--set", "train.val_fraction=0.25", "--set", "train.gradcam_examples=1",
        "--set", f"train.feed_cache_dir={tmp_path / 'petastorm'}",
        "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}",
        "--set", "mlflow.registered_model=store-lost-train",
    ]  # fmt: skip
    env = {**os.environ, **NO_RETRIES, "MLFLOW_TRACKING_URI": tracking_uri}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)


def model_versions(tracking_uri: str, name: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return client.search_model_versions(f"name='{name}'")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_store_lost_mid_training_is_one_line_and_a_rerun_recovers(
    ingested: Path,  # noqa: F811
    tracking_server: str,
    tmp_path: Path,
    request,
) -> None:
    # Cut when the first epoch's metrics are sent: the run exists, training is under way.
    proxy = CuttableProxy(int(urllib.parse.urlparse(tracking_server).port), cut_on=b'"val_loss"')
    request.addfinalizer(proxy.cut)
    failed = run_train_job(ingested, tmp_path, proxy.uri)
    assert proxy.is_cut.is_set()
    assert failed.returncode == 1, failed.stderr[-3000:]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "failed mid-run" in errors[0], failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    assert model_versions(tracking_server, "store-lost-train") == []

    # The store is back (no proxy): the same command trains and registers one version.
    rerun = run_train_job(ingested, tmp_path, tracking_server)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    versions = model_versions(tracking_server, "store-lost-train")
    assert len(versions) == 1 and "threshold" in versions[0].tags
