"""Issue 17, direction 3: the part model and a photo-level model combined on the same folds.

    python research/accuracy/combine_oof.py PART.csv PHOTO.csv

Both CSVs come from `benchmarks/accuracy.py --save-predictions` (the same folds: the training
job's, seed 0). Each model's score is centred on its own fold threshold in logit space, and
the two logits are summed with equal weights (nothing tuned on the evaluation folds).
Pose-balanced AUC uses the part run's per-fold propensities.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from fakeface.metrics import pose_balanced_auc, roc_auc


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main() -> int:
    part, photo = (pd.read_csv(p) for p in sys.argv[1:3])
    both = part.merge(photo, on=["key", "copy"], suffixes=("", "_photo"))
    assert (both.fold == both.fold_photo).all(), "the two runs used different folds"
    for copy, g in both.groupby("copy", sort=False):
        y = g.label.to_numpy()
        a = logit(g.p_fake.to_numpy()) - logit(g.threshold.to_numpy())
        b = logit(g.p_fake_photo.to_numpy()) - logit(g.threshold_photo.to_numpy())
        lv = g.level.to_numpy()
        for name, s in (("part model", a), ("photo model", b), ("sum of logits", a + b)):
            pred = s >= 0
            rec = "/".join(f"{pred[lv == k].mean():.2f}" for k in ("easy", "mid", "hard"))
            print(
                f"{copy:10s} {name:14s} acc {(pred == y).mean():.3f} AUC {roc_auc(y, s):.3f}"
                f" pose-bal {pose_balanced_auc(y, s, g.propensity.to_numpy()):.3f}"
                f" easy/mid/hard {rec} reals kept {(~pred[y == 0]).mean():.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
