"""Tests for fakeface.synth: layout, names, level mix, determinism, fakes and the CLI."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakeface import labels, synth
from fakeface.errors import FakefaceError

FAKE_NAME = re.compile(r"(easy|mid|hard)_(\d+)_([01]{4})\.jpg")
SIZE = 64


def files(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def fake_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / synth.FAKE_DIR).iterdir())


def test_names_counts_and_nothing_else(tmp_path: Path) -> None:
    counts = synth.write_corpus(tmp_path, n_real=5, n_fake=8, size=SIZE, seed=1, workers=1)

    assert {p.name for p in tmp_path.iterdir()} == {synth.REAL_DIR, synth.FAKE_DIR}
    written = files(tmp_path)
    assert len(written) == 13
    assert all(name.endswith(".jpg") for name in written)
    reals = sorted(p.name for p in (tmp_path / synth.REAL_DIR).iterdir())
    assert reals == [f"real_{i:05d}.jpg" for i in range(1, 6)]
    matches = [FAKE_NAME.fullmatch(name) for name in fake_names(tmp_path)]
    assert all(matches)
    assert sorted(int(m.group(2)) for m in matches) == list(range(1, 9))
    assert all("1" in m.group(3) for m in matches)
    levels = Counter(m.group(1) for m in matches)
    assert counts == {
        "real": 5,
        "fake": 8,
        "easy": levels["easy"],
        "mid": levels["mid"],
        "hard": levels["hard"],
        "total": 13,
        "seconds": counts["seconds"],
    }
    for data in written.values():
        with Image.open(io.BytesIO(data)) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (SIZE, SIZE))


@pytest.mark.parametrize(("n_real", "n_fake"), [(0, 3), (3, 0), (0, 0)])
def test_either_count_may_be_zero(tmp_path: Path, n_real: int, n_fake: int) -> None:
    counts = synth.write_corpus(tmp_path, n_real, n_fake, size=SIZE, workers=1)

    written = files(tmp_path)
    assert len(written) == n_real + n_fake
    assert sum(name.startswith(synth.REAL_DIR) for name in written) == n_real
    assert sum(name.startswith(synth.FAKE_DIR) for name in written) == n_fake
    assert (counts["real"], counts["fake"]) == (n_real, n_fake)


def test_levels_are_one_two_one_and_flags_valid(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path, 0, 40, size=32, seed=7, workers=1)

    matches = [FAKE_NAME.fullmatch(name) for name in fake_names(tmp_path)]
    assert Counter(m.group(1) for m in matches) == {"easy": 10, "mid": 20, "hard": 10}
    flags = [m.group(3) for m in matches]
    assert "0000" not in flags
    assert len(set(flags)) > 5  # region choice varies


def test_names_parse_with_labels(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path, 2, 4, size=32, workers=1)

    assert (synth.REGIONS, synth.LEVELS) == (labels.REGIONS, labels.LEVELS)
    for path in tmp_path.rglob("*.jpg"):
        parsed = labels.parse_path_label(str(path))
        if path.parent.name == synth.REAL_DIR:
            assert parsed == labels.PathLabel(0, None, None)
        else:
            level, _, flags = path.stem.split("_")
            assert parsed == labels.PathLabel(1, level, flags)


def test_same_seed_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    runs = [(tmp_path / "a", 1), (tmp_path / "b", 1), (tmp_path / "c", 2)]
    for out, workers in runs:
        synth.write_corpus(out, 6, 6, size=SIZE, seed=3, workers=workers)

    first = files(runs[0][0])
    assert len(first) == 12
    assert files(runs[1][0]) == first
    assert files(runs[2][0]) == first


def test_image_depends_on_index_not_on_counts(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path / "small", 2, 3, size=SIZE, seed=5, workers=1)
    synth.write_corpus(tmp_path / "large", 4, 9, size=SIZE, seed=5, workers=1)

    small, large = files(tmp_path / "small"), files(tmp_path / "large")
    assert small.items() <= large.items()


def test_different_seed_differs(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path / "s0", 2, 4, size=SIZE, seed=0, workers=1)
    synth.write_corpus(tmp_path / "s1", 2, 4, size=SIZE, seed=1, workers=1)

    s0, s1 = files(tmp_path / "s0"), files(tmp_path / "s1")
    real = f"{synth.REAL_DIR}/real_00001.jpg"
    assert s0[real] != s1[real]
    assert set(s0.values()).isdisjoint(s1.values())


def test_render_face_shape_boxes_and_determinism() -> None:
    img, boxes = synth.render_face(np.random.default_rng(11), 96)
    again, _ = synth.render_face(np.random.default_rng(11), 96)
    other, _ = synth.render_face(np.random.default_rng(12), 96)

    assert img.shape == (96, 96, 3)
    assert img.dtype == np.uint8
    assert np.array_equal(img, again)
    assert not np.array_equal(img, other)
    assert tuple(boxes) == synth.REGIONS
    for x0, y0, x1, y1 in boxes.values():
        assert 0 <= x0 < x1 <= 96
        assert 0 <= y0 < y1 <= 96
    left, right = boxes["left_eye"], boxes["right_eye"]
    assert left[0] < right[0]
    assert max(left[3], right[3]) <= boxes["mouth"][3]


def two_faces(seed: int, size: int = 128) -> tuple:
    rng = np.random.default_rng(seed)
    base, base_boxes = synth.render_face(rng, size)
    donor, donor_boxes = synth.render_face(rng, size)
    return base, base_boxes, donor, donor_boxes, rng


@pytest.mark.parametrize("level", synth.LEVELS)
@pytest.mark.parametrize("flags", ["1000", "0100", "0011", "1111"])
def test_fake_changes_only_the_replaced_regions(level: str, flags: str) -> None:
    base, base_boxes, donor, donor_boxes, rng = two_faces(seed=len(flags + level) + int(flags, 2))
    before = base.copy()

    fake = synth.make_fake(base, base_boxes, donor, donor_boxes, flags, level, rng)

    assert np.array_equal(base, before)  # input untouched
    assert fake.shape == base.shape
    assert fake.dtype == np.uint8
    replaced = np.zeros(base.shape[:2], bool)
    for region, flag in zip(synth.REGIONS, flags, strict=True):
        if flag == "1":
            x0, y0, x1, y1 = base_boxes[region]
            replaced[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = True
            box_diff = np.abs(fake[y0:y1, x0:x1].astype(int) - base[y0:y1, x0:x1]).mean()
            assert box_diff > 1.0, region
    assert np.array_equal(fake[~replaced], base[~replaced])


def test_hard_fakes_match_colour_better_than_easy() -> None:
    errors: dict[str, float] = {}
    for level in ("easy", "hard"):
        total = 0.0
        for seed in range(6):
            base, base_boxes, donor, donor_boxes, rng = two_faces(seed)
            fake = synth.make_fake(base, base_boxes, donor, donor_boxes, "0010", level, rng)
            x0, y0, x1, y1 = base_boxes["nose"]
            patch, ref = fake[y0:y1, x0:x1], base[y0:y1, x0:x1]
            total += np.abs(patch.mean(axis=(0, 1)) - ref.mean(axis=(0, 1))).sum()
        errors[level] = total
    assert errors["hard"] < errors["easy"] / 2


@pytest.mark.parametrize(("flags", "level"), [("0000", "easy"), ("101", "mid"), ("1x00", "hard")])
def test_make_fake_rejects_bad_flags(flags: str, level: str) -> None:
    base, base_boxes, donor, donor_boxes, rng = two_faces(0, 64)
    with pytest.raises(ValueError, match="flags"):
        synth.make_fake(base, base_boxes, donor, donor_boxes, flags, level, rng)
    with pytest.raises(ValueError, match="level"):
        synth.make_fake(base, base_boxes, donor, donor_boxes, "1000", "medium", rng)


def test_failed_write_leaves_no_image_or_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(synth.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        synth.write_corpus(tmp_path, 2, 0, size=32, workers=1)

    assert files(tmp_path) == {}


def test_rerun_overwrites_and_clears_stale_temp_files(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path, 2, 2, size=32, workers=1)
    first = files(tmp_path)
    stale = tmp_path / synth.FAKE_DIR / ".easy_1_1000.jpg.123.part"
    stale.write_bytes(b"half an image")

    synth.write_corpus(tmp_path, 2, 2, size=32, workers=1)

    assert files(tmp_path) == first


@pytest.mark.parametrize(
    "second",
    [{"n_real": 1, "n_fake": 2}, {"n_real": 2, "n_fake": 1}, {"n_real": 2, "n_fake": 2, "seed": 9}],
)
def test_refuses_to_mix_with_other_images(tmp_path: Path, second: dict) -> None:
    synth.write_corpus(tmp_path, 2, 2, size=32, workers=1)
    before = files(tmp_path)

    with pytest.raises(FakefaceError, match="empty --out"):
        synth.write_corpus(tmp_path, size=32, workers=1, **second)

    assert files(tmp_path) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["--out", "{out}", "--n-real", "-1", "--n-fake", "2"],
        ["--out", "{out}", "--n-real", "1", "--n-fake", "-3"],
        ["--out", "{out}", "--n-real", "1", "--n-fake", "1", "--size", "31"],
        ["--out", "{out}", "--n-real", "1", "--n-fake", "1", "--workers", "0"],
        ["--out", "{out}", "--n-real", "x", "--n-fake", "1"],
        ["--n-real", "1", "--n-fake", "1"],
    ],
)
def test_cli_bad_args_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        synth.main([arg.format(out=out) for arg in argv])

    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert not out.exists()


def test_cli_runs_as_module(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "fakeface.synth", "--out", str(out)]
    cmd += ["--n-real", "1", "--n-fake", "2", "--size", "32", "--seed", "4", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert re.search(r"wrote 3 images .* images/s\)$", lines[0])
    assert len(files(out)) == 3
