#!/usr/bin/env bash
# GPU packing PROXY for lrtune trials: k processes of gpu_proxy.py (lrtune's Keras nets on
# Keras 3 + JAX, NOT lrtune's TensorFlow trial path: the lent GPU machine has no TensorFlow
# and no Ray and cannot install them) started at once on one GPU, nvidia-smi sampled
# meanwhile; one table at the end. See gpu_proxy.py's docstring for what is and is not measured.
# The real check, lrtune's own TensorFlow trials under Ray, is gpu_check.sh.
#
# On the lent device machine (JAX with CUDA, no Keras): copy this script, gpu_proxy.py, the data
# and wheels of keras 3.15, namex and optree (cp312, manylinux x86-64) into an ignored folder one
# level below the repository root (e.g. .gpu/), carry it, and run
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl && export PYTHONPATH=/tmp/site
#   OUT=$OUT EPOCHS=6 bash .gpu/gpu_proxy.sh 2>&1 | tee $OUT/log
#
# Env: DATA (the CIFAR-10 subset .tar.gz), EPOCHS (3), NTRAIN (0 = all 10,000),
#      MATRIX ("model:precision:k:batch ..."), BUDGET_S (stop starting configs after this, 330),
#      PER_CONFIG_S (timeout of one config, 150), PY (python3), OUT (results folder).
set -u -o pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PY:-python3}"
OUT="${OUT:-/tmp/gpu_proxy_out}"
DATA="${DATA:-$HERE/cifar-10-subset-python.tar.gz}"
[[ -f "$DATA" ]] || DATA="$HERE/../../shared/data/cifar-10-subset-python.tar.gz"  # the shared copy beside a checkout
EPOCHS="${EPOCHS:-3}"
NTRAIN="${NTRAIN:-0}"
BUDGET_S="${BUDGET_S:-330}"
PER_CONFIG_S="${PER_CONFIG_S:-150}"
MATRIX="${MATRIX:-seed_tiny:f32:1:64 seed_tiny:f32:2:64 seed_tiny:f32:4:64 seed_tiny:f32:8:64 seed_tiny:f32:16:64 \
keras_cifar10_cnn:f32:1:64 keras_cifar10_cnn:f32:4:64 keras_cifar10_cnn:f32:16:64 \
seed_tiny:bf16:1:64 seed_tiny:bf16:8:64 keras_cifar10_cnn:bf16:1:64 keras_cifar10_cnn:bf16:8:64}"
export PYTHONUNBUFFERED=1 KERAS_BACKEND="${KERAS_BACKEND:-jax}" XLA_PYTHON_CLIENT_PREALLOCATE=true
export TF_CPP_MIN_LOG_LEVEL=2

W="$(mktemp -d /tmp/gpu_proxy.XXXX)"
mkdir -p "$OUT"
RES="$OUT/results.jsonl"; SMI="$OUT/smi.csv"; ERRS="$OUT/stderr_tails.txt"
: >"$RES"; : >"$SMI"; : >"$ERRS"
HAVE_SMI=0; command -v nvidia-smi >/dev/null 2>&1 && HAVE_SMI=1
T0=$(date +%s)

echo "== gpu_proxy.sh: PROXY (Keras $KERAS_BACKEND backend, not lrtune's TensorFlow path); epochs=$EPOCHS ntrain=$NTRAIN nvidia-smi=$HAVE_SMI"
"$PY" "$HERE/gpu_proxy.py" --prepare "$DATA" "$W/cifar.npz" || exit 1

for cfg in $MATRIX; do
  IFS=: read -r model prec k batch <<<"$cfg"
  el=$(( $(date +%s) - T0 ))
  if (( el > BUDGET_S )); then echo "== budget: ${el}s > ${BUDGET_S}s, skipping $cfg"; continue; fi
  tag="${model}-${prec}-k${k}-b${batch}"
  D="$W/$tag"; mkdir -p "$D/barrier"
  mixed=(); [[ "$prec" == bf16 ]] && mixed=(--mixed)
  frac=$(awk -v k="$k" 'BEGIN{printf "%.4f", 0.9/k}')
  spid=""
  if (( HAVE_SMI )); then
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 >"$D/smi.csv" 2>/dev/null &
    spid=$!
  fi
  ts=$(date +%s.%N)
  pids=()
  for (( i = 0; i < k; i++ )); do
    XLA_PYTHON_CLIENT_MEM_FRACTION="$frac" timeout "$PER_CONFIG_S" "$PY" "$HERE/gpu_proxy.py" \
      --data "$W/cifar.npz" --model "$model" --k "$k" --index "$i" --epochs "$EPOCHS" --batch "$batch" \
      --n-train "$NTRAIN" --barrier "$D/barrier" --tag "$tag" "${mixed[@]}" >"$D/p$i.json" 2>"$D/p$i.err" &
    pids+=($!)
  done
  for (( i = 0; i < k; i++ )); do
    wait "${pids[$i]}"; rc=$?
    if grep -q '^{' "$D/p$i.json"; then
      grep '^{' "$D/p$i.json" >>"$RES"
    else
      printf '{"tag":"%s","model":"%s","k":%s,"index":%s,"batch":%s,"precision":"%s","error":"died","rc":%s}\n' \
        "$tag" "$model" "$k" "$i" "$batch" "$prec" "$rc" >>"$RES"
    fi
    if [[ $rc -ne 0 ]] || grep -q '"error": "' "$D/p$i.json"; then
      { echo "--- $tag p$i rc=$rc"; tail -c 1500 "$D/p$i.err"; } >>"$ERRS"
    fi
  done
  [[ -n "$spid" ]] && { kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; }
  [[ -f "$D/smi.csv" ]] && sed "s/^/$tag, /" "$D/smi.csv" >>"$SMI"
  te=$(date +%s.%N)
  "$PY" - "$tag" "$RES" "$ts" "$te" <<'EOF'
import json, sys
tag, res, ts, te = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rs = [json.loads(l) for l in open(res) if l.startswith("{") and json.loads(l).get("tag") == tag]
ok = [r for r in rs if not r.get("error")]
print(f"== {tag}: {te - ts:.1f}s wall, {len(ok)}/{len(rs)} ok; img/s per proc "
      f"{sorted(round(r['img_per_s']) for r in ok)}; startup s {sorted(round(r.get('startup_s', 0), 1) for r in ok)}; "
      f"errors {[r.get('error') for r in rs if r.get('error')]}")
EOF
done

echo "== total $(( $(date +%s) - T0 ))s"
"$PY" "$HERE/gpu_proxy.py" --summarize "$RES" "$SMI" | tee "$OUT/table.txt"
