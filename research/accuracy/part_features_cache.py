"""Issue 17: per-part features (fakeface.models.part_features) of every 600 px original and
of its re-encoded copies, cached in /tmp/ff/partfeat.npz for part_heads_probe.py.

    PYTHONPATH=. python research/accuracy/part_features_cache.py

Copies per image: `orig` (the file), `re` (fakeface.reencode.platform_reencode: 512 px q85
4:2:0, decoded back to 600 px as the scoring job does), `aug0`..`aug2` (random_reencode,
seeded by image index: the training ranges), `unseen` (UNSEEN_SETTING: q60 4:2:2, 448 px).
Also the pose numbers of the original's mesh. Two processes, one TFLite thread each.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "real-and-fake-face-600"
CACHE = Path("/tmp/ff/partfeat.npz")
COPIES = ("orig", "re", "aug0", "aug1", "aug2", "unseen")
_MESHER = None


def work(args):
    i, path = args
    global _MESHER
    from PIL import Image

    from fakeface.landmarks import FaceMesher, pose_features
    from fakeface.models.part_features import part_features
    from fakeface.reencode import (
        UNSEEN_SETTING,
        platform_reencode,
        random_reencode,
        reencode_pixels,
    )

    if _MESHER is None:
        _MESHER = FaceMesher()
    data = Path(path).read_bytes()
    orig = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    re = (
        Image.open(io.BytesIO(platform_reencode(data)))
        .convert("RGB")
        .resize(orig.shape[1::-1], Image.Resampling.BILINEAR)
    )
    rng = np.random.default_rng(1000 + i)
    images = {
        "orig": orig,
        "re": np.asarray(re),
        **{f"aug{k}": random_reencode(orig, rng) for k in range(3)},
        "unseen": reencode_pixels(orig, **UNSEEN_SETTING),
    }
    feats, pose = {}, None
    for name, rgb in images.items():
        mesh = _MESHER.mesh_array(rgb)
        feats[name] = part_features(rgb, mesh)
        if name == "orig":
            pose = pose_features(mesh, orig.shape[1], orig.shape[0])
    return i, feats, pose


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    files = sorted(str(p) for p in DATA.rglob("*.jpg"))
    out = {c: None for c in COPIES}
    poses = np.full((len(files), 4), np.nan)
    with mp.get_context("spawn").Pool(2) as pool:
        for n, (i, feats, pose) in enumerate(pool.imap_unordered(work, list(enumerate(files)), 8)):
            for c in COPIES:
                if out[c] is None:
                    out[c] = np.full((len(files), *feats[c].shape), np.nan, np.float32)
                out[c][i] = feats[c]
            poses[i] = pose
            if n % 200 == 0:
                print(n, flush=True)
    names = [os.path.basename(f)[:-4] for f in files]
    y = np.array([0 if n.startswith("real") else 1 for n in names])
    level = np.array(["real" if n.startswith("real") else n.split("_")[0] for n in names])
    flags = np.array(
        [[0] * 4 if n.startswith("real") else [int(c) for c in n.split("_")[-1]] for n in names]
    )
    np.savez(CACHE, files=np.array(files), y=y, level=level, flags=flags, pose=poses, **out)
    print("saved", CACHE, {c: out[c].shape for c in COPIES})
    return 0


if __name__ == "__main__":
    sys.exit(main())
