"""The ingest job on local Spark: rows == files, labels, bad input, idempotent reruns."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from PIL import Image

from fakeface.frames import DECODED_COLUMNS
from fakeface.ingest import extension_glob, run_ingest
from tests.conftest import PROJECT_ROOT, encode, gradient_image


def read_partitions(output: Path):
    return pads.dataset(str(output), format="parquet", partitioning="hive").to_table().to_pandas()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def labeled_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    for i in range(1, 4):
        img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        write(root / "training_real" / f"real_{i:05d}.jpg", encode(img))
    write(root / "training_fake" / "easy_1_1000.jpg", encode(gradient_image()))
    write(root / "training_fake" / "mid_2_0110.JPG", encode(gradient_image(30, 30)))
    write(root / "training_fake" / "hard_3_1111.png", encode(gradient_image(20, 50), "PNG"))
    write(root / "notes.txt", b"not an image and not matched by the extension filter")
    return root


def test_extension_glob_matches_any_case() -> None:
    assert extension_glob([".jpg", "png"]) == "*.{[jJ][pP][gG],[pP][nN][gG]}"


def test_labeled_corpus(spark, cfg, labeled_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_ingest(spark, cfg, str(labeled_corpus), str(out), "2026-01-02")
    assert summary["files"] == 6 and summary["ok"] == 6 and summary["errors"] == {}
    df = read_partitions(out)
    assert len(df) == 6
    assert set(DECODED_COLUMNS) <= set(df.columns)
    fakes = df[df.label == 1].set_index(df[df.label == 1].path.str.rsplit("/", n=1).str[-1])
    assert fakes.loc["mid_2_0110.JPG", "level"] == "mid"
    assert fakes.loc["mid_2_0110.JPG", "regions"] == "0110"
    assert fakes.loc["hard_3_1111.png", "format"] == "PNG"
    assert (df[df.label == 0].level.isna()).all()
    assert all(len(b) == 32 * 32 * 3 for b in df.image)
    assert (df.height == 32).all() and (df.width == 32).all()
    assert df.image_id.str.len().eq(64).all()
    # Only partitions and `_`-prefixed names at the top of the output folder.
    names = {p.name for p in out.iterdir()}
    assert {n for n in names if not n.startswith("_")} == {"run_date=2026-01-02"}
    stored = json.loads((out / "_summaries" / "run_date=2026-01-02.json").read_text())
    assert stored["files"] == 6


def test_unlabeled_ignores_layout(spark, cfg, labeled_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ingest(spark, cfg, str(labeled_corpus), str(out), "2026-01-02", labeled=False)
    df = read_partitions(out)
    assert df.label.isna().all() and df.level.isna().all() and df.regions.isna().all()


def test_bad_and_awkward_files(spark, cfg, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    good = encode(gradient_image(64, 64))
    write(root / "ok.jpg", good)
    write(root / "empty.jpg", b"")
    write(root / "truncated.jpg", good[: len(good) // 3])
    write(root / "text.jpg", b"hello, I am a text file")
    write(root / "doc.png", b"%PDF-1.4 a pdf wearing a png name")
    bomb = io.BytesIO()
    Image.new("L", (1, 1)).save(bomb, format="PNG")
    bomb_bytes = bytearray(bomb.getvalue())
    import zlib

    bomb_bytes[16:24] = (40000).to_bytes(4, "big") * 2
    bomb_bytes[29:33] = zlib.crc32(bytes(bomb_bytes[12:29])).to_bytes(4, "big")
    write(root / "bomb.png", bytes(bomb_bytes))
    # Awkward but valid.
    cmyk = io.BytesIO()
    Image.fromarray(gradient_image()).convert("CMYK").save(cmyk, format="JPEG")
    write(root / "cmyk.JPEG", cmyk.getvalue())
    progressive = io.BytesIO()
    Image.fromarray(gradient_image()).save(progressive, format="JPEG", progressive=True)
    write(root / "progressive.jpg", progressive.getvalue())
    write(root / "tiny.png", encode(np.zeros((1, 1, 3), np.uint8), "PNG"))
    write(root / "grey.png", encode(np.full((10, 10), 7, np.uint8), "PNG"))
    write(root / "alpha.png", encode(np.zeros((10, 10, 4), np.uint8), "PNG"))
    write(root / "palette.png", _palette_png())
    write(root / "name with spaces & ünïcødé.jpg", good)
    write(root / "deep" / "er" / "nested.jpg", good)
    out = tmp_path / "out"
    summary = run_ingest(spark, cfg, str(root), str(out), "2026-01-03")
    df = read_partitions(out)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(df) == len(files) == summary["files"]
    by_name = {p.rsplit("/", 1)[-1]: row for p, row in zip(df.path, df.itertuples(), strict=True)}
    expected_errors = {
        "empty.jpg": "empty",
        "truncated.jpg": ("truncated", "corrupt"),
        "text.jpg": "not_an_image",
        "doc.png": "unsupported_format",
        "bomb.png": "too_large",
    }
    for name, kinds in expected_errors.items():
        row = by_name[name]
        assert row.status == "error", name
        assert row.error.split(":")[0] in (kinds if isinstance(kinds, tuple) else (kinds,)), name
        assert row.image is None
    for name, row in by_name.items():
        if name not in expected_errors:
            assert row.status == "ok", (name, row.error)
            assert row.error is None
    # Same bytes under three names: all three keep their rows, and two are duplicates.
    assert summary["duplicates"] == 2
    assert sum(summary["errors"].values()) == len(expected_errors)


def _palette_png() -> bytes:
    img = Image.fromarray(gradient_image()).convert("P")
    img.info["transparency"] = 0
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    return buf.getvalue()


def test_rerun_replaces_only_its_date(spark, cfg, labeled_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ingest(spark, cfg, str(labeled_corpus), str(out), "2026-01-01")
    run_ingest(spark, cfg, str(labeled_corpus), str(out), "2026-01-02")
    (labeled_corpus / "training_real" / "real_00001.jpg").unlink()
    run_ingest(spark, cfg, str(labeled_corpus), str(out), "2026-01-02")
    df = read_partitions(out)
    counts = df.groupby(df.run_date.astype(str)).size().to_dict()
    assert counts == {"2026-01-01": 6, "2026-01-02": 5}
    assert not df.duplicated(["run_date", "path"]).any()
    assert list((out / "_staging").iterdir()) == []


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "jobs" / "ingest.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--input", "/nonexistent/x", "--output", "/tmp/o"], "--input folder not found"),
        (["--input", ".", "--output", "/tmp/o", "--run-date", "2026-13-01"], "bad --run-date"),
        (["--input", ".", "--output", "/tmp/o", "--set", "ingest.size=3"], "ingest.size"),
        (["--output", "/tmp/o"], "--input"),
    ],
)
def test_job_user_errors_are_one_line(args: list[str], needle: str) -> None:
    result = run_job(*args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
