"""The tracking store: outages told apart from rejected requests; a server that serves artifacts."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from fakeface.registry import is_tracking_failure, tracking_failure_line
from tests.conftest import PROJECT_ROOT
from tests.faults import mlflow_server
from tests.test_train import ingested  # noqa: F401  (the tiny ingested corpus, 32 images at 48 px)


def _wrapped(cause: BaseException) -> Exception:
    try:
        raise cause
    except BaseException as inner:
        try:
            raise RuntimeError("while logging metrics") from inner
        except RuntimeError as outer:
            return outer


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (
            MlflowException(
                "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed"
                " with exception HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries"
            ),
            True,
        ),
        (MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE), True),
        (requests.ConnectionError("connection refused"), True),
        (sqlite3.OperationalError("disk I/O error"), True),
        (_wrapped(requests.ConnectionError("reset")), True),
        (MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE), False),
        (MlflowException("Registered Model with name=x already exists"), False),
        (ValueError("a bug of ours"), False),
    ],
)
def test_outages_are_told_from_rejected_requests(exc: BaseException, outage: bool) -> None:
    assert is_tracking_failure(exc) is outage


def test_failure_line_is_one_line_with_the_store_and_what_to_do() -> None:
    line = tracking_failure_line("http://h:5000", MlflowException("API request to x failed\nmore"))
    assert "\n" not in line and "http://h:5000" in line and "rerun" in line


# ------------------------------------------------- a tracking server that serves the artifacts


def test_a_local_artifact_root_is_left_to_a_tracking_server(tmp_path, monkeypatch) -> None:
    """Through a server, a local artifact folder would be written by the client alone."""
    from fakeface.config import load_config
    from fakeface.registry import experiment_artifact_location

    cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml", project_root=tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + str(tmp_path / "m.db"))
    assert (
        experiment_artifact_location(cfg, "a b")
        == (tmp_path / "var/mlflow/artifacts").as_uri() + "/a_b"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert experiment_artifact_location(cfg, "a b") is None
    cfg.mlflow.artifact_root = "s3://bucket/artifacts"
    assert experiment_artifact_location(cfg, "a b") == "s3://bucket/artifacts/a_b"


def run_job_elsewhere(job: str, args: list[str], cwd: Path, tracking_uri: str):
    """A job as the nightly runs it, from a folder that is not the checkout."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    cmd = [sys.executable, str(PROJECT_ROOT / "jobs" / f"{job}.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_promote_score_and_report_through_a_server_that_serves_artifacts(
    ingested: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Train, register, promote and score as a cluster's driver does: artifacts only over HTTP
    (mlflow-artifacts: URIs), from a working directory that is not the checkout."""
    from mlflow.tracking import MlflowClient

    from tests.test_score import read_output

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    name = f"served-{uuid.uuid4().hex[:8]}"
    common = [
        "--conf", str(PROJECT_ROOT / "conf" / "local.yaml"),
        "--set", f"mlflow.registered_model={name}",
        "--set", f"mlflow.experiment={name}", "--set", f"mlflow.nightly_experiment={name}-nightly",
        "--set", "ingest.image_size=48",
    ]  # fmt: skip
    with mlflow_server(tmp_path / "server", serve_artifacts=True) as uri:
        train = run_job_elsewhere(
            "train",
            [
                *common, "--data", str(ingested), "--variant", "custom", "--epochs", "1",
                "--set", "train.batch_size=8", "--set", "train.eval_fraction=0.25",
                "--set", "train.val_fraction=0.25", "--set", "train.gradcam_examples=1",
                "--set", f"train.feed_cache_dir={tmp_path / 'petastorm'}",
            ],
            elsewhere,
            uri,
        )  # fmt: skip
        assert train.returncode == 0, train.stderr[-4000:]
        promote = run_job_elsewhere(
            "promote", [*common, "--data", str(ingested), "--force"], elsewhere, uri
        )
        assert promote.returncode == 0, promote.stderr[-4000:]
        out = tmp_path / "scores"
        score = run_job_elsewhere(
            "score",
            [
                *common, "--input", str(ingested / "run_date=2026-01-01"),
                "--output", str(out), "--run-date", "2026-01-02",
            ],
            elsewhere,
            uri,
        )  # fmt: skip
        assert score.returncode == 0, score.stderr[-4000:]

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        champion = client.get_model_version_by_alias(name, "champion")
        run = client.get_run(champion.run_id)
        report_html = elsewhere / "report.html"
        report = subprocess.run(
            [sys.executable, "-m", "fakeface.console", "report", "--run-id", champion.run_id,
             "--out", str(report_html)],
            cwd=elsewhere, capture_output=True, text=True, timeout=300,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        )  # fmt: skip
        assert report.returncode == 0, report.stderr[-3000:]
        experiments = [client.get_experiment_by_name(n) for n in (name, f"{name}-nightly")]

    # Every artifact went through the server: mlflow-artifacts: URIs, files in its destination.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    assert all(e.artifact_location.startswith("mlflow-artifacts:") for e in experiments)
    served = tmp_path / "server" / "artifacts"
    assert any(served.rglob("MLmodel")) and any(served.rglob("eval_image_ids.txt"))
    # ... and nowhere a driver could have read them directly.
    assert not (PROJECT_ROOT / "var" / "mlflow" / "artifacts" / name).exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["report.html"]
    # The night's output is exact: one row per ingested image, all scored by the champion.
    df = read_output(out)
    assert len(df) == 32 and df.path.is_unique
    assert (df.status == "ok").all() and df.p_fake.between(0, 1).all()
    assert (df.model_name == name).all() and (df.model_version == champion.version).all()
    assert "rows=32" in score.stdout
    assert "<img" in report_html.read_text()
