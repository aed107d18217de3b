#!/usr/bin/env bash
# The checks for a machine with a CUDA GPU, in one go (about 8 minutes at most):
#   1. the GPU tests:        python -m pytest -m gpu -q tests/workbench
#   2. the benchmark table:  python benchmarks/run_all.py --device cuda --quick --out "$OUT/bench"
# Logs go to "$OUT" (default ./gpu-check-out).  Run from anywhere: the checkout is put first on PYTHONPATH.
# Tests that draw figures need plotly and skip without it (tests/optional.py); the rest run.
# Sizes: BENCH_ARGS (default --quick) is passed to run_all.py, e.g. BENCH_ARGS="" for the full sizes.
# Exit status: non-zero when either step failed (both always run).
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$PWD/gpu-check-out}"
PY="${PYTHON:-python}"
BENCH_ARGS="${BENCH_ARGS---quick}"
mkdir -p "$OUT/bench"
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export WORKBENCH_CACHE="${WORKBENCH_CACHE:-$OUT/cache}"

{
  echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M UTC'), checkout $ROOT, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv
} 2>&1 | tee "$OUT/env.log"

echo "== 1/2 pytest -m gpu" | tee "$OUT/pytest.log"
timeout 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs tests/workbench 2>&1 | tee -a "$OUT/pytest.log"
tests_rc=${PIPESTATUS[0]}
[ "$tests_rc" -eq 5 ] && tests_rc=0  # 5: no test selected (e.g. every gpu test deselected)

echo "== 2/2 run_all --device cuda $BENCH_ARGS" | tee "$OUT/bench.log"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
timeout 270 "$PY" benchmarks/run_all.py --device cuda $BENCH_ARGS --out "$OUT/bench" 2>&1 | tee -a "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}

echo "gpu_check: pytest exit $tests_rc, run_all exit $bench_rc" | tee -a "$OUT/env.log"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
