"""Align faces by the eyes (similarity transform, MTCNN landmarks) to a canonical crop; cache."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import feats  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def align_all(size=128, eye_y=0.40, eye_dx=0.33):
    """Return aligned uint8 faces (N,size,size,3) and their landmarks in the aligned frame."""
    d = common.load()
    pts = feats.fill_pts(d["pts"])
    dst_l = np.array([size * (0.5 - eye_dx / 2), size * eye_y])
    dst_r = np.array([size * (0.5 + eye_dx / 2), size * eye_y])
    out = np.zeros((len(pts), size, size, 3), np.uint8)
    apts = np.zeros_like(pts)
    for i, p in enumerate(pts):
        s_vec = p[1] - p[0]
        d_vec = dst_r - dst_l
        scale = np.linalg.norm(s_vec) / np.linalg.norm(d_vec)  # input px per output px
        ang = np.arctan2(s_vec[1], s_vec[0]) - np.arctan2(d_vec[1], d_vec[0])
        c, s = np.cos(ang) * scale, np.sin(ang) * scale
        a, b, e = c, -s, s
        dd = c
        # x_in = a*x + b*y + tx ; y_in = e*x + dd*y + ty ; map dst_l -> p[0]
        tx = p[0][0] - (a * dst_l[0] + b * dst_l[1])
        ty = p[0][1] - (e * dst_l[0] + dd * dst_l[1])
        im = Image.fromarray(d["x"][i])
        out[i] = np.array(im.transform((size, size), Image.AFFINE, (a, b, tx, e, dd, ty), resample=Image.BILINEAR))
        M = np.array([[a, b], [e, dd]])
        apts[i] = (np.linalg.inv(M) @ (p - np.array([tx, ty])).T).T
    return out, apts


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    x, ap = align_all(size)
    np.savez(f"/tmp/ff/aligned{size}.npz", x=x, pts=ap)
    print("canonical landmarks", np.median(ap, 0).round(1).tolist())
    Image.fromarray(np.concatenate([np.concatenate(list(x[j * 8 : j * 8 + 8]), 1) for j in (0, 100, 150)], 0)).save("/tmp/ff/aligned.png")
    Image.fromarray(x[:803].mean(0).astype(np.uint8)).save("/tmp/ff/aligned_mean.png")
