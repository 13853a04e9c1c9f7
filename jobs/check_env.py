"""Which Python the executors run: one line per executor environment, before a first night.

spark-submit jobs/check_env.py --conf conf/cluster.yaml [--tasks N]

Exit codes: 0 every executor imports the driver's fakeface version; 1 otherwise (one line).
"""

from __future__ import annotations

import sys

try:
    import fakeface  # noqa: F401
except ImportError:
    sys.exit(f"error: fakeface is not installed for {sys.executable}; set PYSPARK_PYTHON")

from fakeface.cli import base_parser, load_job_config, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("check_env", "Show the Python environment the executors run.")
    parser.add_argument("--tasks", type=int, default=0, help="tasks to run, default parallelism")
    args = parser.parse_args(argv)

    import json
    from importlib.metadata import version

    from fakeface.cli import setup_logging
    from fakeface.errors import FakefaceError
    from fakeface.spark import build_spark_session, executor_environments

    setup_logging()
    cfg = load_job_config(args)
    spark = build_spark_session(cfg, "check-env")
    try:
        envs = executor_environments(spark, args.tasks)
    finally:
        spark.stop()
    for env in envs:
        print("executor " + json.dumps(env, sort_keys=True))
    wanted = version("fakeface")
    other = sorted({e["fakeface_version"] for e in envs} - {wanted})
    if other:
        raise FakefaceError(
            f"executors run fakeface {', '.join(other)} but the driver runs {wanted};"
            " rebuild the archive with `make package` and resubmit"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
