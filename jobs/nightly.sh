#!/usr/bin/env bash
# Nightly pipeline for one day's drop: ingest (decode into the lake), then score with @champion.
#
#   jobs/nightly.sh [YYYY-MM-DD]          default: yesterday (UTC), the drop that just closed
#
# Paths and options come from the environment, with defaults for a single machine:
#   DROP_ROOT   folder of daily drops; the day's images are in $DROP_ROOT/$DATE  (var/drops)
#   LAKE_ROOT   outputs: $LAKE_ROOT/ingested and $LAKE_ROOT/scores             (var/lake)
#   CONF        config file                                                     (conf/local.yaml)
#   PYTHON      interpreter with fakeface installed                             (.venv/bin/python)
#   INCREMENTAL=1  skip images the champion already scored on another date
# spark-submit's master, driver memory, --conf and extra args are read from the config.
# Exit status: the failing step's (score: 4 = error share over score.max_error_share).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATE="${1:-$(date -u -d yesterday +%F)}"
if [[ ! "$DATE" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
  echo "usage: $0 [YYYY-MM-DD]" >&2
  exit 2
fi
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CONF="${CONF:-$ROOT/conf/local.yaml}"
DROP_ROOT="${DROP_ROOT:-$ROOT/var/drops}"
LAKE_ROOT="${LAKE_ROOT:-$ROOT/var/lake}"
DROP="$DROP_ROOT/$DATE"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(dirname "$PYTHON")/spark-submit}"

if [[ "$DROP" != *://* && ! -d "$DROP" ]]; then
  echo "error: no drop for $DATE: $DROP is not a folder" >&2
  exit 1
fi

# The driver runs $PYTHON. Executors run it too on one machine; a config that ships the packed
# environment (spark.archives + spark.pyspark.python, as conf/cluster.yaml does) wins over this.
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PYTHON}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYTHON}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# One item per line: the jobs' --conf value (the shipped file's name in cluster deploy mode),
# then spark-submit's options: --master, --driver-memory, --files (cluster mode: the config
# chain), --conf k=v for spark.conf, then submit_args. Checked before anything is submitted:
# the archive (there, built for this Python) and the tracking store scoring will need; either
# failing is one line and exit 1.
OPTS="$("$PYTHON" -c '
import sys
from fakeface.config import load_config
from fakeface.errors import FakefaceError
from fakeface.registry import check_tracking_uri
from fakeface.spark import job_config_arg, submit_options
try:
    cfg = load_config(sys.argv[1])
    opts = [job_config_arg(cfg, sys.argv[1]), *submit_options(cfg, sys.argv[2], sys.argv[1])]
    check_tracking_uri(cfg.tracking_uri)
except FakefaceError as exc:
    sys.exit(f"error: {exc}")
print("\n".join(opts))
' "$CONF" "$PYTHON")"
mapfile -t SUBMIT_OPTS <<<"$OPTS"
JOB_CONF="${SUBMIT_OPTS[0]}"
SUBMIT_OPTS=("${SUBMIT_OPTS[@]:1}")

submit() {
  "$SPARK_SUBMIT" "${SUBMIT_OPTS[@]}" \
    --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/conf/log4j2.properties" \
    "$@"
}

echo "nightly $DATE: ingest $DROP -> $LAKE_ROOT/ingested"
submit "$ROOT/jobs/ingest.py" --conf "$JOB_CONF" --unlabeled \
  --input "$DROP" --output "$LAKE_ROOT/ingested" --run-date "$DATE"

echo "nightly $DATE: score -> $LAKE_ROOT/scores"
SCORE_FLAGS=()
if [[ "${INCREMENTAL:-0}" == "1" ]]; then
  SCORE_FLAGS+=(--incremental)
fi
submit "$ROOT/jobs/score.py" --conf "$JOB_CONF" "${SCORE_FLAGS[@]}" \
  --input "$LAKE_ROOT/ingested/run_date=$DATE" --output "$LAKE_ROOT/scores" --run-date "$DATE"
echo "nightly $DATE: done"
