"""Splits: stratified by label x level, grouped by image id, seeded."""

from collections import Counter

import pytest

from fakeface.split import assign_folds, fold_splits, make_split


def corpus(n_real: int = 40, n_fake_per_level: int = 12):
    ids, labels, levels = [], [], []
    for i in range(n_real):
        ids.append(f"r{i}")
        labels.append(0)
        levels.append(None)
    for level in ("easy", "mid", "hard"):
        for i in range(n_fake_per_level):
            ids.append(f"{level}{i}")
            labels.append(1)
            levels.append(level)
    # Two files with the same bytes (one image id) must land on the same side.
    ids += ["r0", "mid0"]
    labels += [0, 1]
    levels += [None, "mid"]
    return ids, labels, levels


def test_split_is_disjoint_grouped_and_seeded() -> None:
    ids, labels, levels = corpus()
    a = make_split(ids, labels, levels, 0.25, 0.2, seed=3)
    b = make_split(ids, labels, levels, 0.25, 0.2, seed=3)
    c = make_split(ids, labels, levels, 0.25, 0.2, seed=4)
    assert a == b
    assert a.eval != c.eval
    assert not (a.train & a.val) and not (a.train & a.eval) and not (a.val & a.eval)
    assert a.train | a.val | a.eval == set(ids)
    assert a.eval_ids_digest() == b.eval_ids_digest()


def test_split_is_stratified() -> None:
    ids, labels, levels = corpus()
    s = make_split(ids, labels, levels, 0.25, 0.2, seed=0)
    held = Counter(i.rstrip("0123456789") for i in s.eval)
    assert held == {"r": 10, "easy": 3, "mid": 3, "hard": 3}


@pytest.mark.parametrize("folds", [2, 5])
def test_folds_cover_everything_once(folds: int) -> None:
    ids, labels, levels = corpus()
    fold_of = assign_folds(ids, labels, levels, folds, seed=0)
    assert set(fold_of) == set(ids)
    sizes = Counter(fold_of.values())
    assert max(sizes.values()) - min(sizes.values()) <= 2
    splits = fold_splits(ids, labels, levels, folds, 0.2, seed=0)
    evals = [s.eval for s in splits]
    assert set().union(*evals) == set(ids)
    assert sum(len(e) for e in evals) == len(set(ids))
    for s in splits:
        assert not (s.train & s.eval) and not (s.val & s.eval) and s.val
