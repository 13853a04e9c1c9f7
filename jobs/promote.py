"""Champion/challenger promotion: move @champion to the candidate only if it is better.

spark-submit jobs/promote.py --conf conf/local.yaml --data DIR \
    [--candidate VERSION] [--dry-run] [--force]

Exit codes: 0 promoted (or would be, with --dry-run); 3 kept, the candidate is not better;
1 error.
"""

from __future__ import annotations

import sys

try:
    import fakeface  # noqa: F401
except ImportError:
    sys.exit(f"error: fakeface is not installed for {sys.executable}; set PYSPARK_PYTHON")

from fakeface.cli import base_parser, load_job_config, require_dir, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("promote", "Compare a candidate model with the champion; promote it.")
    parser.add_argument("--data", required=True, help="ingested Parquet dataset (labelled)")
    parser.add_argument("--candidate", default=None, help="model version, default the newest")
    parser.add_argument("--dry-run", action="store_true", help="decide, but move nothing")
    parser.add_argument("--force", action="store_true", help="move the alias regardless")
    args = parser.parse_args(argv)

    from fakeface.cli import setup_logging
    from fakeface.promote import format_decision, run_promote
    from fakeface.registry import check_tracking_uri
    from fakeface.spark import build_spark_session

    setup_logging()
    cfg = load_job_config(args)
    require_dir(args.data, "--data")
    # Fail on an unreachable store before a session (or a cluster application) starts.
    check_tracking_uri(cfg.tracking_uri)
    spark = build_spark_session(cfg, "promote")
    try:
        decision = run_promote(spark, cfg, args.data, args.candidate, args.dry_run, args.force)
    finally:
        spark.stop()
    for line in format_decision(decision, cfg.mlflow.champion_alias):
        print(line)
    return decision.exit_code


if __name__ == "__main__":
    sys.exit(run_job(main))
