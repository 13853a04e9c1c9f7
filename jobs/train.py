"""Training: fit the CNN variants on ingested Parquet, track and register them in MLflow.

spark-submit jobs/train.py --conf conf/local.yaml --data DIR [--variant NAME|all]
    [--epochs N] [--weights none|imagenet|PATH] [--folds K] [--set k=v ...]
"""

from __future__ import annotations

import sys

try:
    import fakeface  # noqa: F401
except ImportError:
    sys.exit(f"error: fakeface is not installed for {sys.executable}; set PYSPARK_PYTHON")

from fakeface.cli import base_parser, load_job_config, require_dir, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("train", "Train CNN variants with MLflow tracking and registration.")
    parser.add_argument("--data", required=True, help="ingested Parquet dataset folder")
    parser.add_argument(
        "--variant", default=None, help="variant name, a comma list, or 'all' (default: config)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: config)")
    parser.add_argument(
        "--weights", default=None, help="none | imagenet | PATH (transfer variants)"
    )
    parser.add_argument("--folds", type=int, default=None, help="K-fold cross-validation")
    args = parser.parse_args(argv)

    from fakeface.cli import setup_logging
    from fakeface.errors import FakefaceError

    setup_logging()
    cfg = load_job_config(args)
    epochs = args.epochs if args.epochs is not None else cfg.train.epochs
    folds = args.folds if args.folds is not None else cfg.train.folds
    weights = args.weights or cfg.train.weights
    if epochs < 1 or folds < 1:
        raise FakefaceError("--epochs and --folds must be at least 1")
    require_dir(args.data, "--data")

    from fakeface import registry, train
    from fakeface.spark import build_spark_session

    variants = train.resolve_variants(args.variant, cfg)
    # Fail on an unreachable store before any work is done.
    registry.check_tracking_uri(cfg.tracking_uri)
    spark = build_spark_session(cfg, "train")
    try:
        with registry.outage_as_tracking_error(cfg.tracking_uri):
            results = train.run_train(spark, cfg, args.data, variants, folds, weights, epochs)
    finally:
        spark.stop()
    print(train.format_results(results, folds))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
