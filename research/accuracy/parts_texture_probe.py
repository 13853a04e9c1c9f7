"""Issue 12 probe: part statistics (mesh_probe.py 'regring') fused with HOG + LBP at 160 px.

    PYTHONPATH=/work/main python research/accuracy/parts_texture_probe.py

Texture descriptors come from the production layers (fakeface.models.texture) on each copy
resized to 160 px in-graph, as texture_kernel reads them. One RBF SVM per feature group
(C = 1, gamma = scale, standardised), fused by the mean of the two decision values
z-scored on the training fold. StratifiedKFold(5, shuffle, seed 0) on label x level; trained
on the original copy's training folds, scored on both copies; pose-balanced AUC as in
mesh_probe.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import research.accuracy.mesh_probe as mp


def texture_features(copy: str) -> np.ndarray:
    cache = Path(f"/tmp/ff/tex160-{copy}.npy")
    if cache.exists():
        return np.load(cache)
    import keras

    from fakeface.models.texture import GradientOrientationHistogram, LocalBinaryPatternHistogram

    inputs = keras.Input((None, None, 3), dtype="uint8")
    x = keras.layers.Resizing(160, 160)(keras.ops.cast(inputs, "float32"))
    hog = keras.layers.Flatten()(GradientOrientationHistogram(orientations=9, cell_size=8)(x))
    lbp = keras.layers.Flatten()(LocalBinaryPatternHistogram(radius=1, cell_size=16)(x))
    model = keras.Model(inputs, keras.layers.Concatenate()([hog, lbp]))
    root = mp.DATA if copy == "orig" else mp.RE
    rows = []
    files = mp.files()
    for i in range(0, len(files), 64):
        batch = np.stack(
            [np.asarray(Image.open(root / f.relative_to(mp.DATA)).convert("RGB").resize((600, 600)))
             for f in files[i : i + 64]]
        )
        rows.append(model.predict(batch, verbose=0))
    out = np.concatenate(rows)
    np.save(cache, out)
    return out


def main() -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from fakeface.landmarks import pose_features
    from fakeface.metrics import pose_balanced_auc, pose_propensity, roc_auc

    files = mp.files()
    y = np.array([0 if "real" in f.parent.name else 1 for f in files])
    level = np.array(["real" if t == 0 else f.name.split("_")[0] for f, t in zip(files, y)])
    meshes = mp.meshes()
    pose = np.array([pose_features(m, 600, 600) for m in meshes["orig"]])
    groups = {
        "parts": {c: np.load(f"/tmp/ff/feat600-{c}-regring.npy") for c in ("orig", "re")},
        "texture": {c: texture_features(c) for c in ("orig", "re")},
    }
    scores = {g: {c: np.zeros(len(y)) for c in ("orig", "re")} for g in [*groups, "fused"]}
    prop = np.zeros(len(y))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(files, level):
        for g, X in groups.items():
            model = make_pipeline(SimpleImputer(), StandardScaler(), SVC(C=1.0, gamma="scale"))
            model.fit(X["orig"][tr], y[tr])
            train_d = model.decision_function(X["orig"][tr])
            mu, sd = train_d.mean(), train_d.std() + 1e-9
            for c in ("orig", "re"):
                scores[g][c][te] = (model.decision_function(X[c][te]) - mu) / sd
        for c in ("orig", "re"):
            scores["fused"][c][te] = (scores["parts"][c][te] + scores["texture"][c][te]) / 2
        prop[te] = pose_propensity(pose[tr], y[tr], pose[te])
    print(f"pose-only AUC {roc_auc(y, prop):.3f}")
    easy = (level == "easy") | (y == 0)
    for g in scores:
        for c in ("orig", "re"):
            s = scores[g][c]
            print(f"{g:8s} {c:4s}: AUC {roc_auc(y, s):.3f} pose-balanced "
                  f"{pose_balanced_auc(y, s, prop):.3f} easy-vs-real {roc_auc(y[easy], s[easy]):.3f}")


if __name__ == "__main__":
    main()
