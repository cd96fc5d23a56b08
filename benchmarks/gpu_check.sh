#!/usr/bin/env bash
# lrtune's own trials on one GPU: a sweep with k = 1, 2, 4, 8, 16 trials per GPU, each with
# XLA and mixed precision off and on; then gpu_table.py's table (OUT/table.txt).
#
#   benchmarks/gpu_check.sh DATA [OUT]
#
# DATA: a CIFAR-10 archive (the shared subset, 35 MB, is enough: the quickstart reads 10,000
#       training images).
# OUT:  results folder (default ./gpu-check-<date>). One run per (xla, mixed precision, k):
#       OUT/xla<0|1>-mp<0|1>-k<k>/ holds the sweep (sweep/), its wall time (wall), nvidia-smi
#       samples every 0.5 s of the GPU's memory used (gpu-mem.csv) and of each process's
#       (procs.csv: pid, MiB), and the driver's pid (driver.pid); OUT/gpu.csv: the GPU.
# Each trial gets resources.gpu = 1/k, resources.cpu = cores/k, --max-concurrent k, and so a
# TensorFlow memory limit of floor(total * 1/k) - 512 MB (lrtune/training/gpu.py).
#
# Environment:
#   PYTHON       a Python with lrtune and GPU TensorFlow (pip install 'lrtune[gpu]'); default python
#   SWEEP        the sweep file; default sweeps/quickstart.yaml (16 trials, 10 epochs, ASHA)
#   SWEEP_ARGS   more arguments for each `lrtune sweep`, e.g. "--set epochs=3"
#   KS           trials per GPU; default "1 2 4 8 16"
#   XLA, MP      values of xla and mixed_precision to run; default "false true" each
#   GPU_CHECK_DRY_RUN=1   no GPU: checks the script's plumbing and the table on CPU. Ray is told
#       the machine has one GPU (RAY_OVERRIDE_RESOURCES), lrtune that it has
#       GPU_CHECK_FAKE_MB (default 143771, an H200); epochs=2; "GPU memory" is then the resident
#       memory of the sweep's processes. Its figures mean nothing.
set -euo pipefail

DATA=${1:?usage: benchmarks/gpu_check.sh DATA [OUT]}
OUT=${2:-./gpu-check-$(date +%Y%m%d-%H%M%S)}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
SWEEP=${SWEEP:-$HERE/../sweeps/quickstart.yaml}
KS=${KS:-1 2 4 8 16}
XLA=${XLA:-false true}
MP=${MP:-false true}
DRY=${GPU_CHECK_DRY_RUN:-0}
CORES=$(nproc)
export RAY_ADDRESS=local # a fresh local Ray, never a cluster left running on the machine
mkdir -p "$OUT"

if [ "$DRY" = 1 ]; then
    echo "gpu_check.sh: DRY RUN on CPU: a fake GPU of ${GPU_CHECK_FAKE_MB:-143771} MB, epochs=2; the figures mean nothing"
    export RAY_OVERRIDE_RESOURCES='{"GPU": 1}' LRTUNE_GPU_MEMORY_MB=${GPU_CHECK_FAKE_MB:-143771}
    echo "fake GPU (dry run), $LRTUNE_GPU_MEMORY_MB" >"$OUT/gpu.csv"
    SWEEP_ARGS="--set epochs=2 ${SWEEP_ARGS:-}"
else
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "gpu_check.sh: no NVIDIA GPU here (nvidia-smi missing or failing); it needs one." \
            "GPU_CHECK_DRY_RUN=1 checks the script on CPU." >&2
        exit 1
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits | head -1 | tee "$OUT/gpu.csv"
    "$PYTHON" -c "import tensorflow as tf, sys; g = tf.config.list_physical_devices('GPU'); print('TensorFlow sees', g); sys.exit(not g)" || {
        echo "gpu_check.sh: TensorFlow in $PYTHON sees no GPU: pip install 'lrtune[gpu]'" >&2
        exit 1
    }
fi

# Samplers, every 0.5 s until stopped: the GPU's memory used, and each process's.
sample() { # RUN_DIR DRIVER_PID
    if [ "$DRY" = 1 ]; then
        # Stand-in: resident MiB of the driver's descendants (the Ray workers among them).
        while sleep 0.5; do
            ps -e -o pid=,ppid=,rss= | awk -v root="$2" '
                { parent[$1] = $2; rss[$1] = $3 }
                END { for (p in parent) { q = p; while (q in parent && q != root && q > 1) q = parent[q]
                      if (q == root && p != root) { printf "%d, %d\n", p, rss[p] / 1024; total += rss[p] } }
                      printf "%d\n", total / 1024 > "/dev/stderr" }' >>"$1/procs.csv" 2>>"$1/gpu-mem.csv"
        done
    else
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$1/gpu-mem.csv" &
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 500 >"$1/procs.csv"
    fi
}
SAMPLER=
stop_sampler() {
    if [ -n "$SAMPLER" ]; then
        pkill -P "$SAMPLER" 2>/dev/null || true # its own children only (nvidia-smi, sleep)
        kill "$SAMPLER" 2>/dev/null || true
        wait "$SAMPLER" 2>/dev/null || true
        SAMPLER=
    fi
}
driver=
trap 'stop_sampler; [ -z "$driver" ] || kill "$driver" 2>/dev/null || true' EXIT

for xla in $XLA; do
    for mp in $MP; do
        for k in $KS; do
            run="$OUT/xla$([ "$xla" = true ] && echo 1 || echo 0)-mp$([ "$mp" = true ] && echo 1 || echo 0)-k$k"
            gpu=$(awk "BEGIN { print 1 / $k }")
            cpu=$(awk "BEGIN { print $CORES / $k }")
            echo "== $run: xla=$xla mixed_precision=$mp, resources gpu=$gpu cpu=$cpu, max concurrent $k"
            rm -rf "$run" && mkdir -p "$run"
            start=$(date +%s.%N)
            # shellcheck disable=SC2086  # SWEEP_ARGS: several words on purpose
            "$PYTHON" -m lrtune sweep "$SWEEP" --data "$DATA" --storage "$run" --name sweep --quiet \
                --set "xla=$xla" --set "mixed_precision=$mp" --set "resources.gpu=$gpu" \
                --set "resources.cpu=$cpu" --max-concurrent "$k" ${SWEEP_ARGS:-} &
            driver=$!
            echo "$driver" >"$run/driver.pid"
            sample "$run" "$driver" &
            SAMPLER=$!
            status=0
            wait "$driver" || status=$?
            awk "BEGIN { print $(date +%s.%N) - $start }" >"$run/wall"
            stop_sampler
            driver=
            # A sweep whose trials failed (out of memory, say) still goes in the table.
            [ "$status" = 0 ] || echo "   lrtune sweep exited $status (its trials' errors: $run/sweep/trials.parquet)"
        done
    done
done

"$PYTHON" "$HERE/gpu_table.py" "$OUT" | tee "$OUT/table.txt"
