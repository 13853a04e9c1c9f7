"""Detect MTCNN landmarks for every image once; cache to /tmp/ff/landmarks.npz (one core)."""

import glob
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from mtcnn import MTCNN  # noqa: E402
from PIL import Image  # noqa: E402

D = "/work/shared/data/real-and-fake-face-160/"
paths = sorted(glob.glob(D + "training_real/*.jpg")) + sorted(glob.glob(D + "training_fake/*.jpg"))
n = int(sys.argv[1]) if len(sys.argv) > 1 else len(paths)
det = MTCNN()
pts = np.full((len(paths), 5, 2), np.nan, np.float32)
box = np.full((len(paths), 4), np.nan, np.float32)
conf = np.zeros(len(paths), np.float32)
t = time.time()
for i, p in enumerate(paths[:n]):
    im = np.array(Image.open(p).convert("RGB"))
    r = det.detect_faces(im)
    if r:
        r = max(r, key=lambda d: d["box"][2] * d["box"][3] * d["confidence"])
        k = r["keypoints"]
        pts[i] = [k["left_eye"], k["right_eye"], k["nose"], k["mouth_left"], k["mouth_right"]]
        box[i] = r["box"]
        conf[i] = r["confidence"]
    if i % 100 == 0:
        print(i, time.time() - t, flush=True)
np.savez("/tmp/ff/landmarks.npz", paths=np.array(paths), pts=pts, box=box, conf=conf)
print("done", time.time() - t, "missing", int(np.isnan(pts[:n, 0, 0]).sum()))
