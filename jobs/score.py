"""Nightly scoring: P(fake) for every image of a drop folder or an ingested dataset.

spark-submit jobs/score.py --conf conf/local.yaml --input DIR --output DIR \
    --run-date YYYY-MM-DD [--model models:/NAME@ALIAS] [--incremental]

Exit codes: 0 done; 1 error (nothing written); 4 more errors than score.max_error_share
(all rows are written first).
"""

from __future__ import annotations

import sys

try:
    import fakeface  # noqa: F401
except ImportError:
    sys.exit(f"error: fakeface is not installed for {sys.executable}; set PYSPARK_PYTHON")

from fakeface.cli import base_parser, load_job_config, parse_run_date, require_dir, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("score", "Score images with the champion model into Parquet.")
    parser.add_argument("--input", required=True, help="folder of images, or ingested Parquet")
    parser.add_argument("--output", required=True, help="scores dataset folder")
    parser.add_argument("--run-date", default=None, help="partition date, default today (UTC)")
    parser.add_argument("--model", default=None, help="model URI, default the config's champion")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="skip images this model version already scored on another date",
    )
    args = parser.parse_args(argv)

    from fakeface.cli import setup_logging
    from fakeface.registry import check_tracking_uri
    from fakeface.score_run import run_score
    from fakeface.score_summary import EXIT_ERROR_SHARE, error_share_exceeded, format_summary
    from fakeface.spark import build_spark_session

    setup_logging()
    cfg = load_job_config(args)
    run_date = parse_run_date(args.run_date)
    require_dir(args.input, "--input")
    # Fail on an unreachable store before a session (or a cluster application) starts.
    check_tracking_uri(cfg.tracking_uri)
    spark = build_spark_session(cfg, "score")
    try:
        summary = run_score(
            spark, cfg, args.input, args.output, run_date, args.model, args.incremental
        )
    finally:
        spark.stop()
    print(format_summary(summary))
    if error_share_exceeded(summary, cfg):
        print(
            f"error: error share {summary['error_share']:.2f} > score.max_error_share"
            f" {cfg.score.max_error_share:.2f}; all {summary['n_images']} rows were written",
            file=sys.stderr,
        )
        return EXIT_ERROR_SHARE
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
