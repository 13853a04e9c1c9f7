"""Fitting one variant: build, adapt or fit (epochs, or kernel / part heads solved exactly).

The training job (`fakeface.train`) calls `fit_variant` once per split; the callbacks here
log each epoch to MLflow and stop a fit that would overrun `train.max_minutes`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

    from fakeface.config import Config

log = logging.getLogger("fakeface.train")


def metric_name(key: str) -> str:
    """A region-head model's score_auc / val_score_auc -> auc / val_auc, so every variant's
    curves, tables and MLflow metrics share names; the per-output losses keep theirs."""
    if "score_" in key and not key.endswith("loss"):
        return key.replace("score_", "", 1)
    return key


class _EpochLogger:
    """Keras callback: per-epoch metrics to MLflow and one progress line to the log."""

    def __new__(cls, prefix: str, total_epochs: int) -> Any:
        import keras
        import mlflow

        class Logger(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = {metric_name(k): float(v) for k, v in (logs or {}).items()}
                mlflow.log_metrics({k: v for k, v in logs.items() if math.isfinite(v)}, step=epoch)
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
                log.info(
                    "%s epoch %d/%d %s (%.0fs)",
                    prefix,
                    epoch + 1,
                    total_epochs,
                    shown,
                    time.monotonic() - self.started,
                )

        return Logger()


class TimeBudget:
    """Keras callback: stop fitting once `max_minutes` of wall clock are spent.

    It stops before an epoch that would not fit (judged from the mean epoch so far) and, if a
    single epoch outlasts the budget, inside it; Keras still validates that last (partial)
    epoch, so early stopping restores the best epoch as usual. One budget spans the frozen
    and the fine-tuning phases.
    """

    def __new__(cls, max_minutes: float) -> Any:
        import keras

        budget_s = max_minutes * 60.0
        start = time.monotonic()

        class Budget(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.epoch_seconds: list[float] = []
                self.epoch_started = start
                self.exhausted = False

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.epoch_started = time.monotonic()

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                if time.monotonic() - start >= budget_s:
                    self.exhausted = True
                    self.model.stop_training = True

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                now = time.monotonic()
                self.epoch_seconds.append(now - self.epoch_started)
                if now - start + float(np.mean(self.epoch_seconds)) > budget_s:
                    self.exhausted = True
                    self.model.stop_training = True
                if self.exhausted:
                    log.info(
                        "time budget of %.1f min spent after %d epoch(s) (%.1f min)",
                        max_minutes,
                        epoch + 1,
                        (now - start) / 60,
                    )

        return Budget()


def _compile(
    model: keras.Model,
    cfg: Config,
    learning_rate: float,
    total_steps: int,
    region_weight: float = 0.0,
) -> None:
    """Optimizer, schedule and loss from the training config."""
    import keras

    rate: Any = learning_rate
    if cfg.train.lr_schedule == "cosine":
        warmup = max(1, total_steps // 20)
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10,
            decay_steps=max(1, total_steps - warmup),
            alpha=0.02,
            warmup_target=learning_rate,
            warmup_steps=warmup,
        )
    if cfg.train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(rate, weight_decay=cfg.train.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    main_loss = keras.losses.BinaryCrossentropy(label_smoothing=cfg.train.label_smoothing)
    main_metrics = ["accuracy", keras.metrics.AUC(name="auc")]
    if region_weight > 0:  # a with_region_head twin: outputs {"score", "regions"}
        model.compile(
            optimizer=optimizer,
            loss={"score": main_loss, "regions": keras.losses.BinaryCrossentropy()},
            loss_weights={"score": 1.0, "regions": region_weight},
            metrics={"score": main_metrics},
        )
    else:
        model.compile(optimizer=optimizer, loss=main_loss, metrics=main_metrics)


def fit_variant(
    variant: str,
    cfg: Config,
    train_converter: Any,
    val: dict[str, np.ndarray],
    strategy: Any,
    weights: str,
    epochs: int,
    batch_size: int | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build, fit (frozen then fine-tuned for transfer bases) and return the best model.

    `batch_size` is the training batch (default train.batch_size): check_variants_fit's
    choice, smaller where train.batch_size would not fit in memory.
    """
    import keras
    import mlflow

    from fakeface import feed
    from fakeface.models.factory import (
        build_model,
        get_variant,
        set_base_trainable,
        with_region_head,
    )
    from fakeface.models.parts import adapt_parts, part_layers
    from fakeface.models.texture import adapt_kernels, fit_kernel_heads, kernel_layers
    from fakeface.selfblend import parse_region_flags, region_targets

    spec = get_variant(variant)
    use_weights = weights if spec.pretrained else "none"
    augment = cfg.train.augmentations or None
    region_weight = spec.region_weight
    learning_rate = cfg.train.learning_rate * spec.learning_rate_scale
    with strategy.scope():
        model = build_model(variant, weights=use_weights, augment=augment, seed=cfg.train.seed)
        # A random base learns nothing frozen: only pretrained bases start frozen.
        if spec.pretrained and use_weights != "none":
            set_base_trainable(model, False)
        # The region head trains beside the score unit; `model` (one output) is what is kept.
        fitted = with_region_head(model) if region_weight > 0 else model
    batch = batch_size if batch_size is not None else cfg.train.batch_size
    if spec.part_heads:
        from fakeface.part_training import fit_part_model

        # Kernel machines on fixed features, one per part, solved exactly on part labels.
        train = feed.collect_numpy(train_converter)
        _, history = fit_part_model(
            model, train, val, cfg.train.part_reencodes, cfg.train.seed, spec.input_size
        )
        mlflow.log_metrics({k: v[0] for k, v in history.items() if math.isfinite(v[0])}, step=0)
        return model, history
    if kernel_layers(model) or part_layers(model):
        # Kernel machines keep training examples as prototypes, part statistics the training
        # mean for faces the mesh misses: both are set from the training split before fitting.
        train = feed.collect_numpy(train_converter)
        with strategy.scope():
            adapt_parts(model, train["image"], batch)
            adapt_kernels(model, train["image"], batch)
            if spec.exact_head:
                # A convex head on fixed features: its optimum, not 15 epochs towards it.
                history = fit_kernel_heads(
                    model, train["image"], train["label"], val["image"], val["label"], batch
                )
                # One "epoch" in the run's metric history, like the SGD variants' curves.
                mlflow.log_metrics({k: v[0] for k, v in history.items()}, step=0)
                log.info(
                    "%s: kernel heads solved exactly: auc=%.4f val_auc=%.4f",
                    variant,
                    history["auc"][0],
                    history["val_auc"][0],
                )
                return model, history
        del train
    steps = max(1, math.ceil(len(train_converter) / batch))
    with strategy.scope():
        _compile(fitted, cfg, learning_rate, steps * epochs, region_weight)
    # Keras names a multi-output model's metrics after the output: val_score_auc.
    prefix = "score_" if region_weight > 0 else ""
    stopper = keras.callbacks.EarlyStopping(
        monitor=f"val_{prefix}auc",
        mode="max",
        patience=cfg.train.patience,
        restore_best_weights=True,
    )
    if region_weight > 0:
        val_targets: Any = {
            "score": val["label"],
            "regions": region_targets(parse_region_flags(val["regions"])),
        }
    else:
        val_targets = val["label"]
    history: dict[str, list[float]] = {}
    phases = [(epochs, learning_rate, None)]
    if spec.pretrained and use_weights != "none" and cfg.train.fine_tune_epochs > 0:
        phases.append((cfg.train.fine_tune_epochs, learning_rate / 10, cfg.train.fine_tune_layers))
    done = 0
    budget = TimeBudget(cfg.train.max_minutes) if cfg.train.max_minutes > 0 else None
    with feed.training_dataset(
        train_converter,
        batch,
        cfg.train.shuffle_buffer,
        cfg.train.seed,
        self_blend=spec.self_blend,
        region_targets=region_weight > 0,
    ) as dataset:
        for phase_epochs, learning_rate, unfreeze in phases:
            if unfreeze is not None:
                with strategy.scope():
                    set_base_trainable(model, True, unfreeze)
                    _compile(fitted, cfg, learning_rate, steps * phase_epochs, region_weight)
            fit = fitted.fit(
                dataset,
                steps_per_epoch=steps,
                epochs=done + phase_epochs,
                initial_epoch=done,
                validation_data=(val["image"], val_targets),
                validation_batch_size=batch,
                callbacks=[
                    stopper,
                    _EpochLogger(variant, done + phase_epochs),
                    *([budget] if budget is not None else []),
                ],
                verbose=0,
            )
            for key, values in fit.history.items():
                # score_auc -> auc, so curves and tables read the same for every variant
                history.setdefault(metric_name(key), []).extend(float(v) for v in values)
            done += len(fit.history.get("loss", []))
            if budget is not None and budget.exhausted:
                break
    return model, history
