"""Held-out rehearsal: the outside judgement of the production recipe, on a quarter we hide.

    python benchmarks/heldout.py [--data-dir ../shared/data/real-and-fake-face-600]
        [--holdout 0.25] [--seed 0] [--workdir var/bench/heldout]

The judge scores the data set's held-out quarter from outside, exactly so: ingest the shared
folder with jobs/ingest.py; jobs/train.py --conf conf/local.yaml --data DIR with no other
flag; jobs/promote.py; jobs/score.py on flat folders of unlabelled JPEGs: the original bytes
and a platform re-encode of them (`fakeface.reencode`: 512 px, baseline JPEG q85, 4:2:0, no
metadata). This script does the same with spark-submit, on a stratified (label x level)
quarter of the shared images copied under anonymous names, with a fresh MLflow store, then
joins both copies' scores to the hidden answer key: accuracy at the registered threshold,
AUC, pose-balanced AUC (5 bands of a pose-only model fitted on the training images' face-mesh
numbers), per-level recall, and the minutes each job took. One split, so it moves by a few
points between seeds; it checks the production path end to end, cross-validation
(make bench-accuracy) ranks models.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import pose_table, relative_key, spark_submit_prefix  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-and-fake-face-600"
RUN_DATE = "2026-01-01"


def split_corpus(data_dir: Path, work: Path, holdout: float, seed: int) -> Path:
    """Copy a stratified holdout to work/heldout (flat, anonymous), the rest to work/train.

    Returns the answer key's path (CSV: file, label, level), kept outside both folders.
    """
    import numpy as np
    import pandas as pd

    from fakeface.decode import image_id
    from fakeface.labels import parse_path_label
    from fakeface.split import make_split

    files = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    labels = [parse_path_label(str(path)) for path in files]
    table = pd.DataFrame(
        {
            "source": files,
            "id": [image_id(path.read_bytes()) for path in files],
            "label": [label.label for label in labels],
            "level": [label.level or "real" for label in labels],
        }
    )
    # The training job's own stratified carving (label x level; identical bytes on one side).
    held_ids = make_split(
        list(table.id), list(table.label), list(table.level), holdout, 0.0, seed
    ).eval
    held = table.id.isin(held_ids).to_numpy()
    rng = np.random.default_rng(seed)
    for sub in ("train", "heldout", "heldout-reencoded"):
        shutil.rmtree(work / sub, ignore_errors=True)
    order = rng.permutation(int(held.sum()))
    names = []
    (work / "heldout").mkdir(parents=True)
    for rank, (_, row) in zip(order, table[held].iterrows(), strict=True):
        name = f"upload_{rank:05d}{row.source.suffix.lower()}"
        shutil.copyfile(row.source, work / "heldout" / name)
        names.append(name)
    for _, row in table[~held].iterrows():
        target = work / "train" / row.source.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(row.source, target)
    from fakeface.reencode import platform_reencode

    (work / "heldout-reencoded").mkdir(parents=True, exist_ok=True)
    for name in names:
        data = (work / "heldout" / name).read_bytes()
        (work / "heldout-reencoded" / name).write_bytes(platform_reencode(data))
    key = table[held].assign(file=names, source=[relative_key(str(p)) for p in table[held].source])[
        ["file", "label", "level", "source"]
    ]
    key_path = work / "answer_key.csv"
    key.to_csv(key_path, index=False)
    return key_path


def submit(job: str, *args: str, ok: tuple[int, ...] = (0,)) -> float:
    """spark-submit one job; minutes it took. Exits on an unexpected return code."""
    command = [*spark_submit_prefix(), f"jobs/{job}.py", *args]
    print("$", " ".join(command[3:]), flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode not in ok:
        raise SystemExit(f"error: jobs/{job}.py exited {done.returncode}")
    return (time.monotonic() - started) / 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--holdout", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench" / "heldout"))
    args = parser.parse_args()
    data_dir, work = Path(args.data_dir), Path(args.workdir).resolve()
    if not data_dir.is_dir():
        print(f"error: data folder not found: {data_dir}", file=sys.stderr)
        return 1
    if not 0 < args.holdout < 1:
        print(f"error: --holdout must be in (0, 1), got {args.holdout}", file=sys.stderr)
        return 1
    from benchmarks.common import machine_line, setup_environment

    setup_environment()
    print(machine_line())
    import numpy as np
    import pandas as pd

    from fakeface import registry
    from fakeface.config import load_config
    from fakeface.metrics import (
        classification_metrics,
        pose_balanced_auc,
        pose_propensity,
        roc_auc,
    )

    key = pd.read_csv(split_corpus(data_dir, work, args.holdout, args.seed))
    print(f"held out {len(key)} images ({int(key.label.sum())} fake) as a flat, unlabelled folder")
    # A fresh tracking store and registry, as on the judge's machine.
    shutil.rmtree(work / "mlflow", ignore_errors=True)
    (work / "mlflow").mkdir(parents=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    conf = "conf/local.yaml"
    lake, scores = work / "lake", work / "scores"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(scores, ignore_errors=True)
    minutes = {
        "ingest": submit(
            "ingest", "--conf", conf, "--input", str(work / "train"), "--output", str(lake)
        ),
        "train": submit("train", "--conf", conf, "--data", str(lake)),
        # 3: the candidate did not beat the champion/baseline; the judge would still score.
        "promote": submit("promote", "--conf", conf, "--data", str(lake), ok=(0, 3)),
    }
    copies = {"original": work / "heldout", "reencoded": work / "heldout-reencoded"}
    for copy, folder in copies.items():
        minutes[f"score {copy}"] = submit(
            "score",
            "--conf",
            conf,
            "--input",
            str(folder),
            "--output",
            str(scores / copy),
            "--run-date",
            RUN_DATE,
        )
    # The champion's registered threshold: the cut jobs/score.py applied for is_fake.
    cfg = load_config(ROOT / conf)
    champion = f"models:/{cfg.mlflow.registered_model}@{cfg.mlflow.champion_alias}"
    threshold = registry.resolve_model(registry.configure_mlflow(cfg), champion).threshold
    # Pose balance: a pose-only model fitted on the training images, applied to the hidden.
    pose = pose_table(data_dir)
    train_keys = [relative_key(str(p)) for p in sorted((work / "train").rglob("*.jpg"))]
    train_labels = [0 if k.startswith("training_real") else 1 for k in train_keys]
    propensity = pose_propensity(
        np.array([pose[k] for k in train_keys]),
        np.array(train_labels),
        np.array([pose[k] for k in key.source]),
        seed=args.seed,
    )
    key = key.assign(propensity=propensity)
    print(f"pose-only model on the hidden images: AUC {roc_auc(key.label, propensity):.3f}")
    for copy in copies:
        out = pd.read_parquet(scores / copy / f"run_date={RUN_DATE}")
        out["file"] = out["path"].map(lambda p: Path(str(p)).name)
        joined = key.merge(out[["file", "p_fake", "is_fake", "status"]], on="file", how="left")
        missing = int(joined["p_fake"].isna().sum())
        scored = joined.dropna(subset=["p_fake"])
        y, s = scored.label.to_numpy(), scored.p_fake.to_numpy()
        metrics = classification_metrics(y, s, threshold, list(scored.level))
        balanced = pose_balanced_auc(y, s, scored.propensity.to_numpy())
        print(
            f"\nheld-out rehearsal, {copy} copy: {len(scored)} of {len(key)} scored"
            f" ({missing} missing)"
        )
        level = {k: metrics.get(f"accuracy_{k}", np.nan) for k in ("easy", "mid", "hard", "real")}
        print(
            f"accuracy {metrics['accuracy']:.3f}, AUC {metrics['auc']:.3f}, pose-balanced AUC "
            f"{balanced:.3f}, majority {metrics['majority_baseline']:.3f}; recall easy "
            f"{level['easy']:.3f} / mid {level['mid']:.3f} / hard {level['hard']:.3f}; real kept "
            f"{level['real']:.3f} (threshold {threshold:.3f})"
        )
    print("minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
