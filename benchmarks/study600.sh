#!/usr/bin/env bash
# The study's five rows on the 600 px originals: each variant at its own input size (the
# model resizes the 600 px lake in-graph), Adam 1e-3 like the study, as many epochs as fit
# MINUTES of training (train.max_minutes; early stopping is off, the epoch with the best
# validation AUC is restored). Two queues run side by side, one core each (simple then vgg16;
# custom then custom_aug); efficientnetb4 then gets both cores.
# One seeded split (the train job's), so rows move by a few points between seeds.
#
#   benchmarks/study600.sh                 # MINUTES=30, DATA=../shared/data/real-and-fake-face-600
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/real-and-fake-face-600}
MINUTES=${MINUTES:-30}
OUT=${OUT:-var/bench/study600}
LAKE=${LAKE:-var/bench/accuracy/$(basename "$DATA")/lake}   # what `make bench-accuracy` ingests
mkdir -p "$OUT"
export MLFLOW_TRACKING_URI="sqlite:///$PWD/$OUT/mlflow.db"
# Create the store's tables once: two jobs migrating a new SQLite file at once collide.
"$PY" -c "import mlflow; mlflow.MlflowClient().search_experiments()" > /dev/null 2>&1
if ! compgen -G "$LAKE/run_date=*" > /dev/null; then
    "$PY" jobs/ingest.py --conf conf/local.yaml --input "$DATA" --output "$LAKE" \
        --set ingest.image_size=600
fi
common=(--conf conf/local.yaml --data "$LAKE" --epochs 200
        --set "train.max_minutes=$MINUTES" --set train.optimizer=adam
        --set train.lr_schedule=constant --set train.learning_rate=0.001
        --set train.patience=1000 --set train.register=false --set mlflow.experiment=study600)
run() {  # run VARIANT CPUS [--set ...]
    local name=$1 cpus=$2
    shift 2
    /usr/bin/time -v taskset -c "$cpus" "$PY" jobs/train.py "${common[@]}" --variant "$name" \
        --set "train.feed_cache_dir=$OUT/petastorm-$name" "$@" > "$OUT/$name.log" 2>&1 \
        || echo "$name failed: see $OUT/$name.log"
}
(run simple 0; run vgg16 0) &
(run custom 1; run custom_aug 1) &
wait
run efficientnetb4 0-1 --set train.batch_size=8
echo "| variant | accuracy | AUC | easy | mid | hard | real | epochs | minutes |"
echo "|---|---|---|---|---|---|---|---|---|"
for name in simple vgg16 efficientnetb4 custom custom_aug; do
    grep -h "^| $name |" "$OUT/$name.log" || echo "| $name | (no result: $OUT/$name.log) |"
done
grep -h "^| majority baseline" "$OUT/custom.log" || true
for name in simple vgg16 efficientnetb4 custom custom_aug; do
    printf '%s: %s; %s\n' "$name" "$(grep -h "time budget" "$OUT/$name.log" | tail -1 | sed 's/.*time budget/time budget/')" \
        "$(grep -h "Maximum resident" "$OUT/$name.log" | sed 's/^[[:space:]]*//')"
done
# The same models on both copies of their evaluation split, with the pose-balanced AUC.
"$PY" benchmarks/study_copies.py --store "$OUT" --data-dir "$DATA"
