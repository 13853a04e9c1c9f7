"""The training job on a tiny synthetic corpus: every variant trains, registers and reloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakeface.config import load_config
from fakeface.errors import FakefaceError, InputError
from fakeface.ingest import run_ingest
from fakeface.synth import write_corpus
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    write_corpus(root / "corpus", n_real=16, n_fake=16, size=64, seed=1, workers=1)
    cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml", ["ingest.image_size=48"])
    run_ingest(spark, cfg, str(root / "corpus"), str(root / "data"), "2026-01-01")
    return root / "data"


def train_cfg(tmp_path: Path, *extra: str):
    return load_config(
        PROJECT_ROOT / "conf" / "local.yaml",
        [
            "train.batch_size=8",
            "train.eval_fraction=0.25",
            "train.val_fraction=0.25",
            "train.gradcam_examples=1",
            f"train.feed_cache_dir={tmp_path / 'petastorm'}",
            f"mlflow.artifact_root={tmp_path / 'artifacts'}",
            *extra,
        ],
        project_root=tmp_path,
    )


def registered(name: str, version: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_model_version(name, version)


@pytest.mark.slow
def test_every_variant_trains_and_registers(spark, ingested: Path, tmp_path: Path) -> None:
    from fakeface.models.factory import list_variants
    from fakeface.train import run_train

    cfg = train_cfg(tmp_path, "mlflow.registered_model=all-variants")
    variants = list_variants()
    results = run_train(spark, cfg, str(ingested), variants, folds=1, weights="none", epochs=1)
    assert [r.variant for r in results] == variants
    for result in results:
        assert result.version is not None
        mv = registered("all-variants", result.version)
        assert mv.tags["variant"] == result.variant
        assert 0.0 < float(mv.tags["threshold"]) < 1.0
        assert mv.tags["input_size"] == "48"
        assert 0.0 <= float(mv.tags["eval_accuracy"]) <= 1.0
        assert "eval_auc" in mv.tags and "eval_accuracy_real" in mv.tags


def test_production_recipe_trains_registers_and_reloads(spark, ingested: Path, tmp_path: Path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from fakeface.train import EVAL_IDS_ARTIFACT, resolve_variants, run_train

    cfg = train_cfg(tmp_path, "mlflow.registered_model=recipe")
    variants = resolve_variants(None, cfg)
    assert variants == [cfg.train.variant]
    (result,) = run_train(spark, cfg, str(ingested), variants, folds=1, weights="none", epochs=1)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.params["train.variant"] == cfg.train.variant
    assert run.data.params["data.rows"] == "32"
    assert "eval_auc" in run.data.metrics and "threshold" in run.data.metrics
    history = client.get_metric_history(result.run_id, "loss")
    assert len(history) == 1
    eval_ids = mlflow.artifacts.load_text(f"runs:/{result.run_id}/{EVAL_IDS_ARTIFACT}").split()
    assert len(eval_ids) == 8
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert "evaluation/predictions.csv" in artifacts
    # A fresh process loads the registered model after `import fakeface` alone.
    code = (
        "import fakeface, mlflow, numpy as np; "
        f"m = mlflow.keras.load_model('models:/recipe/{result.version}'); "
        "p = m.predict(np.zeros((2, 48, 48, 3), np.uint8), verbose=0); "
        "assert p.shape in ((2, 1), (2, 6)), p.shape; print('ok')"  # one output, or a part model's
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_same_seed_same_eval_split(spark, ingested: Path, tmp_path: Path) -> None:
    from fakeface.split import make_split
    from fakeface.train import collect_metadata, load_training_frame

    meta = collect_metadata(load_training_frame(spark, str(ingested)))
    args = (list(meta.image_id), list(meta.label), list(meta.level), 0.25, 0.25)
    assert make_split(*args, seed=0).eval == make_split(*args, seed=0).eval


@pytest.mark.slow
def test_cross_validation_reports_mean_and_std(spark, ingested: Path, tmp_path: Path) -> None:
    from fakeface.train import format_results, run_train

    cfg = train_cfg(tmp_path, "mlflow.registered_model=cv")
    (result,) = run_train(spark, cfg, str(ingested), ["custom"], folds=2, weights="none", epochs=1)
    assert result.version is None
    assert "cv_accuracy_std" in result.metrics
    assert "+-" in format_results([result], 2)


def test_one_class_is_a_clear_error(spark, tmp_path: Path) -> None:
    from fakeface.train import collect_metadata, load_training_frame

    write_corpus(tmp_path / "corpus", n_real=6, n_fake=0, size=48, seed=0, workers=1)
    cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml", ["ingest.image_size=32"])
    run_ingest(spark, cfg, str(tmp_path / "corpus"), str(tmp_path / "data"), "2026-01-01")
    with pytest.raises(InputError, match="both classes"):
        collect_metadata(load_training_frame(spark, str(tmp_path / "data")))


def test_unknown_variant_is_a_clear_error() -> None:
    from fakeface.train import resolve_variants

    cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml")
    with pytest.raises(FakefaceError, match="unknown variant 'resnet'"):
        resolve_variants("resnet", cfg)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--variant", "nope"], {}, "unknown variant 'nope'"),
        ([], {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "unreachable"),
        (["--epochs", "0"], {}, "--epochs"),
    ],
)
def test_job_errors_are_one_line(tmp_path: Path, args, env, needle) -> None:
    import os

    data = tmp_path / "data"
    data.mkdir()
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "jobs" / "train.py"), "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], result.stderr[-2000:]


def test_self_blend_variant_trains_a_region_head_and_registers_one_output(
    spark, ingested: Path, tmp_path: Path
) -> None:
    import mlflow
    import numpy as np

    from fakeface.train import run_train

    cfg = train_cfg(tmp_path, "mlflow.registered_model=sbi")
    (result,) = run_train(
        spark, cfg, str(ingested), ["residual_sbi"], folds=1, weights="none", epochs=2
    )
    assert len(result.history["loss"]) == 2
    assert {"regions_loss", "score_loss", "auc", "val_auc"} <= set(result.history)
    model = mlflow.keras.load_model(f"models:/sbi/{result.version}")
    assert len(model.outputs) == 1
    assert model.predict(np.zeros((2, 48, 48, 3), np.uint8), verbose=0).shape == (2, 1)


def test_kernel_variant_is_adapted_to_the_training_split_before_fitting(
    spark, ingested: Path, tmp_path: Path
) -> None:
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    from fakeface.train import run_train

    cfg = train_cfg(tmp_path, "mlflow.registered_model=kernel")
    (result,) = run_train(
        spark, cfg, str(ingested), ["texture_kernel"], folds=1, weights="none", epochs=2
    )
    model = mlflow.keras.load_model(f"models:/kernel/{result.version}")
    kernel = model.get_layer("kernel")
    prototypes = np.asarray(kernel.prototypes)
    # The training split's images fill the 1024 prototypes in turn: one distinct row each.
    n_train = int(MlflowClient().get_run(result.run_id).data.params["split.train"])
    assert len(np.unique(prototypes, axis=0)) == n_train
    assert np.asarray(kernel.scale).min() > 0 and np.abs(prototypes).max() > 0
    assert model.predict(np.zeros((2, 48, 48, 3), np.uint8), verbose=0).shape == (2, 1)
    # Grad-CAM explains the texture maps (the evaluation artifacts include the figure).
    artifacts = {a.path for a in MlflowClient().list_artifacts(result.run_id, "evaluation")}
    assert any("gradcam" in path for path in artifacts), artifacts


def _timed_fit(monkeypatch, max_minutes: float, batch_s: float, epochs: int):
    """A tiny Keras fit under a TimeBudget, on a fake clock where every batch takes `batch_s`."""
    import keras
    import numpy as np

    import fakeface.train as train_module
    from fakeface.train import TimeBudget

    clock = [1000.0]
    monkeypatch.setattr(train_module.time, "monotonic", lambda: clock[0])

    class Slow(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.batches += 1
            clock[0] += batch_s

    x = np.zeros((40, 2), "float32")
    y = np.zeros((40, 1), "float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    slow, budget = Slow(), TimeBudget(max_minutes)  # Slow first: the batch is over when checked
    history = model.fit(
        x, y, batch_size=4, epochs=epochs, callbacks=[slow, budget], validation_data=(x, y),
        verbose=0,
    )  # fmt: skip
    return history.history, slow.batches, budget


def test_time_budget_stops_before_an_epoch_that_would_not_fit(monkeypatch) -> None:
    # 10 batches of 6 s: a minute an epoch; 4.5 minutes hold 4 epochs, the 5th would not fit.
    history, batches, budget = _timed_fit(monkeypatch, 4.5, 6.0, epochs=50)
    assert len(history["loss"]) == 4 and batches == 40 and budget.exhausted
    assert len(history["val_loss"]) == 4


def test_time_budget_stops_inside_an_epoch_longer_than_the_budget(monkeypatch) -> None:
    # One epoch would take 10 minutes; a 2.5 minute budget stops it after the 3rd batch, and
    # Keras still validates that partial epoch.
    history, batches, budget = _timed_fit(monkeypatch, 2.5, 60.0, epochs=3)
    assert len(history["loss"]) == 1 and len(history["val_loss"]) == 1
    assert batches == 3 and budget.exhausted


def test_without_a_budget_every_epoch_runs(monkeypatch) -> None:
    history, batches, budget = _timed_fit(monkeypatch, 1e6, 6.0, epochs=3)
    assert len(history["loss"]) == 3 and batches == 30 and not budget.exhausted


def test_a_negative_time_budget_is_refused() -> None:
    from fakeface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.max_minutes"):
        load_config(PROJECT_ROOT / "conf" / "local.yaml", ["train.max_minutes=-1"])


def test_training_runs_at_the_batch_that_fits_and_logs_it(
    spark, ingested: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    """Memory for batch 3 only: the job trains at 3, says so, and logs the batch it used."""
    from mlflow.tracking import MlflowClient

    import fakeface.models.memory as memory
    from fakeface.models.factory import build_model
    from fakeface.train import run_train

    cfg = train_cfg(tmp_path, "mlflow.registered_model=shrunk")
    variant = cfg.train.variant
    model = build_model(variant, weights="none", augment=None, seed=cfg.train.seed)
    free = int(memory.training_bytes(model, 3) / memory.HEADROOM) + 1
    monkeypatch.setattr(memory, "available_bytes", lambda: free)
    monkeypatch.setattr("tensorflow.config.list_physical_devices", lambda kind=None: [])
    import fakeface.train as train_module

    fitted_at: list[int] = []
    fit = train_module.fit_variant

    def spy(*args, **kwargs):
        fitted_at.append(args[7] if len(args) > 7 else kwargs["batch_size"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(train_module, "fit_variant", spy)
    with caplog.at_level("INFO", logger="fakeface.train"):
        (result,) = run_train(
            spark, cfg, str(ingested), [variant], folds=1, weights="none", epochs=1
        )
    assert fitted_at == [3]  # the batch the fit got, not only the logged one
    params = MlflowClient().get_run(result.run_id).data.params
    assert params["train.batch_size_used"] == "3" and params["train.batch_size"] == "8"
    assert f"{variant}: train.batch_size=8 needs about" in caplog.text
    assert "training at batch 3" in caplog.text
    assert result.version is not None


def test_a_variant_that_fits_at_no_batch_is_refused_before_the_data_is_read(
    spark, tmp_path: Path, monkeypatch
) -> None:
    import fakeface.models.memory as memory
    from fakeface.errors import ConfigError
    from fakeface.train import run_train

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    monkeypatch.setattr("tensorflow.config.list_physical_devices", lambda kind=None: [])
    cfg = train_cfg(tmp_path, "mlflow.registered_model=never")
    with pytest.raises(ConfigError, match=r"custom needs about .* even at train\.batch_size=1"):
        run_train(spark, cfg, str(tmp_path / "no-data"), ["custom"], 1, "none", 1)
