#!/usr/bin/env bash
# The whole pipeline on embedded defaults, end to end, in a few minutes on 2 cores:
# synthesize a labelled corpus -> ingest -> train the production recipe briefly -> promote
# -> score a separate "tonight's drop" (with a few broken files) -> print the summary.
#
#   make demo            (or: bash jobs/demo.sh, with PYSPARK_PYTHON set to the venv's python)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYSPARK_PYTHON:-.venv/bin/python}
export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
CONF=${DEMO_CONF:-conf/demo.yaml}
DEMO=${DEMO_DIR:-var/demo}
N=${DEMO_IMAGES:-240}
TODAY=$(date -u +%F)
SUBMIT=(".venv/bin/spark-submit" --driver-java-options
        "-Dlog4j2.configurationFile=file:$PWD/conf/log4j2.properties")
STARTED=$SECONDS

step() { printf '\n== [%4ss] %s\n' "$((SECONDS - STARTED))" "$*"; }

step "1/6 synthesize a labelled corpus ($N images, 600 px) and tonight's drop"
rm -rf "$DEMO/corpus" "$DEMO/drop"
$PY -m fakeface.synth --out "$DEMO/corpus" --n-real $((N / 2)) --n-fake $((N / 2)) --seed 1
$PY -m fakeface.synth --out "$DEMO/drop/tmp" --n-real 40 --n-fake 40 --seed 2
# Nightly drops carry no labels: flatten the layout and add what real uploads contain.
i=0
while IFS= read -r f; do
  i=$((i + 1))
  mv "$f" "$DEMO/drop/upload_$(printf %05d $i).jpg"
done < <(find "$DEMO/drop/tmp" -name '*.jpg' | sort)
rm -rf "$DEMO/drop/tmp"
printf '' > "$DEMO/drop/upload_empty.jpg"
head -c 3000 "$DEMO/drop/upload_00001.jpg" > "$DEMO/drop/upload_truncated.jpg"
echo "not an image" > "$DEMO/drop/upload_text.png"

step "2/6 ingest the labelled corpus with Spark"
"${SUBMIT[@]}" jobs/ingest.py --conf "$CONF" --input "$DEMO/corpus" --output "$DEMO/lake" \
  --run-date "$TODAY"

step "3/6 train the production recipe (brief: see conf/demo.yaml)"
"${SUBMIT[@]}" jobs/train.py --conf "$CONF" --data "$DEMO/lake"

step "4/6 promote the new version if it beats the champion (first deploy: the baseline)"
set +e
"${SUBMIT[@]}" jobs/promote.py --conf "$CONF" --data "$DEMO/lake"
rc=$?
set -e
if [ $rc -eq 3 ]; then
  if ! $PY -c "
import sys
from fakeface.config import load_config
from fakeface import registry
cfg = load_config('$CONF')
client = registry.configure_mlflow(cfg)
sys.exit(0 if registry.champion_version(client, cfg.mlflow.registered_model, cfg.mlflow.champion_alias) else 1)
"; then
    echo "no champion yet and the brief demo model did not beat the baseline: forcing the first deploy"
    "${SUBMIT[@]}" jobs/promote.py --conf "$CONF" --data "$DEMO/lake" --force
  fi
elif [ $rc -ne 0 ]; then
  exit $rc
fi

step "5/6 score tonight's drop with the champion (pandas UDF, model broadcast)"
"${SUBMIT[@]}" jobs/score.py --conf "$CONF" --input "$DEMO/drop" --output "$DEMO/scores" \
  --run-date "$TODAY"

step "6/6 done in $((SECONDS - STARTED)) s"
cat <<EOT

Scored partition:   $DEMO/scores/run_date=$TODAY/
Run summary (JSON): $DEMO/scores/_summaries/run_date=$TODAY.json

What to open next:
  make mlflow-ui                       MLflow runs, registry and the nightly experiment (127.0.0.1:5000)
  .venv/bin/jupyter nbconvert --to notebook --execute --output-dir var/notebooks notebooks/01_eda.ipynb  (01..04)
  .venv/bin/fakeface report --conf $CONF --run-id <RUN_ID> --out var/report.html
EOT
