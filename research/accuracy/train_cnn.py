"""CNN from scratch on eye-aligned faces, optional self-blended fakes + region-flag aux head.

Usage: taskset -c 1 python train_cnn.py --folds 0 --epochs 20 --sbi 0.5 --aux 0.5 --tag name
Validation = 20% stratified carve-out of the training side: picks the epoch and the threshold.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import common  # noqa: E402
from fakeface.selfblend import make_self_blended  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--folds", default="0")
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--size", type=int, default=128)
ap.add_argument("--input", type=int, default=128, help="network input side (resized)")
ap.add_argument("--width", type=int, default=16)
ap.add_argument("--sbi", type=float, default=0.0, help="self-blended fakes per real per epoch")
ap.add_argument("--sbi_donor", type=float, default=0.5, help="fraction of SBI using another real face as donor")
ap.add_argument("--aux", type=float, default=0.0, help="weight of region-flag aux loss (eyes, nose, mouth)")
ap.add_argument("--hp", type=int, default=0, help="add fixed high-pass residual channels")
ap.add_argument("--ls", type=float, default=0.0)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--wd", type=float, default=1e-4)
ap.add_argument("--tag", default="cnn")
ap.add_argument("--stem_stride", type=int, default=1)
ap.add_argument("--seed", type=int, default=0, help="added to the fold index for init/sampling seeds")
ap.add_argument("--unaligned", type=int, default=0, help="use the raw 160 px images (SBI still placed by landmarks)")
args = ap.parse_args()

d = common.load()
if args.unaligned:
    import feats

    X, P = d["x"], feats.fill_pts(d["pts"])
    args.size = X.shape[1]
else:
    z = np.load(f"/tmp/ff/aligned{args.size}.npz")
    X, P = z["x"], z["pts"]
y, lev, fl = d["y"], d["level"], d["flags"]
aux_t = np.stack([np.maximum(fl[:, 0], fl[:, 1]), fl[:, 2], fl[:, 3]], 1).astype(np.float32)


class HighPass(layers.Layer):
    """Fixed 3x3 Laplacian + horizontal/vertical 2nd-derivative residuals of the grey image."""

    def call(self, x):
        g = keras.ops.mean(x, axis=-1, keepdims=True)
        k = np.array(
            [[[0, -1, 0], [-1, 4, -1], [0, -1, 0]], [[0, 0, 0], [-1, 2, -1], [0, 0, 0]], [[0, -1, 0], [0, 2, 0], [0, -1, 0]]],
            np.float32,
        ).transpose(1, 2, 0)[:, :, None, :]
        r = keras.ops.conv(g, k, padding="same")
        return keras.ops.concatenate([x, 4.0 * r], axis=-1)


def block(x, f, stride):
    sc = x
    x = layers.Conv2D(f, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if stride != 1 or sc.shape[-1] != f:
        sc = layers.Conv2D(f, 1, strides=stride, use_bias=False)(sc)
        sc = layers.BatchNormalization()(sc)
    return layers.Activation("relu")(layers.Add()([x, sc]))


def build(seed):
    keras.utils.set_random_seed(seed)
    w = args.width
    inp = keras.Input((args.size, args.size, 3), dtype="uint8")
    x = layers.Rescaling(1 / 127.5, offset=-1)(keras.ops.cast(inp, "float32"))
    if args.input != args.size:
        x = layers.Resizing(args.input, args.input)(x)
    if args.hp:
        x = HighPass()(x)
    x = layers.Conv2D(w, 3, strides=args.stem_stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = block(x, w * 2, 2)
    x = block(x, w * 4, 2)
    x = block(x, w * 8, 2)
    x = block(x, w * 8, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, activation="sigmoid", name="main")(x)
    aux = layers.Dense(3, activation="sigmoid", name="aux")(x)
    return keras.Model(inp, [out, aux])


def augment(imgs, rng):
    out = imgs.copy()
    flip = rng.uniform(size=len(imgs)) < 0.5
    out[flip] = out[flip, :, ::-1]
    for i in range(len(out)):  # small shift (+-4 px) via roll
        dy, dx = rng.integers(-4, 5, size=2)
        out[i] = np.roll(out[i], (dy, dx), axis=(0, 1))
    return out


def epoch_data(tr, rng):
    xs, ys, auxs = [X[tr]], [y[tr].astype(np.float32)], [aux_t[tr]]
    if args.sbi > 0:
        reals = tr[y[tr] == 0]
        n = int(round(args.sbi * len(reals)))
        pick = rng.choice(reals, n, replace=n > len(reals))
        sb, sa = [], []
        for i in pick:
            donor = dl = None
            if rng.uniform() < args.sbi_donor:
                j = rng.choice(reals)
                donor, dl = X[j], P[j]
            img, _, f = make_self_blended(X[i], rng, landmarks=P[i], donor=donor, donor_landmarks=dl)
            sb.append(img)
            sa.append([max(f[0], f[1]), f[2], f[3]])
        xs.append(np.stack(sb))
        ys.append(np.ones(n, np.float32))
        auxs.append(np.array(sa, np.float32))
    xe, ye, ae = np.concatenate(xs), np.concatenate(ys), np.concatenate(auxs)
    xe = augment(xe, rng)
    perm = rng.permutation(len(xe))
    return xe[perm], ye[perm], ae[perm]


def predict(m, idx):
    p1 = m.predict(X[idx], batch_size=128, verbose=0)[0][:, 0]
    p2 = m.predict(X[idx][:, :, ::-1], batch_size=128, verbose=0)[0][:, 0]
    return (p1 + p2) / 2


rows = []
fl_all = common.folds(d)
for k in [int(f) for f in args.folds.split(",")]:
    t0 = time.time()
    tr_all, te = fl_all[k]
    tr, va = common.inner_split(tr_all, lev)
    rng = np.random.default_rng(k + 1000 * args.seed)
    m = build(k + 1000 * args.seed)
    steps = args.epochs * int(np.ceil(len(tr) * (1 + args.sbi * 0.53) / args.batch))
    sched = keras.optimizers.schedules.CosineDecay(0.0, steps, alpha=0.02, warmup_target=args.lr, warmup_steps=steps // 20)
    m.compile(
        optimizer=keras.optimizers.AdamW(sched, weight_decay=args.wd),
        loss={"main": keras.losses.BinaryCrossentropy(label_smoothing=args.ls), "aux": "binary_crossentropy"},
        loss_weights={"main": 1.0, "aux": args.aux},
    )
    best, best_w, hist = -1, None, []
    for ep in range(args.epochs):
        xe, ye, ae = epoch_data(tr, rng)
        h = m.fit(xe, {"main": ye, "aux": ae}, batch_size=args.batch, epochs=1, verbose=0)
        sv = predict(m, va)
        auc = roc_auc_score(y[va], sv)
        hist.append(round(auc, 3))
        if auc > best:
            best, best_w, best_ep = auc, m.get_weights(), ep
        print(f"fold {k} ep {ep} loss {h.history['loss'][-1]:.3f} val_auc {auc:.3f} t {time.time() - t0:.0f}s", flush=True)
    m.set_weights(best_w)
    sv = predict(m, va)
    thr = common.best_threshold(y[va], sv)
    st = predict(m, te)
    r = common.metrics(y[te], st, thr, lev[te])
    r.update(fold=k, best_ep=best_ep, val_auc=best, minutes=(time.time() - t0) / 60)
    rows.append(r)
    np.save(f"/tmp/ff/scores_{args.tag}_f{k}.npy", np.stack([te, st]))
    np.save(f"/tmp/ff/val_{args.tag}_f{k}.npy", np.stack([va, sv]))
    print(json.dumps(r), flush=True)
print(f"{args.tag} {vars(args)}\n  {common.summarize(rows)}  min/fold={np.mean([r['minutes'] for r in rows]):.1f}")
