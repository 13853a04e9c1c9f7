"""Accuracy evaluation: stratified 5-fold CV of the production recipe, judged on two copies.

    python benchmarks/accuracy.py [--data-dir ../shared/data/real-and-fake-face-600]
        [--folds 5] [--variant NAME] [--set section.key=value ...]

1. Ingests the data folder with the ingest job's own code (conf/local.yaml defaults: the
   path the outside judge takes) and writes a platform re-encode of every image
   (`fakeface.reencode.platform_reencode`: 512 px bilinear, baseline JPEG q85 4:2:0, no
   metadata), ingested the same way: the decode path of `jobs/score.py`.
2. Runs the training job's cross-validation on the original copy (label x level strata,
   seed from config; the validation split carved from each training side drives early
   stopping and the threshold). The re-encoded copy never drives anything: each fold's
   model only scores the re-encodes of its own evaluation images, at the fold's threshold.
3. Pose balance: four face-mesh numbers per image (`fakeface.landmarks`, taken on the
   original file); per fold a gradient-boosted model of the label from them alone is fitted
   on the fold's training side and cuts its evaluation images into 5 equal bands; AUC within
   each band, averaged by band size. Its own AUC is printed: what pose alone would score.

A third copy, `unseen`, is a re-encode at a setting the part recipe's training
augmentation never uses (`fakeface.reencode.UNSEEN_SETTING`: 448 px, quality 60, 4:2:2),
made from the original copy's pixels of each fold's evaluation images.

Prints, per copy, per fold and mean +- std: accuracy, AUC, pose-balanced AUC, recall per
level, reals kept, epochs and minutes; then pooled out-of-fold figures with bootstrap 95%
intervals; then, for a part model, each part's AUC against its flag over all images (reals
count as 0) and within fakes only, per copy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DIR,
    lake_pixels,
    machine_line,
    pose_table,
    print_table,
    relative_key,
    setup_environment,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-and-fake-face-600"
COPIES = ("original", "reencoded", "unseen")


def copy_metrics(y, scores, threshold, levels, propensity) -> dict[str, float]:
    """classification_metrics plus the pose-balanced AUC."""
    from fakeface.metrics import classification_metrics, pose_balanced_auc

    m = classification_metrics(y, scores, threshold, levels)
    m["pose_auc"] = pose_balanced_auc(y, scores, propensity)
    return m


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variant", default=None, help="default: the production recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--save-predictions",
        default=None,
        metavar="CSV",
        help="write every out-of-fold score (each copy, the fold's threshold and pose"
        " propensity) here, to combine models on the same folds afterwards",
    )
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    if not data_dir.is_dir():
        print(f"error: data folder not found: {data_dir}", file=sys.stderr)
        return 1
    setup_environment()
    print(machine_line())

    import numpy as np
    import pandas as pd

    from fakeface import registry
    from fakeface.cli import setup_logging
    from fakeface.config import load_config
    from fakeface.ingest import read_ingested, run_ingest
    from fakeface.metrics import bootstrap_interval, pose_propensity, roc_auc
    from fakeface.outputs import MODEL_OUTPUTS, PART_NAMES
    from fakeface.reencode import UNSEEN_SETTING, reencode_pixels, reencode_tree
    from fakeface.selfblend import parse_region_flags
    from fakeface.spark import build_spark_session
    from fakeface.train import predict_outputs, resolve_variants, run_train

    setup_logging()
    store = BENCH_DIR / "accuracy" / data_dir.name
    store.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        [f"mlflow.artifact_root={store / 'artifacts'}", "train.register=false", *args.overrides],
    )
    registry.check_tracking_uri(cfg.tracking_uri)
    suffixes = tuple(e.lower() for e in cfg.ingest.extensions)
    reencoded_dir = store / "reencoded"
    n_copied = reencode_tree(data_dir, reencoded_dir, suffixes)
    print(f"re-encoded copy: {n_copied} files in {reencoded_dir}")
    pose = pose_table(data_dir)
    print(
        f"pose numbers: {len(pose)} images, no face found in "
        f"{sum(1 for v in pose.values() if not np.isfinite(v).all())}"
    )

    spark = build_spark_session(cfg, "bench-accuracy")
    # One lake per ingest size: runs of variants at other sizes never replace each other's.
    size = cfg.ingest.image_size
    lakes = {"original": store / f"lake-{size}", "reencoded": store / f"lake-reencoded-{size}"}
    run_ingest(spark, cfg, str(data_dir), str(lakes["original"]), "2026-01-01")
    run_ingest(spark, cfg, str(reencoded_dir), str(lakes["reencoded"]), "2026-01-01")
    meta = (
        read_ingested(spark, str(lakes["original"]))
        .where("status = 'ok'")
        .select("image_id", "path")
        .toPandas()
    )
    variants = resolve_variants(args.variant, cfg)
    (result,) = run_train(
        spark,
        cfg,
        str(lakes["original"]),
        variants,
        args.folds,
        cfg.train.weights,
        cfg.train.epochs,
    )
    spark.stop()

    key_of = {i: relative_key(p) for i, p in zip(meta.image_id, meta.path, strict=True)}
    re_pixels = {key: row[1] for key, row in lake_pixels(lakes["reencoded"]).items()}
    orig_pixels = {key: row[1] for key, row in lake_pixels(lakes["original"]).items()}
    all_ids = set(meta.image_id)
    labels_of = dict(zip(result.predictions.image_id, result.predictions.label, strict=True))
    fold_rows: dict[str, list[list]] = {c: [] for c in COPIES}
    pooled: dict[str, dict[str, list]] = {
        c: {"y": [], "s": [], "lv": [], "p": [], "parts": [], "flags": []} for c in COPIES
    }
    part_rows: dict[str, list[list]] = {c: [] for c in COPIES}
    saved: list[pd.DataFrame] = []
    nuisance_aucs = []
    for k, fold in enumerate(result.fold_results):
        pred = fold.predictions
        eval_ids = list(pred.image_id)
        train_ids = sorted(all_ids - set(eval_ids))
        train_x = np.array([pose[key_of[i]] for i in train_ids])
        train_y = np.array([labels_of[i] for i in train_ids])
        eval_x = np.array([pose[key_of[i]] for i in eval_ids])
        propensity = pose_propensity(train_x, train_y, eval_x, seed=cfg.train.seed)
        y = pred.label.to_numpy()
        nuisance_aucs.append(roc_auc(y, propensity))
        batch = cfg.train.batch_size
        outputs = {
            "original": predict_outputs(
                fold.model, np.stack([orig_pixels[key_of[i]] for i in eval_ids]), batch
            ),
            "reencoded": predict_outputs(
                fold.model, np.stack([re_pixels[key_of[i]] for i in eval_ids]), batch
            ),
            "unseen": predict_outputs(
                fold.model,
                np.stack(
                    [reencode_pixels(orig_pixels[key_of[i]], **UNSEEN_SETTING) for i in eval_ids]
                ),
                batch,
            ),
        }
        scores = {copy: out[:, 0] for copy, out in outputs.items()}
        for copy, out in outputs.items():
            saved.append(
                pd.DataFrame(
                    {
                        "key": [key_of[i] for i in eval_ids],
                        "fold": k,
                        "copy": copy,
                        "label": y,
                        "level": list(pred.level),
                        "regions": list(pred.regions),
                        "threshold": fold.threshold,
                        "propensity": propensity,
                        **{col: out[:, j] for j, col in enumerate(MODEL_OUTPUTS)},
                    }
                )
            )
        flags = parse_region_flags(pred.regions.to_numpy()) * y[:, None]
        for copy in COPIES:
            parts = outputs[copy][:, 1:5]
            pooled[copy]["parts"].append(parts)
            pooled[copy]["flags"].append(flags)
            if np.isfinite(parts).any():
                fake = y == 1
                part_rows[copy].append(
                    [k]
                    + [roc_auc(flags[:, j], parts[:, j]) for j in range(len(PART_NAMES))]
                    + [roc_auc(flags[fake, j], parts[fake, j]) for j in range(len(PART_NAMES))]
                )
        for copy in COPIES:
            m = copy_metrics(y, scores[copy], fold.threshold, list(pred.level), propensity)
            fold_rows[copy].append(
                [
                    k,
                    m["accuracy"],
                    m["auc"],
                    m["pose_auc"],
                    m.get("accuracy_easy", float("nan")),
                    m.get("accuracy_mid", float("nan")),
                    m.get("accuracy_hard", float("nan")),
                    m.get("accuracy_real", float("nan")),
                    nuisance_aucs[-1],
                    fold.epochs_run,
                    fold.seconds / 60,
                ]
            )
            # Each row judged at its own fold's threshold: shift so one cut applies.
            pooled[copy]["y"].append(y)
            pooled[copy]["s"].append(scores[copy] - fold.threshold + 0.5)
            pooled[copy]["lv"].extend(pred.level)
            pooled[copy]["p"].append(propensity)

    headers = [
        "fold",
        "accuracy",
        "AUC",
        "pose AUC",
        "easy",
        "mid",
        "hard",
        "real kept",
        "pose-only AUC",
        "epochs",
        "minutes",
    ]
    for copy in COPIES:
        rows = fold_rows[copy]
        values = np.array([r[1:] for r in rows], dtype=float)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        rows.append(["mean ± std", *[f"{a:.3f} ± {s:.3f}" for a, s in zip(mean, std, strict=True)]])
        print_table(
            f"{variants[0]} on the {copy} copy of {data_dir.name}: stratified {args.folds}-fold"
            f" CV, seed {cfg.train.seed}",
            headers,
            rows,
        )
    for copy in COPIES:
        y = np.concatenate(pooled[copy]["y"])
        s = np.concatenate(pooled[copy]["s"])
        p = np.concatenate(pooled[copy]["p"])
        m = copy_metrics(y, s, 0.5, pooled[copy]["lv"], p)
        ci = bootstrap_interval(y, s, 0.5, n_boot=1000, seed=cfg.train.seed)
        print(
            f"\n{copy}: pooled out-of-fold ({len(y)} images): accuracy {m['accuracy']:.3f} "
            f"[95% CI {ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}], AUC {m['auc']:.3f} "
            f"[95% CI {ci['auc'][0]:.3f}-{ci['auc'][1]:.3f}], pose-balanced AUC "
            f"{m['pose_auc']:.3f}; majority baseline {m['majority_baseline']:.3f}"
        )
        print(
            "  recall by level: "
            + ", ".join(
                f"{k} {m.get('accuracy_' + k, float('nan')):.3f}" for k in ("easy", "mid", "hard")
            )
            + f"; real kept {m.get('accuracy_real', float('nan')):.3f}"
        )
    for copy in COPIES:
        rows = part_rows[copy]
        if not rows:
            continue
        values = np.array([r[1:] for r in rows], dtype=float)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        rows.append(["mean ± std", *[f"{a:.3f} ± {s:.3f}" for a, s in zip(mean, std, strict=True)]])
        parts = np.concatenate(pooled[copy]["parts"])
        flags = np.concatenate(pooled[copy]["flags"])
        fake = np.concatenate(pooled[copy]["y"]) == 1
        rows.append(
            ["pooled"]
            + [f"{roc_auc(flags[:, j], parts[:, j]):.3f}" for j in range(len(PART_NAMES))]
            + [f"{roc_auc(flags[fake, j], parts[fake, j]):.3f}" for j in range(len(PART_NAMES))]
        )
        print_table(
            f"{variants[0]}, each part's AUC against its flag, {copy} copy: all images (reals"
            " count as 0) | fakes only",
            ["fold", *(f"{n} all" for n in PART_NAMES), *(f"{n} fakes" for n in PART_NAMES)],
            rows,
        )
    if args.save_predictions:
        pd.concat(saved, ignore_index=True).to_csv(args.save_predictions, index=False)
        print(f"\nout-of-fold scores written to {args.save_predictions}")
    print(
        f"\npose-only model (4 mesh numbers, gradient boosting, fitted per fold): AUC "
        f"{np.mean(nuisance_aucs):.3f} ± {np.std(nuisance_aucs):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
