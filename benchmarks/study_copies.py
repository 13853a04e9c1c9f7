"""The study's rows judged like the recipe: each trained model on both copies of its split.

    python benchmarks/study_copies.py [--store var/bench/study600] [--data-dir DIR]

`benchmarks/study600.sh` trains the study's five variants on one seeded split of the 600 px
originals; the train job judges them on the evaluation images' original bytes only. This
reads each run back from that store (its logged model, its evaluation ids, the threshold its
validation split chose) and scores the same evaluation images twice: from the original lake
and from the platform re-encode that `make bench-accuracy` writes (512 px, q85 4:2:0, read
back through the ingest decode path). It also prints the pose-balanced AUC (the pose-only
model fitted on the run's training side, as in benchmarks/accuracy.py) and that model's own
AUC. Nothing here feeds back into training, thresholds or model choice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.accuracy import COPIES, DEFAULT_DATA, copy_metrics
from benchmarks.common import BENCH_DIR, lake_pixels, machine_line, pose_table, print_table

STUDY_ORDER = ("simple", "vgg16", "efficientnetb4", "custom", "custom_aug")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(BENCH_DIR / "study600"))
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--experiment", default="study600")
    args = parser.parse_args()
    store, data_dir = Path(args.store).resolve(), Path(args.data_dir).resolve()
    lakes_dir = BENCH_DIR / "accuracy" / data_dir.name
    lakes = {"original": lakes_dir / "lake", "reencoded": lakes_dir / "lake-reencoded"}
    for path in (store / "mlflow.db", *lakes.values()):
        if not path.exists():
            print(f"error: {path} not found (run benchmarks/study600.sh first)", file=sys.stderr)
            return 1
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(machine_line())

    import mlflow
    import numpy as np

    import fakeface  # noqa: F401  (registers the custom layers for loading)
    from fakeface.metrics import pose_propensity, roc_auc
    from fakeface.train import EVAL_IDS_ARTIFACT, predict

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: no experiment {args.experiment!r} in {store}", file=sys.stderr)
        return 1
    runs = client.search_runs(
        [experiment.experiment_id], "tags.job = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )  # fmt: skip
    latest: dict[str, object] = {}
    for run in runs:  # newest finished run per variant that logged a model
        variant = run.data.tags.get("variant")
        if variant and "model_uri" in run.data.tags and variant not in latest:
            latest[variant] = run
    if not latest:
        print(f"error: no finished training run in {args.experiment!r}", file=sys.stderr)
        return 1
    pixels = {copy: lake_pixels(lake) for copy, lake in lakes.items()}
    pose = pose_table(data_dir)
    originals = pixels["original"]
    id_to_key = {v[0]: k for k, v in originals.items()}
    rows: dict[str, list[list]] = {c: [] for c in COPIES}
    for variant in [v for v in STUDY_ORDER if v in latest] + sorted(set(latest) - set(STUDY_ORDER)):
        run = latest[variant]
        eval_ids = mlflow.artifacts.load_text(
            f"{run.info.artifact_uri}/{EVAL_IDS_ARTIFACT}"
        ).split()
        keys = [id_to_key[i] for i in eval_ids if i in id_to_key]
        train_keys = sorted(set(originals) - set(keys))
        y = np.array([originals[k][2] for k in keys], int)
        levels = [originals[k][3] for k in keys]
        propensity = pose_propensity(
            np.array([pose[k] for k in train_keys]),
            np.array([originals[k][2] for k in train_keys], int),
            np.array([pose[k] for k in keys]),
            seed=0,
        )
        threshold = float(run.data.metrics["threshold"])
        model = mlflow.keras.load_model(run.data.tags["model_uri"])
        epochs = int(run.data.metrics.get("epochs_run", 0))
        minutes = run.data.metrics.get("train_seconds", float("nan")) / 60
        for copy in COPIES:
            images = np.stack([pixels[copy][k][1] for k in keys])
            m = copy_metrics(y, predict(model, images, 16), threshold, levels, propensity)
            rows[copy].append(
                [
                    variant, m["accuracy"], m["auc"], m["pose_auc"],
                    m.get("accuracy_easy"), m.get("accuracy_mid"), m.get("accuracy_hard"),
                    m.get("accuracy_real"), roc_auc(y, propensity), epochs, minutes,
                ]
            )  # fmt: skip
        del model
    header = ["variant", "accuracy", "AUC", "pose AUC", "easy", "mid", "hard", "real kept",
              "pose-only AUC", "epochs", "minutes"]  # fmt: skip
    for copy in COPIES:
        print_table(
            f"the study's variants on the {copy} copy of their evaluation split "
            f"({len(keys)} images of {data_dir.name})",
            header,
            rows[copy],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
