"""Nightly ingest: decode and resize an image corpus into date-partitioned Parquet.

spark-submit jobs/ingest.py --conf conf/local.yaml --input DIR --output DIR \
    [--run-date YYYY-MM-DD] [--unlabeled]
"""

from __future__ import annotations

import sys

try:
    import fakeface  # noqa: F401
except ImportError:
    sys.exit(f"error: fakeface is not installed for {sys.executable}; set PYSPARK_PYTHON")

from fakeface.cli import base_parser, load_job_config, parse_run_date, require_dir, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("ingest", "Decode and resize images into Parquet, one row per file.")
    parser.add_argument("--input", required=True, help="folder of images (read recursively)")
    parser.add_argument("--output", required=True, help="Parquet dataset folder")
    parser.add_argument("--run-date", default=None, help="partition date, default today (UTC)")
    parser.add_argument(
        "--unlabeled", action="store_true", help="ignore the real/fake folder layout"
    )
    args = parser.parse_args(argv)

    from fakeface.cli import setup_logging
    from fakeface.ingest import format_summary, run_ingest
    from fakeface.spark import build_spark_session

    setup_logging()
    cfg = load_job_config(args)
    run_date = parse_run_date(args.run_date)
    require_dir(args.input, "--input")
    spark = build_spark_session(cfg, "ingest")
    try:
        summary = run_ingest(
            spark, cfg, args.input, args.output, run_date, labeled=not args.unlabeled
        )
    finally:
        spark.stop()
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
