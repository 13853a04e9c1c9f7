"""`fakeface report`: a self-contained HTML page from a run in the test's own MLflow store."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from fakeface import console
from fakeface.errors import FakefaceError
from fakeface.evaluate import plot_score_histogram
from fakeface.registry import configure_mlflow, ensure_experiment
from fakeface.report import _safe_uri, render_report


@pytest.fixture
def logged_run(cfg, tmp_path: Path):
    """A cross-validation-like run: params, per-epoch metrics, artifacts, two fold children."""
    import mlflow

    client = configure_mlflow(cfg)
    # The experiment keeps its artifacts under tmp_path (the default one would use ./mlruns).
    ensure_experiment(cfg, "report-test")
    y = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.6, 0.8, 0.3, 0.9, 0.2])
    art = tmp_path / "art"
    plot_score_histogram(y, scores, 0.5, art / "evaluation" / "score_histogram.png")
    with (art / "evaluation" / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "path", "label", "level", "p_fake", "is_fake"])
        for i in range(25):  # more rows than the preview shows
            label = i % 2
            level = ("easy", "hard")[i % 4 // 2] if label else "real"
            writer.writerow(
                [f"id{i:02d}", f"p/{i}.jpg", label, level, f"{0.1 + label * 0.7}", label]
            )
    with mlflow.start_run(run_name="train-custom-cv2") as parent:
        mlflow.set_tags({"variant": "custom", "job": "train-cv"})
        mlflow.log_params({"train.epochs": 3, "train.variant": "custom", "run.folds": 2})
        for epoch, (loss, val_loss) in enumerate([(0.69, 0.70), (0.5, 0.61), (0.41, 0.58)]):
            mlflow.log_metrics(
                {"loss": loss, "val_loss": val_loss, "auc": 0.6 + epoch / 10}, step=epoch
            )
        mlflow.log_metrics({"eval_accuracy": 0.8125, "eval_accuracy_easy": 0.9, "eval_auc": 0.875})
        mlflow.log_metrics({"cv_accuracy_hard_mean": 0.61, "cv_accuracy_hard_std": 0.05})
        mlflow.log_artifacts(str(art))
        mlflow.log_text("| variant | accuracy |\n|---|---|\n| custom | 0.81 |", "summary.md")
        for k, acc in enumerate([0.8, 0.9]):
            with mlflow.start_run(run_name=f"custom-fold{k}", nested=True):
                mlflow.set_tag("variant", "custom")
                mlflow.log_metrics({"eval_accuracy": acc, "eval_auc": acc + 0.05})
    return client, parent.info.run_id


def test_render_report_is_self_contained(logged_run):
    client, run_id = logged_run
    page = render_report(client, run_id)
    assert page.startswith("<!DOCTYPE html>") and "train-custom-cv2" in page
    assert "eval_accuracy" in page and "0.8125" in page  # metrics table
    assert "0.6100 ± 0.0500" in page  # per-level table from cv_*_mean / _std
    assert "custom-fold0" in page and "0.8500 ± 0.0500" in page  # folds: mean ± population std
    assert "best 0.4100 at step 2 of 3" in page  # per-epoch history of loss
    assert page.count("data:image/png;base64,") >= 2  # the artifact + the history plot
    assert "first 20 of 25 rows" in page and "id19" in page and "id20" not in page
    assert "train.epochs" in page and "| custom | 0.81 |" in page
    # nothing outside the page: no remote src/href/url()/@import
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "url(" not in page and "@import" not in page
    assert "<script" not in page


def test_report_cli_writes_file_and_unknown_run_is_one_line(logged_run, tmp_path, capsys):
    _, run_id = logged_run
    out = tmp_path / "reports" / "run.html"
    assert console.main(["report", "--run-id", run_id, "--out", str(out)]) == 0
    assert out.read_text().count("data:image/png;base64,") >= 2
    capsys.readouterr()
    code = console.main(["report", "--run-id", "0" * 32, "--out", str(tmp_path / "x.html")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert re.fullmatch(r"error: run 0{32} not found in sqlite:///.+mlflow\.db", err[0])
    assert not (tmp_path / "x.html").exists()


def test_render_report_unknown_run_raises(cfg):
    client = configure_mlflow(cfg)
    with pytest.raises(FakefaceError, match="run nope not found in sqlite:///"):
        render_report(client, "nope")


def test_credentials_never_reach_the_page():
    assert _safe_uri("https://user:secret@mlflow.example/x") == "https://mlflow.example/x"
    assert _safe_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
