"""Accuracy evaluation: stratified 5-fold CV of the production recipe on the real data set.

    python benchmarks/accuracy.py [--data-dir ../shared/data/real-and-fake-face-160]
        [--folds 5] [--variant NAME] [--set section.key=value ...]

Ingests the shared folder with the ingest job's own code (conf/local.yaml: the same path the
held-out quarter takes), then runs the training job's cross-validation (label x level
strata, seed from config; validation carved from each training side drives early stopping
and the threshold). Prints per-fold and mean +- std accuracy, AUC and per-level recall, a
bootstrap 95% interval over the pooled out-of-fold predictions, and minutes per fold.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DIR, machine_line, print_table, setup_environment

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-and-fake-face-160"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variant", default=None, help="default: the production recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if not Path(args.data_dir).is_dir():
        print(f"error: data folder not found: {args.data_dir}", file=sys.stderr)
        return 1
    setup_environment()
    print(machine_line())

    import numpy as np

    from fakeface import registry
    from fakeface.cli import setup_logging
    from fakeface.config import load_config
    from fakeface.ingest import run_ingest
    from fakeface.metrics import bootstrap_interval, classification_metrics
    from fakeface.spark import build_spark_session
    from fakeface.train import resolve_variants, run_train

    setup_logging()
    store = BENCH_DIR / "accuracy"
    store.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        [f"mlflow.artifact_root={store / 'artifacts'}", "train.register=false", *args.overrides],
    )
    registry.check_tracking_uri(cfg.tracking_uri)
    spark = build_spark_session(cfg, "bench-accuracy")
    lake = store / "lake"
    run_ingest(spark, cfg, args.data_dir, str(lake), "2026-01-01")
    variants = resolve_variants(args.variant, cfg)
    (result,) = run_train(
        spark, cfg, str(lake), variants, args.folds, cfg.train.weights, cfg.train.epochs
    )
    spark.stop()

    rows = []
    for k, fold in enumerate(result.fold_results):
        m = fold.metrics
        rows.append(
            [
                k,
                m["accuracy"],
                m["auc"],
                m.get("accuracy_easy", float("nan")),
                m.get("accuracy_mid", float("nan")),
                m.get("accuracy_hard", float("nan")),
                m.get("accuracy_real", float("nan")),
                fold.epochs_run,
                fold.seconds / 60,
            ]
        )
    values = np.array([r[1:] for r in rows], dtype=float)
    mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    rows.append(["mean ± std", *[f"{a:.3f} ± {s:.3f}" for a, s in zip(mean, std, strict=True)]])
    print_table(
        f"{variants[0]}: stratified {args.folds}-fold CV, seed {cfg.train.seed}",
        ["fold", "accuracy", "AUC", "easy", "mid", "hard", "real", "epochs", "minutes"],
        rows,
    )
    oof = result.predictions
    y = oof["label"].to_numpy()
    scores = oof["p_fake"].to_numpy()
    # Each row is judged at its own fold's threshold: shift scores so one cut applies.
    shifted = scores - oof["threshold"].to_numpy() + 0.5
    pooled = classification_metrics(y, shifted, 0.5, list(oof["level"]))
    ci = bootstrap_interval(y, shifted, 0.5, n_boot=1000, seed=cfg.train.seed)
    print(
        f"\npooled out-of-fold ({len(y)} images): accuracy {pooled['accuracy']:.3f} "
        f"[95% CI {ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}], AUC {pooled['auc']:.3f} "
        f"[95% CI {ci['auc'][0]:.3f}-{ci['auc'][1]:.3f}] (AUC pooled across folds' scores), "
        f"majority baseline {pooled['majority_baseline']:.3f}"
    )
    print(
        "recall by level: "
        + ", ".join(
            f"{k} {pooled.get('accuracy_' + k, float('nan')):.3f}" for k in ("easy", "mid", "hard")
        )
        + f"; real kept {pooled.get('accuracy_real', float('nan')):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
