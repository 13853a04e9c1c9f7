"""Every error a user can cause prints one line that says what to do, and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


def run(job: str, args: list[str], env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "jobs" / f"{job}.py"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode not in (0, 3), result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("job", "args", "needle"),
    [
        (
            "score",
            ["--input", "/no/such/drop", "--output", "/tmp/x", "--run-date", "2026-01-01"],
            "--input folder not found",
        ),
        (
            "score",
            ["--input", ".", "--output", "/tmp/x", "--run-date", "yesterday"],
            "bad --run-date",
        ),
        (
            "score",
            [
                "--input",
                ".",
                "--output",
                "/tmp/x",
                "--run-date",
                "2026-01-01",
                "--set",
                "score.batch=3",
            ],
            "score.batch",
        ),
        ("promote", ["--data", "/no/such/lake"], "--data folder not found"),
        ("promote", ["--data", ".", "--set", "promote.margin=1"], "promote.margin"),
        ("train", ["--data", "/no/such/lake"], "--data folder not found"),
        ("train", ["--data", ".", "--conf", "/no/such.yaml"], "config file not found"),
        ("ingest", ["--input", ".", "--output", "/tmp/x", "--bogus"], "--bogus"),
    ],
)
def test_bad_flags_and_paths(job: str, args: list[str], needle: str) -> None:
    assert needle in one_error_line(run(job, args))


def test_no_champion_yet_says_what_to_do(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.jpg").write_bytes(b"")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    args = ["--input", str(drop), "--output", str(tmp_path / "out"), "--run-date", "2026-01-01"]
    line = one_error_line(run("score", args, env))
    assert "champion" in line and "promote" in line


@pytest.mark.parametrize("job", ["score", "promote"])
def test_unreachable_tracking_store(job: str, tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    if job == "score":
        args = [
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
            "--run-date",
            "2026-01-01",
        ]
    else:
        args = ["--data", str(tmp_path)]
    assert "unreachable" in one_error_line(run(job, args, env))
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize("job", ["score", "promote"])
def test_cluster_config_with_its_tracking_server_unreachable(job: str, tmp_path: Path) -> None:
    """conf/cluster.yaml names a tracking server this machine cannot reach: one line, before
    a session (or a cluster application) is started."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    conf = ["--conf", str(PROJECT_ROOT / "conf" / "cluster.yaml")]
    if job == "score":
        args = [*conf, "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                "--run-date", "2026-01-01"]  # fmt: skip
    else:
        args = [*conf, "--data", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "jobs" / f"{job}.py"), *args],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    line = one_error_line(result)
    assert "https://mlflow.example.com is unreachable" in line
    assert not (tmp_path / "o").exists()
