"""Readers of a scores folder: nights written before the part columns next to newer ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fakeface.score import OUTPUT_COLUMNS, OUTPUT_SCHEMA

# The nightly row before part models: what older partitions hold.
OLD_SCHEMA = (
    "image_id string, path string, p_fake float, is_fake boolean, threshold double, "
    "model_name string, model_version string, scored_at timestamp, status string, error string"
)
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OLD_ROWS = [
    ("a", "/d/a.jpg", 0.9, True, 0.5, "m", "1", WHEN, "ok", None),
    ("b", "/d/b.jpg", None, None, 0.5, "m", "1", WHEN, "error", "empty: no bytes"),
]
PARTS = (0.9, 0.2, 0.6, 0.4)
NEW_ROWS = [
    ("c", "/d/c.jpg", 0.8, True, 0.5, "m", "2", WHEN, "ok", None, *PARTS, True, "left_eye,mouth"),
    ("d", "/d/d.jpg", 0.7, True, 0.5, "m", "2", WHEN, "ok", None, *[None] * 4, False, None),
    ("e", "/d/e.jpg", 0.1, False, 0.5, "m", "2", WHEN, "ok", None, *PARTS, True, ""),
]


@pytest.fixture
def scores(spark, tmp_path: Path) -> Path:
    """A scores folder: one night of the old schema, one of the new, and a summaries folder."""
    root = tmp_path / "scores"
    spark.createDataFrame(OLD_ROWS, OLD_SCHEMA).write.parquet(str(root / "run_date=2026-01-01"))
    spark.createDataFrame(NEW_ROWS, OUTPUT_SCHEMA).write.parquet(str(root / "run_date=2026-01-02"))
    (root / "_summaries").mkdir()
    (root / "_summaries" / "run_date=2026-01-01.json").write_text("{}")
    return root


def test_spark_reader_unifies_old_and_new_nights(spark, scores: Path) -> None:
    from fakeface.score_summary import read_scores, summarize_scores

    df = read_scores(spark, str(scores))
    assert set(OUTPUT_COLUMNS) <= set(df.columns)
    rows = {r["image_id"]: r for r in df.collect()}
    assert len(rows) == 5
    old = rows["a"]
    assert old["p_fake"] == pytest.approx(0.9) and old["is_fake"] is True
    assert old["face_found"] is None and old["parts_flagged"] is None and old["p_nose"] is None
    assert rows["c"]["parts_flagged"] == "left_eye,mouth"
    assert rows["c"]["p_nose"] == pytest.approx(0.6)
    assert rows["d"]["face_found"] is False and rows["d"]["p_nose"] is None
    # Whichever night Spark would have taken the schema from, both read as one.
    both = read_scores(
        spark, [str(scores / "run_date=2026-01-01"), str(scores / "run_date=2026-01-02")]
    )
    assert both.where("parts_flagged is not null").count() == 2
    summary = summarize_scores(df)
    assert summary["flagged"] == 3 and summary["n_errors"] == 1
    assert summary["no_face"] == 1
    assert summary["parts_flagged"] == {"left_eye": 1, "right_eye": 0, "nose": 0, "mouth": 1}
    # An old night alone: no part counts at all (not zeros that would read as "none flagged").
    old_only = summarize_scores(read_scores(spark, str(scores / "run_date=2026-01-01")))
    assert "no_face" not in old_only and "parts_flagged" not in old_only


def test_pandas_reader_unifies_old_and_new_nights(scores: Path) -> None:
    from fakeface.score_summary import read_score_partitions

    wanted = ["run_date", "image_id", "p_fake", "is_fake", "face_found", "parts_flagged"]
    df = read_score_partitions(scores, wanted).set_index("image_id")
    assert list(df.columns) == wanted[:1] + wanted[2:] and len(df) == 5
    assert df.loc["a", "run_date"] == "2026-01-01" and df.loc["c", "run_date"] == "2026-01-02"
    assert df.loc["a", "face_found"] is None and df.loc["a", "parts_flagged"] is None
    assert df.loc["c", "parts_flagged"] == "left_eye,mouth" and df.loc["e", "parts_flagged"] == ""
    assert bool(df.loc["d", "face_found"]) is False
    full = read_score_partitions(scores)
    assert set(OUTPUT_COLUMNS) <= set(full.columns)


def test_pandas_reader_of_old_nights_only_gives_null_part_columns(spark, tmp_path: Path) -> None:
    from fakeface.score_summary import read_score_partitions

    root = tmp_path / "old"
    spark.createDataFrame(OLD_ROWS, OLD_SCHEMA).write.parquet(str(root / "run_date=2026-01-01"))
    df = read_score_partitions(root, ["image_id", "p_fake", "face_found", "parts_flagged"])
    assert len(df) == 2 and df.face_found.isna().all() and df.parts_flagged.isna().all()
    assert read_score_partitions(tmp_path / "nothing", ["p_fake"]).empty
