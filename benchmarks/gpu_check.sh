#!/usr/bin/env bash
# The quickstart sweep with 1, 2, 4 and 8 trials per GPU, on a machine with one GPU:
# images/s per trial and in total, and peak GPU memory (nvidia-smi, every 0.5 s).
#
#   benchmarks/gpu_check.sh DATA [OUT]
#
# DATA: a CIFAR-10 archive (cifar-10-python.tar.gz or the shared subset).
# OUT:  results folder (default ./gpu-check-<date>); one sweep per k in OUT/gpu-k<k>.
# Each trial gets gpu = 1/k and cpu = cores/k (TensorFlow threads = int(cpu)).
# PYTHON (default: python) must have lrtune with GPU TensorFlow (pip install 'lrtune[gpu]').
# SWEEP_ARGS: more arguments for each `lrtune sweep`, e.g. SWEEP_ARGS="--set epochs=3" for a shorter check.
set -euo pipefail

DATA=${1:?usage: benchmarks/gpu_check.sh DATA [OUT]}
OUT=${2:-./gpu-check-$(date +%Y%m%d-%H%M%S)}
PYTHON=${PYTHON:-python}
CORES=$(nproc)
HERE=$(cd "$(dirname "$0")" && pwd)
export RAY_ADDRESS=${RAY_ADDRESS:-local}  # a fresh local Ray, never a cluster left running on the machine
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PYTHON" -c "import tensorflow as tf, sys; g = tf.config.list_physical_devices('GPU'); print('TensorFlow sees', g); sys.exit(not g)"

SAMPLER=
stop_sampler() { if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=; fi; }
trap stop_sampler EXIT

for k in 1 2 4 8; do
  gpu=$(awk "BEGIN { print 1 / $k }")
  cpu=$(awk "BEGIN { print $CORES / $k }")
  echo "== k=$k: resources gpu=$gpu cpu=$cpu, max concurrent $k"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu-k$k.mem" &
  SAMPLER=$!
  start=$(date +%s.%N)
  "$PYTHON" -m lrtune sweep "$HERE/../sweeps/quickstart.yaml" --data "$DATA" --storage "$OUT/gpu-k$k" \
    --name "gpu-k$k" --quiet --set "resources.gpu=$gpu" --set "resources.cpu=$cpu" --max-concurrent "$k" ${SWEEP_ARGS:-}
  awk "BEGIN { print $(date +%s.%N) - $start }" > "$OUT/gpu-k$k.wall"
  stop_sampler
done

"$PYTHON" "$HERE/gpu_table.py" "$OUT" 1 2 4 8 | tee "$OUT/table.txt"
