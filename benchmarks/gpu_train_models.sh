#!/usr/bin/env bash
# Train the shipped models on one lent GPU in under 9 minutes, and measure the recipe on held-out
# image types in the same minutes. Everything comes back as tar files under $OUT.
#
# Here, once per data change:   uv run python benchmarks/gpu_data.py pack ../shared/data/dsb2018 .gpu/data
#                               (and the wheels the device lacks: see docs/gpu-training.md)
# On the device (carry .gpu):   bash benchmarks/gpu_train_models.sh
# Tiny check on CPU:            OUT=/tmp/gpu-out DATA=<small data folder> MINUTES=0.3 PY=.venv/bin/python bash benchmarks/gpu_train_models.sh
#
# Six processes share the GPU, each for MINUTES of training (its cosine schedule ends with them):
#   preseg      Mask R-CNN presegmenter from scratch on the 600 train images (the shipped candidate)
#   preseg-ft   the same, fine-tuned from the shipped presegmenter
#   unet-0..2   the three U-Net members (target sigma 0, 0.5, 1)
#   lto         leave-type-out check of the recipe: stained types held out, trained on the rest, scored on them
# All with the default settings (those of the shipped models); RECIPE adds overrides to every process,
# FT_RECIPE to preseg-ft only (e.g. a narrowed, distilled copy of the shipped model: docs/gpu-training.md).
# At DEADLINE seconds whatever still runs is stopped; finished models and scores are packed anyway.
set -uo pipefail
MINUTES=${MINUTES:-5.0}
DEADLINE=${DEADLINE:-555}
PY=${PY:-python3}
WORK=${WORK:-/tmp/nucflow-gpu}
OUT=${OUT:?set OUT to the folder that receives the results}
start=$SECONDS
mkdir -p "$WORK/logs" "$OUT"

if [ -d .gpu/whl ] && ! $PY -c "import segmentation_models_pytorch, roifile" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
DATA=${DATA:-$WORK/dsb2018}
[ -d "$DATA/images" ] || $PY benchmarks/gpu_data.py unpack .gpu/data "$DATA" || exit 1
echo "ready after $((SECONDS - start)) s"

RECIPE=${RECIPE:-}
FT_RECIPE=${FT_RECIPE:-}
PRESEG="--set presegment.train.max_minutes=$MINUTES --set presegment.train.log_every=100"
UNET="--set unet.train.max_minutes=$MINUTES --set unet.train.log_every=250"

launched=()
launch() {  # launch NAME COMMAND...: in the background, logged to $WORK/logs/NAME.log with its exit status
    local name=$1
    shift
    ( "$@" > "$WORK/logs/$name.log" 2>&1; echo "exit status $?" >> "$WORK/logs/$name.log" ) &
    launched+=($!)
}
running() { for pid in "${launched[@]}"; do kill -0 "$pid" 2> /dev/null && echo "$pid"; done; }
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 > "$WORK/logs/gpu.csv" 2>&1 &
    monitor=$!
fi
launch preseg $PY -m workflow.cli train-presegment "$DATA" -o "$WORK/preseg" $RECIPE $PRESEG
launch preseg-ft $PY -m workflow.cli train-presegment "$DATA" -o "$WORK/preseg-ft" --start-from presegment/models/default $RECIPE $FT_RECIPE $PRESEG
sigmas=(0.0 0.5 1.0)
for i in 0 1 2; do
    launch "unet-$i" $PY -m workflow.cli train-unet "$DATA" -o "$WORK/unet-$i" $RECIPE $UNET --set "unet.sigmas=[${sigmas[$i]}]" --set "unet.seeds=[$i]"
done
launch lto $PY benchmarks/bench_new_type.py "$DATA" --work "$WORK/lto" --threads 2 $RECIPE $PRESEG

while [ -n "$(running)" ] && [ $((SECONDS - start)) -lt "$DEADLINE" ]; do sleep 5; done
for pid in $(running); do pkill -TERM -P "$pid" 2> /dev/null; kill -TERM "$pid" 2> /dev/null; done
[ -n "${monitor:-}" ] && kill "$monitor" 2> /dev/null
echo "stopped after $((SECONDS - start)) s"

pack() {  # pack NAME FOLDER PATHS...: $OUT/NAME.tar of the PATHS that exist under FOLDER
    local name=$1 folder=$2
    shift 2
    local present=()
    for path in "$@"; do [ -e "$folder/$path" ] && present+=("$path"); done
    [ ${#present[@]} -gt 0 ] && tar -C "$folder" -cf "$OUT/$name.tar" "${present[@]}"
}
pack preseg "$WORK/preseg" model config.json
pack preseg-ft "$WORK/preseg-ft" model config.json
for i in 0 1 2; do pack "unet-$i" "$WORK/unet-$i" ensemble config.json; done
pack lto "$WORK/lto" before/presegment/model  # the leave-type-out presegmenter, to score and adapt it on the CPU later
pack logs "$WORK" logs lto/results.json lto/report.md
tail -n 3 "$WORK"/logs/*.log
ls -l "$OUT"
