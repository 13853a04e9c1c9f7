"""Training side of the part recipe (variant `part_heads`): features, part labels, heads.

The heads are kernel machines on fixed features, solved exactly (`fit_part_heads`), so the
training job fits them here instead of running epochs: features of the training images
(and, with `train.part_reencodes`, of random platform re-encodes of them) are measured once,
in one process per core, the heads are fitted on the part labels from the file names, and
the Keras model is checked to give the numpy reference's scores on validation images.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from fakeface.models.part_heads import PartHeads, fit_part_heads, part_labels
from fakeface.outputs import PART_NAMES

log = logging.getLogger(__name__)
_CHUNK = 16  # images a worker call measures: small enough to balance, big enough to amortise


def _measure(images: np.ndarray, reencode_seeds: list[list[int]], size: int) -> np.ndarray:
    """(len(images), 1 + reencodes, parts, F): each image, then its seeded re-encodes."""
    from fakeface.models.part_model import image_part_features
    from fakeface.reencode import random_reencode

    rows = []
    for image, seeds in zip(images, reencode_seeds, strict=True):
        copies = [image] + [random_reencode(image, np.random.default_rng(s)) for s in seeds]
        rows.append(np.stack([image_part_features(c, size) for c in copies]))
    return np.stack(rows)


def measure_features(
    images: np.ndarray,
    reencodes: int,
    seed: int,
    size: int,
    workers: int | None = None,
    keys: list[str] | None = None,
) -> np.ndarray:
    """(N, 1 + reencodes, parts, F) float32 part features of uint8 images (N, H, W, 3).

    Re-encode k of an image is seeded by (seed, its key, k), the key being its image_id
    (default: its position): the same rows every run, whatever order the feed gives. With
    more than one worker, chunks go to processes of their own (one TFLite thread each).
    """
    n = len(images)
    keys = [str(i) for i in range(n)] if keys is None else [str(k) for k in keys]
    seeds = [[_seed(seed, key, k) for k in range(reencodes)] for key in keys]
    workers = workers or min(os.cpu_count() or 1, max(1, n // _CHUNK))
    if workers <= 1 or n <= _CHUNK:
        return _measure(images, seeds, size)
    import multiprocessing as mp

    starts = range(0, n, _CHUNK)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        parts = pool.map(
            _measure,
            [images[s : s + _CHUNK] for s in starts],
            [seeds[s : s + _CHUNK] for s in starts],
            [size] * len(starts),
        )
        return np.concatenate(list(parts))


def _seed(seed: int, key: str, k: int) -> int:
    """A 31-bit seed from (seed, key, k), stable across processes and Python versions."""
    digest = hashlib.blake2b(f"{seed}:{key}:{k}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def _image_id_order(split: dict[str, np.ndarray]) -> np.ndarray:
    """Row order by image_id (positions when the split has none): the feed's row order must
    not change the model (prototypes are drawn by position). Only indices: the images
    themselves are not copied."""
    if "image_id" not in split:
        return np.arange(len(split["label"]))
    return np.argsort(np.asarray(split["image_id"]).astype(str), kind="stable")


def fit_part_model(
    model: Any,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    reencodes: int,
    seed: int,
    size: int,
) -> tuple[PartHeads, dict[str, list[float]]]:
    """Fit the part heads of `model` (built by part_model.part_heads_outputs) in place.

    `train` / `val`: the training job's numpy splits (image, label, regions). Returns the
    heads and a one-step history (auc, val_auc of the noisy-OR P(fake); part val AUCs).
    """
    from fakeface.metrics import roc_auc
    from fakeface.models.part_model import assign_part_heads
    from fakeface.selfblend import parse_region_flags

    order = _image_id_order(train)
    keys = list(train["image_id"]) if "image_id" in train else None
    features = measure_features(train["image"], reencodes, seed, size, keys=keys)[order]
    image_labels = np.asarray(train["label"])[order]
    train_labels = part_labels(
        parse_region_flags(np.asarray(train["regions"])[order]), image_labels
    )
    val_labels = part_labels(parse_region_flags(val["regions"]), val["label"])
    val_features = measure_features(val["image"], 0, seed, size)[:, 0]
    copies = features.shape[1]
    rows = features.reshape(-1, *features.shape[2:])  # image-major: copies stay together
    heads = fit_part_heads(
        rows, np.repeat(train_labels, copies, axis=0), val_features, val_labels, seed=seed
    )
    assign_part_heads(model, heads)
    # The Keras model measures the pixels itself: it must give the reference's scores.
    check = np.asarray(model.predict(val["image"][:4], batch_size=4, verbose=0))
    expected = heads.predict(val_features[:4])
    if not np.allclose(check[:, :5], expected, atol=2e-3):
        raise ValueError("the part model's scores differ from its fitted heads' reference")
    p_train = heads.predict(features[:, 0])[:, 0]
    p_val = heads.predict(val_features)[:, 0]
    history = {
        "loss": [_log_loss(image_labels, p_train)],
        "auc": [roc_auc(image_labels, p_train)],
        "val_loss": [_log_loss(val["label"], p_val)],
        "val_auc": [roc_auc(val["label"], p_val)],
    }
    for name in PART_NAMES:
        history[f"val_auc_{name}"] = [heads.heads[name].val_auc]
    found = np.isfinite(features[:, 0]).reshape(len(features), -1).all(axis=1)
    log.info(
        "part heads fitted on %d images x %d copies (%d without a face): auc=%.4f val_auc=%.4f;"
        " part val AUC %s",
        len(features),
        copies,
        int((~found).sum()),
        history["auc"][0],
        history["val_auc"][0],
        ", ".join(f"{n} {heads.heads[n].val_auc:.3f}" for n in PART_NAMES),
    )
    return heads, history


def _log_loss(labels: np.ndarray, p: np.ndarray) -> float:
    """Mean log-loss of P(fake) against the photos' labels."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.clip(np.asarray(p, np.float64).ravel(), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def part_thresholds(
    outputs: np.ndarray, regions: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Each part's threshold, calibrated like the image's, on validation rows with a face.

    `outputs`: the model's (N, 6) scores on the validation images.
    """
    from fakeface.metrics import calibrated_threshold
    from fakeface.score import FACE_FOUND_CUT
    from fakeface.selfblend import parse_region_flags

    outputs = np.asarray(outputs, np.float64)
    flags = part_labels(parse_region_flags(regions), labels)
    found = outputs[:, -1] >= FACE_FOUND_CUT
    return {
        name: float(calibrated_threshold(flags[found, k], outputs[found, 1 + k]))
        for k, name in enumerate(PART_NAMES)
    }
