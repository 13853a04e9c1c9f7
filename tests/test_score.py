"""Scoring: numpy core, model packing, the scoring job on local Spark, safety and reruns.

The models here are tiny and deterministic: mean brightness -> sigmoid, so bright images
are "fake". They are logged and registered through MLflow like the training job does
(test_promote.py and test_cluster.py import the helpers below).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import pytest

from fakeface.errors import ModelError
from tests.conftest import PROJECT_ROOT, encode

THRESHOLD = 0.5
MODEL_TAGS = {"variant": "tiny", "input_size": 32, "eval_accuracy": 1.0, "eval_auc": 1.0}

# --------------------------------------------------------------------------- model helpers


def tiny_model(sign: float = 1.0, gain: float = 4.0):
    """uint8 (N, H, W, 3) -> sigmoid(sign * gain * (sum of channel means in [0,1] - 1.5))."""
    import keras

    from fakeface.models.layers import CastToFloat32

    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = CastToFloat32(name="to_float32")(inputs)  # a fakeface custom layer: tests registration
    x = keras.layers.Resizing(16, 16, name="resize")(x)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    dense = keras.layers.Dense(1, activation="sigmoid", name="score")
    outputs = dense(x)
    model = keras.Model(inputs, outputs, name="tiny")
    w = sign * gain
    dense.set_weights([np.full((3, 1), w, np.float32), np.array([-1.5 * w], np.float32)])
    return model


def image_signature(shape: tuple[int, ...] = (-1, -1, -1, 3), dtype: str = "uint8"):
    """An MLflow tensor signature for image input and one probability out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(dtype), shape, "image")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1))]),
    )


def use_tests_experiment() -> None:
    """The session store's `tests-models` experiment, its artifacts in the session's folder."""
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    if mlflow.get_experiment_by_name("tests-models") is None:
        location = os.environ["FAKEFACE_TEST_ARTIFACTS"] + "/tests-models"
        mlflow.create_experiment("tests-models", artifact_location=location)
    mlflow.set_experiment("tests-models")


def log_tiny_model(
    sign: float = 1.0,
    gain: float = 4.0,
    signature: Any = "default",
    eval_ids: list[str] | None = None,
) -> tuple[str, str]:
    """Log a tiny model in a run like training does; return (model URI, run id)."""
    import hashlib

    import mlflow

    use_tests_experiment()
    with mlflow.start_run() as run:
        info = mlflow.keras.log_model(
            tiny_model(sign, gain),
            name="model",
            signature=image_signature() if signature == "default" else signature,
            pip_requirements=["keras"],  # skips mlflow's slow requirement inference
        )
        if eval_ids is not None:
            text = "\n".join(eval_ids) + "\n"
            mlflow.log_text(text, "split/eval_image_ids.txt")
            mlflow.set_tag("eval_image_ids_sha256", hashlib.sha256(text.encode()).hexdigest())
    return info.model_uri, run.info.run_id


def register_version(
    model_uri: str,
    name: str,
    run_id: str | None = None,
    threshold: float | None = THRESHOLD,
    alias: str | None = None,
) -> str:
    """Register `model_uri` under `name` with the training tags; optionally set an alias."""
    from mlflow.tracking import MlflowClient

    from fakeface.registry import register_model

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags: dict[str, Any] = dict(MODEL_TAGS)
    if threshold is not None:
        tags["threshold"] = threshold
    version = register_model(client, model_uri, name, tags, run_id)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version


def bright(seed: int, size: int = 40) -> np.ndarray:
    """A bright noisy image (scored as fake by the tiny model)."""
    rng = np.random.default_rng(seed)
    return rng.integers(170, 240, (size, size, 3), dtype=np.uint8)


def dark(seed: int, size: int = 40) -> np.ndarray:
    """A dark noisy image (scored as real by the tiny model)."""
    rng = np.random.default_rng(seed + 1000)
    return rng.integers(10, 80, (size, size, 3), dtype=np.uint8)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_output(output: Path):
    """Every committed partition of a scoring output, as pandas."""
    return (
        pads.dataset(str(output), format="parquet", partitioning="hive", exclude_invalid_files=True)
        .to_table()
        .to_pandas()
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def champion() -> dict[str, str]:
    """A registered model whose @champion is the tiny brightness model (threshold 0.5)."""
    uri, run_id = log_tiny_model()
    name = "score-tests"
    version = register_version(uri, name, run_id, alias="champion")
    return {"name": name, "version": version, "uri": f"models:/{name}@champion"}


@pytest.fixture
def score_cfg(cfg):
    """Small Arrow and inference batches, so batching and ragged batches are exercised."""
    cfg.score.arrow_batch_size = 3
    cfg.score.inference_batch_size = 2
    return cfg


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """A night's drop: 2 bright, 2 dark (one PNG), and 3 broken files."""
    root = tmp_path / "drop"
    good = encode(bright(1))
    write(root / "a" / "bright_1.jpg", good)
    write(root / "a" / "bright_2.jpg", encode(bright(2)))
    write(root / "dark_1.jpg", encode(dark(1)))
    write(root / "b" / "dark_2.png", encode(dark(2), "PNG"))
    write(root / "empty.jpg", b"")
    write(root / "truncated.jpg", good[: len(good) // 3])
    write(root / "text.jpg", b"just some text, not an image")
    return root


BROKEN = {"empty.jpg": "empty", "truncated.jpg": ("truncated", "corrupt"), "text.jpg": None}


def by_name(df) -> dict[str, Any]:
    return {p.rsplit("/", 1)[-1]: row for p, row in zip(df.path, df.itertuples(), strict=True)}


def check_rows(df, champion: dict[str, str], n_files: int) -> None:
    """The invariants every scoring output must satisfy."""
    assert len(df) == n_files
    assert (df.model_name == champion["name"]).all()
    assert (df.model_version == champion["version"]).all()
    assert (df.threshold == THRESHOLD).all()
    ok = df[df.status == "ok"]
    assert ok.p_fake.notna().all() and ok.error.isna().all()
    assert (ok.is_fake == (ok.p_fake.astype(np.float64) >= ok.threshold)).all()
    err = df[df.status == "error"]
    assert err.p_fake.isna().all() and err.is_fake.isna().all() and err.error.notna().all()
    assert df.scored_at.notna().all()


# --------------------------------------------------------------------------- numpy core


def test_predict_scores_numpy_without_spark() -> None:
    from fakeface.score import predict_scores

    model = tiny_model()
    images = np.stack([bright(1), dark(1), bright(2), dark(2), bright(3)])
    outputs = predict_scores(model, images, batch_size=2)
    assert outputs.shape == (5, 6) and outputs.dtype == np.float32
    assert np.isnan(outputs[:, 1:]).all()  # a one-output model: no part scores, no face_found
    scores = outputs[:, 0]
    assert (scores[[0, 2, 4]] > 0.9).all() and (scores[[1, 3]] < 0.1).all()
    np.testing.assert_allclose(
        outputs, predict_scores(model, images, batch_size=64), rtol=1e-5, equal_nan=True
    )
    assert predict_scores(model, images[:0], batch_size=2).shape == (0, 6)
    with pytest.raises(ModelError, match="uint8 images shaped"):
        predict_scores(model, images[0], batch_size=2)
    with pytest.raises(ModelError, match="uint8 images shaped"):
        predict_scores(model, images.astype(np.float32), batch_size=2)


def test_score_frame_marks_unusable_rows_nan() -> None:
    import pandas as pd

    from fakeface.score import score_frame

    model = tiny_model()
    small, other = bright(1, 8), dark(1, 12)
    images = pd.Series([small.tobytes(), None, b"\x00" * 5, other.tobytes()])
    heights = pd.Series([8, None, 8, 12], dtype="Int32")
    widths = pd.Series([8, None, 8, 12], dtype="Int32")
    scores = score_frame(model, images, heights, widths, batch_size=4)
    assert scores.shape == (4, 6) and np.isnan(scores[[1, 2]]).all()
    assert scores[0, 0] > 0.9 and scores[3, 0] < 0.1  # two sizes in one batch both score


def test_batches_share_aligned_memory_and_copy_the_rest() -> None:
    """The reused batch buffer reaches the model without a copy; an array TensorFlow's
    kernels could not read in place (misaligned, read-only) is passed as numpy, and every
    path gives the same scores."""
    import pandas as pd
    import tensorflow as tf

    from fakeface.score import batch_buffer, model_input, predict_scores, score_frame

    buffer = batch_buffer(3, 8, 8)
    assert buffer.ctypes.data % 64 == 0
    assert batch_buffer(2, 8, 8).ctypes.data == buffer.ctypes.data  # reused, not reallocated
    shared = model_input(buffer)
    assert isinstance(shared, tf.Tensor)
    buffer[0, 0, 0, 0] = 7
    assert int(shared[0, 0, 0, 0]) == 7  # the same memory

    raw = np.zeros(3 * 8 * 8 * 3 + 128, np.uint8)
    start = -raw.ctypes.data % 64 + 16
    misaligned = raw[start : start + 3 * 8 * 8 * 3].reshape(3, 8, 8, 3)
    assert model_input(misaligned) is misaligned
    frozen = np.stack([bright(1, 8), dark(1, 8), bright(2, 8)])
    frozen.flags.writeable = False
    assert model_input(frozen) is frozen

    model = tiny_model()
    misaligned[:] = frozen
    expected = model.predict_on_batch(np.array(frozen))[:, 0]
    for images in (misaligned, frozen):  # would abort the process if shared unaligned
        np.testing.assert_allclose(predict_scores(model, images, 2)[:, 0], expected, rtol=1e-6)
    column = pd.Series([image.tobytes() for image in frozen])
    sizes = pd.Series([8, 8, 8], dtype="Int32")
    scores = score_frame(model, column, sizes, sizes, batch_size=2)
    np.testing.assert_allclose(scores[:, 0], expected, rtol=1e-6)


def test_pack_and_load_cached(champion: dict[str, str], tmp_path: Path) -> None:
    import gc

    from fakeface.model_bundle import download_model, pack_model_dir
    from fakeface.registry import ResolvedModel
    from fakeface.score import load_model_cached

    resolved = ResolvedModel(champion["name"], champion["version"], "", THRESHOLD, None, None, {})
    data = pack_model_dir(download_model(resolved, tmp_path / "dl"))
    gc.unfreeze()
    first = load_model_cached(data, "pack-test/1", num_threads=1)
    # loaded once: what is alive now leaves PySpark's after-task gc.collect alone
    assert gc.get_freeze_count() > 0
    assert load_model_cached(b"not read on a hit", "pack-test/1") is first
    images = np.stack([bright(5), dark(5)])
    expected = tiny_model().predict_on_batch(images)
    np.testing.assert_allclose(first.predict_on_batch(images), expected, rtol=1e-5)


# --------------------------------------------------------------------------- the job on Spark


def test_scores_drop_with_broken_files_and_reruns(
    spark, score_cfg, champion, drop: Path, tmp_path: Path
) -> None:
    from fakeface.score import OUTPUT_COLUMNS
    from fakeface.score_run import run_score

    out = tmp_path / "scores"
    summary = run_score(spark, score_cfg, str(drop), str(out), "2026-02-01", champion["uri"])
    df = read_output(out)
    check_rows(df, champion, n_files=7)
    schema = pads.dataset(str(out / "run_date=2026-02-01"), format="parquet").schema
    assert schema.names == OUTPUT_COLUMNS
    types = {f.name: str(f.type) for f in schema}
    assert types["p_fake"] == "float" and types["is_fake"] == "bool"
    assert types["threshold"] == "double" and types["scored_at"].startswith("timestamp")
    rows = by_name(df)
    for name, kinds in BROKEN.items():
        assert rows[name].status == "error", name
        if kinds:
            kinds = kinds if isinstance(kinds, tuple) else (kinds,)
            assert rows[name].error.split(":")[0] in kinds, rows[name].error
    assert {n for n, r in rows.items() if r.is_fake is True} == {"bright_1.jpg", "bright_2.jpg"}
    assert {n for n, r in rows.items() if r.is_fake is False} == {"dark_1.jpg", "dark_2.png"}
    assert summary["counts"] == {"ok": 4, "error": 3}
    assert summary["n_images"] == 7 and summary["n_errors"] == 3 and summary["skipped"] == 0
    assert summary["share_flagged"] == 0.5 and summary["flagged"] == 2
    assert sum(summary["histogram"]["counts"]) == 4
    assert summary["histogram"]["counts"][0] == 2 and summary["histogram"]["counts"][-1] == 2
    assert summary["model_version"] == champion["version"] and summary["input_kind"] == "images"
    assert summary["mlflow_run_id"]
    assert (out / "_summaries" / "run_date=2026-02-01.json").is_file()
    _check_mlflow_run(summary)

    # A rerun of the date replaces it: same rows, no duplicates, nothing left staged.
    run_score(spark, score_cfg, str(drop), str(out), "2026-02-01", champion["uri"])
    again = read_output(out)
    assert len(again) == 7 and not again.duplicated(["path"]).any()
    assert _key(again) == _key(df)
    assert list((out / "_staging").iterdir()) == []


def _key(df) -> list[tuple]:
    return sorted(zip(df.path, df.status, df.p_fake.round(6).fillna(-1), strict=True))


def _check_mlflow_run(summary: dict[str, Any]) -> None:
    import json

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["n_images"] == 7 and run.data.metrics["n_errors"] == 3
    assert run.data.metrics["share_flagged"] == 0.5
    assert run.data.params["model_version"] == summary["model_version"]
    assert run.data.params["run_date"] == "2026-02-01"
    path = client.download_artifacts(run.info.run_id, "score_histogram.json")
    assert json.loads(Path(path).read_text())["counts"] == summary["histogram"]["counts"]


@pytest.mark.reliability
def test_crash_before_commit_then_rerun_is_exact(
    spark, score_cfg, champion, drop: Path, tmp_path: Path, monkeypatch
) -> None:
    from fakeface import storage
    from fakeface.score_run import run_score

    out = tmp_path / "scores"

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed between stage and commit")

    monkeypatch.setattr(storage, "commit_partition", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_score(spark, score_cfg, str(drop), str(out), "2026-02-02", champion["uri"])
    assert not (out / "run_date=2026-02-02").exists()
    assert len(list((out / "_staging").iterdir())) == 1
    monkeypatch.undo()

    run_score(spark, score_cfg, str(drop), str(out), "2026-02-02", champion["uri"])
    df = read_output(out)
    check_rows(df, champion, n_files=7)
    assert not df.duplicated(["path"]).any()


def test_incremental_skips_ids_scored_by_this_version(
    spark, score_cfg, champion, drop: Path, tmp_path: Path
) -> None:
    from fakeface.score_run import run_score

    out = tmp_path / "scores"
    run_score(spark, score_cfg, str(drop), str(out), "2026-02-03", champion["uri"])
    # Next night: yesterday's files again (renamed copies) plus two new images.
    night2 = tmp_path / "drop2"
    for i, src in enumerate(sorted(p for p in drop.rglob("*") if p.is_file())):
        write(night2 / f"again_{i}{src.suffix}", src.read_bytes())
    write(night2 / "new_bright.jpg", encode(bright(7)))
    write(night2 / "new_dark.jpg", encode(dark(7)))

    summary = run_score(
        spark, score_cfg, str(night2), str(out), "2026-02-04", champion["uri"], incremental=True
    )
    day2 = read_output(out).query("run_date == '2026-02-04'")
    names = set(by_name(day2))
    # The 4 images scored 'ok' yesterday are skipped; the 3 broken ones are tried again.
    assert summary["skipped"] == 4
    assert {"new_bright.jpg", "new_dark.jpg"} <= names and len(day2) == 5
    assert summary["n_images"] == 5 and summary["incremental"] is True

    # Rerunning the same date incrementally must not skip that date's own rows.
    again = run_score(
        spark, score_cfg, str(night2), str(out), "2026-02-04", champion["uri"], incremental=True
    )
    assert again["skipped"] == 4
    assert len(read_output(out).query("run_date == '2026-02-04'")) == 5


def test_scores_an_ingested_dataset(spark, score_cfg, champion, drop: Path, tmp_path: Path) -> None:
    from fakeface.ingest import run_ingest
    from fakeface.score_run import run_score

    lake = tmp_path / "ingested"
    run_ingest(spark, score_cfg, str(drop), str(lake), "2026-02-05", labeled=False)
    run_ingest(spark, score_cfg, str(drop / "a"), str(lake), "2026-02-06", labeled=False)
    out = tmp_path / "scores"
    summary = run_score(spark, score_cfg, str(lake), str(out), "2026-02-06", champion["uri"])
    assert summary["input_kind"] == "ingested"
    df = read_output(out)
    check_rows(df, champion, n_files=7 + 2)  # every row of every date (documented)
    # One partition folder given directly: that date only.
    single = run_score(
        spark, score_cfg, str(lake / "run_date=2026-02-06"), str(out), "2026-02-07", champion["uri"]
    )
    assert single["input_kind"] == "partition" and single["n_images"] == 2
    assert single["flagged"] == 2


# --------------------------------------------------------------------------- model safety


def test_model_without_threshold_is_refused(spark, score_cfg, drop: Path, tmp_path: Path) -> None:
    from fakeface.score_run import run_score

    uri, run_id = log_tiny_model()
    register_version(uri, "score-no-threshold", run_id, threshold=None, alias="champion")
    with pytest.raises(ModelError, match="no 'threshold' tag"):
        run_score(
            spark,
            score_cfg,
            str(drop),
            str(tmp_path / "o"),
            "2026-02-08",
            "models:/score-no-threshold@champion",
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("signature", "needle"),
    [
        (((-1, 64, 64, 3), "uint8"), r"expects images of shape \(N, 64, 64, 3\).*32x32x3 uint8"),
        (((-1, -1, -1, 3), "float32"), "expects float32 tensors"),
        (((-1, 32, 32), "uint8"), r"shape \(N, 32, 32\)"),
        (None, "no input signature"),
    ],
)
def test_input_signature_mismatch_is_refused(
    spark, score_cfg, drop: Path, tmp_path: Path, signature, needle: str
) -> None:
    from fakeface.score_run import run_score

    sig = image_signature(*signature) if signature else None
    uri, run_id = log_tiny_model(signature=sig)
    name = f"score-sig-{len(needle)}"
    version = register_version(uri, name, run_id)
    with pytest.raises(ModelError, match=needle) as info:
        run_score(
            spark,
            score_cfg,
            str(drop),
            str(tmp_path / "o"),
            "2026-02-09",
            f"models:/{name}/{version}",
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- the job script


class _SharedSession:
    """The test session, handed to a job's main; its stop() must not end the fixture."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spark, name)

    def stop(self) -> None:
        pass


def _load_job(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"job_{name}", PROJECT_ROOT / "jobs" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_exits_4_when_error_share_is_over_the_limit_but_writes_rows(
    spark, champion, tmp_path: Path, monkeypatch, capsys
) -> None:
    from fakeface import spark as spark_module
    from fakeface.cli import run_job

    monkeypatch.setattr(
        spark_module, "build_spark_session", lambda cfg, suffix="": _SharedSession(spark)
    )
    root = tmp_path / "bad_night"
    write(root / "ok.jpg", encode(bright(9)))
    for i in range(3):
        write(root / f"broken_{i}.jpg", b"garbage %d" % i)
    out = tmp_path / "scores"
    job = _load_job("score")
    args = [
        "--input",
        str(root),
        "--output",
        str(out),
        "--run-date",
        "2026-02-10",
        "--model",
        champion["uri"],
        "--set",
        "ingest.image_size=32",
        "--set",
        f"mlflow.artifact_root={tmp_path / 'artifacts'}",
    ]
    assert run_job(job.main, args) == 4
    captured = capsys.readouterr()
    assert "score 2026-02-10:" in captured.out and "errors=3" in captured.out
    assert "error share 0.75 > score.max_error_share 0.25" in captured.err
    check_rows(read_output(out), champion, n_files=4)
    # Under the limit the same night exits 0.
    assert run_job(job.main, [*args, "--set", "score.max_error_share=0.8"]) == 0


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.timeout(170)
def test_job_killed_mid_write_then_rerun_is_exact(
    spark, score_cfg, champion, drop: Path, tmp_path: Path
) -> None:
    from fakeface.score_run import run_score

    out = tmp_path / "scores"
    cmd = [
        sys.executable, str(PROJECT_ROOT / "jobs" / "score.py"),
        "--input", str(drop), "--output", str(out), "--run-date", "2026-02-11",
        "--model", champion["uri"],
        "--set", "spark.master=local[1]", "--set", "spark.driver_memory=1g",
        "--set", "ingest.image_size=32",
        "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    staging = out / "_staging"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            if staging.is_dir() and any(staging.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM: no cleanup at all
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (out / "run_date=2026-02-11").exists()

    run_score(spark, score_cfg, str(drop), str(out), "2026-02-11", champion["uri"])
    df = read_output(out)
    check_rows(df, champion, n_files=7)
    assert not df.duplicated(["path"]).any()


# --------------------------------------------------------------------------- part models

# The tiny part model's part scores (constant) and the thresholds it is registered with: nose
# stays under its own cut although above the image's 0.5, mouth is over its own 0.3 although
# under 0.5, so `parts_flagged` can only be right if each part is cut at its own threshold.
PART_SCORES = {"left_eye": 0.9, "right_eye": 0.2, "nose": 0.6, "mouth": 0.4}
PART_THRESHOLDS = {"left_eye": 0.5, "right_eye": 0.5, "nose": 0.7, "mouth": 0.3}
PARTS_FLAGGED = "left_eye,mouth"


def tiny_part_model(width: int = 6):
    """uint8 (N, H, W, 3) -> (N, 6) MODEL_OUTPUTS: p_fake as `tiny_model`, constant part scores
    (PART_SCORES), face_found exactly 1.0 where the green channel's mean is over 0.5, else 0.0.

    `width` 3 keeps the first three columns: a model no scorer should accept.
    """
    import keras

    from fakeface.models.layers import CastToFloat32

    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = CastToFloat32(name="to_float32")(inputs)
    x = keras.layers.Resizing(16, 16, name="resize")(x)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    scores = keras.layers.Dense(5, activation="sigmoid", name="scores")
    # hard_sigmoid of a large gain: exactly 0.0 or 1.0, as the face detector answers
    face = keras.layers.Dense(1, activation="hard_sigmoid", name="face")
    outputs = keras.layers.Concatenate(name="outputs")([scores(x), face(x)])
    if width != 6:
        outputs = keras.layers.Dense(width, name="wrong_width")(outputs)
    model = keras.Model(inputs, outputs, name="tiny_parts")
    logits = [np.log(p / (1 - p)) for p in PART_SCORES.values()]
    kernel = np.zeros((3, 5), np.float32)
    kernel[:, 0] = 4.0
    scores.set_weights([kernel, np.array([-6.0, *logits], np.float32)])
    face.set_weights([np.array([[0.0], [1000.0], [0.0]], np.float32), np.array([-500.0])])
    return model


def no_face(image: np.ndarray) -> np.ndarray:
    """The image without its green channel: the tiny part model finds no face in it."""
    out = image.copy()
    out[..., 1] = 0
    return out


def test_predict_scores_takes_one_or_six_outputs_and_refuses_three() -> None:
    from fakeface.outputs import MODEL_OUTPUTS
    from fakeface.score import predict_scores

    images = np.stack([bright(1), no_face(bright(2)), dark(1)])
    outputs = predict_scores(tiny_part_model(), images, batch_size=2)
    assert outputs.shape == (3, len(MODEL_OUTPUTS)) and outputs.dtype == np.float32
    assert list(outputs[:, 5]) == [1.0, 0.0, 0.0]  # dark: green mean under 0.5 too
    np.testing.assert_allclose(outputs[:, 1:5], [list(PART_SCORES.values())] * 3, rtol=1e-5)
    assert outputs[0, 0] > 0.9 and outputs[2, 0] < 0.1
    with pytest.raises(ModelError, match=r"returned shape \(2, 3\) for 2 images.*\(2, 6\)"):
        predict_scores(tiny_part_model(width=3), images, batch_size=2)


def test_settle_scores_nulls_parts_without_a_face_and_cuts_each_part_at_its_own() -> None:
    import pandas as pd

    from fakeface.outputs import PART_COLUMNS
    from fakeface.score import SETTLED_COLUMNS, predict_scores, settle_scores

    images = np.stack([bright(1), no_face(bright(2)), bright(3)])
    outputs = predict_scores(tiny_part_model(), images, batch_size=4)
    status = pd.Series(["ok", "ok", "error"])
    error = pd.Series([None, None, "corrupt: broken"])
    out = settle_scores(status, error, outputs, THRESHOLD, PART_THRESHOLDS)
    assert list(out.columns) == SETTLED_COLUMNS
    face, none, broken = (out.iloc[i] for i in range(3))
    assert face.face_found is True and face.parts_flagged == PARTS_FLAGGED
    assert [round(face[c], 5) for c in PART_COLUMNS] == list(PART_SCORES.values())
    # No face found: P(fake) and the verdict still hold, the part scores do not.
    assert none.status == "ok" and none.error is None and none.p_fake > 0.5 and none.is_fake
    assert none.face_found is False and none.parts_flagged is None
    assert all(none[c] is None for c in PART_COLUMNS)
    assert broken.status == "error" and broken.error == "corrupt: broken"
    assert broken.p_fake is None and broken.face_found is None and broken.parts_flagged is None
    # Without part thresholds no part is flagged, but the row says its parts were judged.
    assert settle_scores(status, error, outputs, THRESHOLD).parts_flagged[0] == ""
    # A one-output model: the new columns are null on every row, the rest as before.
    one = settle_scores(status, error, outputs[:, 0], THRESHOLD, PART_THRESHOLDS)
    assert one[[*PART_COLUMNS, "face_found", "parts_flagged"]].isna().all().all()
    assert list(one.status) == ["ok", "ok", "error"] and one.is_fake[0] is True


def log_part_model(cfg, name: str) -> str:
    """The tiny part model logged and registered by the training code; returns its version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from fakeface.train import log_and_register_model

    use_tests_experiment()
    cfg.mlflow.registered_model = name
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_TRACKING_URI"])
    with mlflow.start_run() as run:
        return log_and_register_model(
            cfg,
            client,
            tiny_part_model(),
            cfg.train.variant,
            THRESHOLD,
            {"accuracy": 1.0},
            32,
            run.info.run_id,
            example_image=bright(4, 32),
            part_thresholds=PART_THRESHOLDS,
        )


@pytest.fixture(scope="module")
def part_champion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny part model, registered by `train.log_and_register_model` with part thresholds."""
    from fakeface.config import load_config

    root = tmp_path_factory.mktemp("parts")
    cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml", [], project_root=root)
    name = "score-parts"
    version = log_part_model(cfg, name)
    return {"name": name, "version": version, "uri": f"models:/{name}/{version}"}


def test_part_thresholds_travel_in_tags_and_in_the_folder(part_champion, tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from fakeface.registry import resolve_model
    from fakeface.serving import read_settings

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_TRACKING_URI"])
    resolved = resolve_model(client, part_champion["uri"])
    assert resolved.part_thresholds == PART_THRESHOLDS
    assert resolved.tags["threshold_nose"] == repr(PART_THRESHOLDS["nose"])
    folder = mlflow.artifacts.download_artifacts(part_champion["uri"], dst_path=str(tmp_path))
    assert read_settings(Path(folder) / "data").part_thresholds == PART_THRESHOLDS
    # An old model: no part tags, no part thresholds.
    uri, run_id = log_tiny_model()
    old = register_version(uri, "score-parts-old", run_id)
    assert resolve_model(client, f"models:/score-parts-old/{old}").part_thresholds == {}
    client.set_model_version_tag("score-parts-old", old, "threshold_nose", "high")
    with pytest.raises(ModelError, match="non-numeric tag 'threshold_nose'"):
        resolve_model(client, f"models:/score-parts-old/{old}")


@pytest.fixture
def face_drop(tmp_path: Path) -> Path:
    """A night's drop for the part model: faces, images without one, and a broken file."""
    root = tmp_path / "face_drop"
    write(root / "face_bright.png", encode(bright(1), "PNG"))
    write(root / "face_dark.png", encode(dark(1) | np.array([0, 200, 0], np.uint8), "PNG"))
    write(root / "noface_bright.png", encode(no_face(bright(2)), "PNG"))
    write(root / "noface_dark.png", encode(dark(2), "PNG"))
    write(root / "broken.jpg", b"not an image")
    return root


def test_part_model_scores_nightly_like_the_served_model(
    spark, score_cfg, part_champion, face_drop: Path, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd

    from fakeface.ingest import run_ingest
    from fakeface.outputs import PART_COLUMNS
    from fakeface.score import OUTPUT_COLUMNS
    from fakeface.score_run import run_score
    from fakeface.serving import _load_pyfunc

    out = tmp_path / "scores"
    summary = run_score(
        spark, score_cfg, str(face_drop), str(out), "2026-02-12", part_champion["uri"]
    )
    schema = pads.dataset(str(out / "run_date=2026-02-12"), format="parquet").schema
    assert schema.names == OUTPUT_COLUMNS
    types = {f.name: str(f.type) for f in schema}
    assert types["p_nose"] == "float" and types["face_found"] == "bool"
    assert types["parts_flagged"] == "string"
    rows = by_name(read_output(out))
    for name in ("face_bright.png", "face_dark.png"):
        row = rows[name]
        assert row.status == "ok" and row.face_found is True, name
        assert row.parts_flagged == PARTS_FLAGGED, name
        assert [round(getattr(row, c), 5) for c in PART_COLUMNS] == list(PART_SCORES.values())
    for name in ("noface_bright.png", "noface_dark.png"):
        row = rows[name]
        assert row.status == "ok" and row.error is None and row.p_fake is not None, name
        assert row.face_found is False and row.parts_flagged is None, name
        assert all(getattr(row, c) is None or np.isnan(getattr(row, c)) for c in PART_COLUMNS)
    assert rows["noface_bright.png"].is_fake is True and rows["face_dark.png"].is_fake is False
    broken = rows["broken.jpg"]
    assert broken.status == "error" and broken.face_found is None and broken.parts_flagged is None
    assert summary["no_face"] == 2
    assert summary["parts_flagged"] == {"left_eye": 2, "right_eye": 0, "nose": 0, "mouth": 2}

    # The ingested path (pandas UDF) answers the same rows as the raw-files path.
    lake = tmp_path / "lake"
    run_ingest(spark, score_cfg, str(face_drop), str(lake), "2026-02-12", labeled=False)
    run_score(spark, score_cfg, str(lake), str(tmp_path / "s2"), "2026-02-12", part_champion["uri"])
    ingested = read_output(tmp_path / "s2").set_index("image_id")
    nightly = read_output(out).set_index("image_id").loc[ingested.index]
    columns = ["status", "is_fake", "face_found", "parts_flagged"]
    pd.testing.assert_frame_equal(ingested[columns], nightly[columns])
    # The served model (its pyfunc, same folder): same rows, column for column.
    folder = mlflow.artifacts.download_artifacts(part_champion["uri"], dst_path=str(tmp_path / "m"))
    files = sorted(face_drop.iterdir())
    served = _load_pyfunc(str(Path(folder) / "data")).predict(
        pd.DataFrame({"content": [f.read_bytes() for f in files]})
    )
    want = read_output(out)
    want.index = [p.rsplit("/", 1)[-1] for p in want.path]
    want = want.loc[[f.name for f in files]]
    for column in served.columns.drop("p_fake"):
        assert served[column].tolist() == want[column].replace({np.nan: None}).tolist(), column
    np.testing.assert_allclose(served.p_fake.astype(float), want.p_fake.astype(float), rtol=1e-6)


def test_a_three_output_model_is_refused_before_scoring(
    spark, score_cfg, face_drop: Path, tmp_path: Path
) -> None:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from fakeface.score_run import run_score

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, -1, -1, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 3))]),
    )
    uri, run_id = log_tiny_model(signature=signature)
    version = register_version(uri, "score-three", run_id)
    with pytest.raises(ModelError, match=r"outputs \(N, 3\); scoring needs .*\(N, 1\).*\(N, 6\)"):
        run_score(
            spark,
            score_cfg,
            str(face_drop),
            str(tmp_path / "o"),
            "2026-02-13",
            f"models:/score-three/{version}",
        )
    assert not (tmp_path / "o").exists()
