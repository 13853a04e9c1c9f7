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


def test_decoded_table_without_copying_the_pixels_is_pandas_arrow_table() -> None:
    """The writer's table (the pixels' bytes not copied) is the table pyarrow builds from the
    frame, null pixels and empty frames included, and counts ok rows and errors by kind."""
    import pandas as pd
    import pyarrow as pa

    from fakeface.frames import decode_frame
    from fakeface.lake_writer import count_decoded, decoded_arrow_schema, decoded_table

    frame = pd.DataFrame(
        {
            "path": ["file:/a/ok.jpg", "file:/a/bad.jpg", "file:/a/gone.jpg", "file:/a/ok.png"],
            "content": [encode(gradient_image()), b"nope", None, encode(gradient_image(), "PNG")],
            "read_error": [None, None, "unreadable: gone", None],
        }
    )
    decoded = decode_frame(frame, 32, 10**8)
    schema = decoded_arrow_schema()
    for rows in (decoded, decoded.iloc[:0]):
        table = decoded_table(rows, schema)
        expected = pa.Table.from_pandas(rows, schema=schema, preserve_index=False)
        assert table.equals(expected)
    assert decoded_table(decoded, schema).column("image").null_count == 2
    assert count_decoded(decoded) == (2, {"not_an_image": 1, "unreadable": 1})


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


def test_summary_counted_by_the_tasks_is_that_of_the_written_files(
    spark, cfg, tmp_path: Path
) -> None:
    """The writing tasks count the summary (nothing reads the files back): the counts equal
    those of the committed Parquet, duplicates across tasks and errors by kind included."""
    from fakeface.ingest import summarize_partition

    root = tmp_path / "in"
    rng = np.random.default_rng(3)
    same = encode(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    for i in range(12):  # the same bytes in folders spread over the tasks
        write(root / f"copies_{i % 3}" / f"same_{i}.jpg", same)
    for i in range(20):
        write(root / f"img_{i:02d}.jpg", encode(rng.integers(0, 255, (30, 30, 3), np.uint8)))
    write(root / "empty.jpg", b"")
    write(root / "empty_too.png", b"")  # the id of zero bytes: a duplicate too
    write(root / "text.jpg", b"hello, I am a text file")
    write(root / "text_again.jpg", b"hello, I am a text file")  # a duplicate, and an error
    write(root / "doc.png", b"%PDF-1.4 a pdf wearing a png name")
    spark.conf.set("spark.sql.shuffle.partitions", "3")
    cfg.ingest.arrow_batch_size = 3  # several batches, and so several id rows, per task
    try:
        summary = run_ingest(spark, cfg, str(root), str(tmp_path / "out"), "2026-01-05")
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "2")
    assert summary["tasks"] >= 2
    part = tmp_path / "out" / "run_date=2026-01-05"
    assert len(list(part.glob("*.parquet"))) >= 2
    written = summarize_partition(spark.read.parquet(str(part)))
    assert written == {k: summary[k] for k in ("files", "ok", "errors", "duplicates")}
    assert summary["files"] == 37 and summary["ok"] == 32
    assert summary["errors"] == {"empty": 2, "not_an_image": 2, "unsupported_format": 1}
    assert summary["duplicates"] == 11 + 1 + 1  # the copies, the texts, the empty files


def test_an_empty_input_counts_nothing(spark, cfg, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    summary = run_ingest(spark, cfg, str(tmp_path / "in"), str(tmp_path / "out"), "2026-01-06")
    assert (summary["files"], summary["ok"], summary["errors"], summary["duplicates"]) == (
        0,
        0,
        {},
        0,
    )
    assert read_partitions(tmp_path / "out").empty


def test_listed_files_are_dealt_evenly_over_tasks_sized_by_cost(spark, tmp_path: Path) -> None:
    """Every task gets as many files (to one per listing task), however the names hash, and
    the task count is a multiple of the cores sized by row and task cost."""
    from pyspark.sql import functions as F

    from fakeface.listing import list_local_files

    for folder, n in (("a", 23), ("b", 40)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            (tmp_path / folder / f"img_{i:03d}_{'x' * (i % 7)}.jpg").write_bytes(b"x")
    listed = list_local_files(spark, str(tmp_path), [".jpg"], 1, 10)  # about 10 rows a task
    assert listed.tasks == 2 * 4  # two cores, ceil(63 / (2 * 10)) = 4 tasks each
    counts = [
        r["count"]
        for r in listed.frame.groupBy(F.spark_partition_id().alias("task")).count().collect()
    ]
    assert sum(counts) == 63 and len(counts) == listed.tasks
    assert max(counts) - min(counts) <= 2  # two folders, two listing tasks


def test_scoring_takes_tasks_of_images_per_task(spark, cfg, tmp_path: Path) -> None:
    from dataclasses import replace

    from fakeface.score_run import read_input

    (tmp_path / "in").mkdir()
    for i in range(9):
        (tmp_path / "in" / f"{i}.jpg").write_bytes(b"x")
    few = replace(cfg, score=replace(cfg.score, images_per_task=2))
    rows, _ = read_input(spark, few, str(tmp_path / "in"), "images", 600)
    assert rows.rdd.getNumPartitions() == 2 * 3  # ceil(9 / (2 cores * 2)) = 3 a core
    rows, _ = read_input(spark, cfg, str(tmp_path / "in"), "images", 600)
    assert rows.rdd.getNumPartitions() == 2  # the default (1000): one task a core


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
