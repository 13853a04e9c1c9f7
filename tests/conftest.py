"""Shared fixtures: one local SparkSession for the whole test session, tiny image builders."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the project's MLflow store or the network."""
    store = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///" + str(store / "mlflow.db")
    # Experiments the tests create themselves keep their artifacts here, not in ./mlruns.
    os.environ["FAKEFACE_TEST_ARTIFACTS"] = (store / "artifacts").as_uri()
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(autouse=True)
def _mlflow_environment_restored(_isolated_environment: None):
    """Each test starts from the session's MLflow variables.

    `mlflow.set_tracking_uri` / `set_registry_uri` also write MLFLOW_TRACKING_URI /
    MLFLOW_REGISTRY_URI into os.environ, so a test that points MLflow at a server would
    otherwise hand that server (or its own store) to every job a later test starts.
    """
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def spark(_isolated_environment: None):
    """One local-mode SparkSession shared by every Spark test."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("fakeface-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.files.openCostInBytes", "65536")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def cfg(tmp_path: Path):
    """The project's local config with small, fast settings for tests."""
    from fakeface.config import load_config

    return load_config(
        PROJECT_ROOT / "conf" / "local.yaml",
        ["ingest.image_size=32", "ingest.arrow_batch_size=8"],
        project_root=tmp_path,
    )


def encode(array: np.ndarray, fmt: str = "JPEG", **save_args) -> bytes:
    """Encode a uint8 array with Pillow."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save_args)
    return buf.getvalue()


def gradient_image(width: int = 64, height: int = 48) -> np.ndarray:
    """A deterministic RGB image whose orientation is visible in its corners."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 60)],
        axis=-1,
    ).astype(np.uint8)
