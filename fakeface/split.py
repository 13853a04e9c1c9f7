"""Seeded, stratified, grouped splits: identical bytes (one image_id) never straddle a split.

Strata are label x level (real, easy, mid, hard, unknown); groups are image ids. Splits are
computed on the driver from one small metadata row per image, so every variant and the
promotion job see exactly the same evaluation images for the same seed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TRAIN, VAL, EVAL = "train", "val", "eval"


@dataclass(frozen=True)
class Split:
    """Image ids of the training, validation and evaluation sides."""

    train: frozenset[str]
    val: frozenset[str]
    eval: frozenset[str]

    def role_of(self, image_id: str) -> str:
        if image_id in self.eval:
            return EVAL
        return VAL if image_id in self.val else TRAIN

    def eval_ids_digest(self) -> str:
        """sha256 of the sorted evaluation ids: one value to compare runs by."""
        return hashlib.sha256("\n".join(sorted(self.eval)).encode()).hexdigest()


def stratum(label: int, level: str | None) -> str:
    """The stratum of one image: 'real' or the fake's level."""
    return "real" if int(label) == 0 else (level or "unknown")


def _groups_by_stratum(
    image_ids: Sequence[str], labels: Sequence[int], levels: Sequence[str | None]
) -> dict[str, list[str]]:
    groups: dict[str, str] = {}
    for image_id, label, level in zip(image_ids, labels, levels, strict=True):
        # The first row of a group decides its stratum; duplicates share bytes, hence label.
        groups.setdefault(image_id, stratum(label, level))
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for image_id, key in groups.items():
        by_stratum[key].append(image_id)
    return {key: sorted(ids) for key, ids in sorted(by_stratum.items())}


def assign_folds(
    image_ids: Sequence[str],
    labels: Sequence[int],
    levels: Sequence[str | None],
    folds: int,
    seed: int,
) -> dict[str, int]:
    """image_id -> fold in [0, folds), balanced within each stratum, seeded."""
    if folds < 2:
        raise ValueError("folds must be at least 2")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for ids in _groups_by_stratum(image_ids, labels, levels).values():
        order = rng.permutation(len(ids))
        for rank, index in enumerate(order):
            # Offsetting each stratum spreads the remainders over the folds.
            fold_of[ids[index]] = (rank + offset) % folds
        offset += len(ids)
    return fold_of


def _carve(
    ids_by_stratum: dict[str, list[str]], fraction: float, rng: np.random.Generator
) -> tuple[set[str], set[str]]:
    taken: set[str] = set()
    rest: set[str] = set()
    for ids in ids_by_stratum.values():
        order = rng.permutation(len(ids))
        n_take = round(len(ids) * fraction)
        if len(ids) >= 2:
            n_take = min(max(n_take, 1), len(ids) - 1)
        for rank, index in enumerate(order):
            (taken if rank < n_take else rest).add(ids[index])
    return taken, rest


def make_split(
    image_ids: Sequence[str],
    labels: Sequence[int],
    levels: Sequence[str | None],
    eval_fraction: float,
    val_fraction: float,
    seed: int,
    eval_ids: frozenset[str] | None = None,
) -> Split:
    """Evaluation side (given, or carved by eval_fraction), then validation from the rest."""
    rng = np.random.default_rng(seed)
    by_stratum = _groups_by_stratum(image_ids, labels, levels)
    if eval_ids is None:
        held, _ = _carve(by_stratum, eval_fraction, rng)
    else:
        held = set(eval_ids)
    remaining = {k: [i for i in ids if i not in held] for k, ids in by_stratum.items()}
    val, train = _carve({k: v for k, v in remaining.items() if v}, val_fraction, rng)
    return Split(frozenset(train), frozenset(val), frozenset(held))


def fold_splits(
    image_ids: Sequence[str],
    labels: Sequence[int],
    levels: Sequence[str | None],
    folds: int,
    val_fraction: float,
    seed: int,
) -> list[Split]:
    """K stratified folds: each is the evaluation side once; validation comes from the rest."""
    fold_of = assign_folds(image_ids, labels, levels, folds, seed)
    splits = []
    for k in range(folds):
        held = frozenset(i for i, f in fold_of.items() if f == k)
        splits.append(
            make_split(image_ids, labels, levels, 0.0, val_fraction, seed + 1 + k, eval_ids=held)
        )
    return splits
