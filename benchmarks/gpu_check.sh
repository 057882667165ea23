#!/usr/bin/env bash
# Prepared GPU check (issue 11, item 5): the GPU-sized shipped configs against MCMC at a matched
# budget, and the step-time benchmark, on one CUDA device, each under a hard time limit so the whole
# script fits a short device lease (about 9 minutes). Results land in $OUT (default runs/gpu):
# step_time.json, compare/<config>/{compare.md,compare.json,compare.png} and a log per command.
# Not run yet: no GPU was available when it was written. Afterwards:
#   python benchmarks/collect_compare.py runs/gpu/compare   (mark those rows as GPU in docs/results.md)
# Usage: bash benchmarks/gpu_check.sh [EGM] [PYTHON]
set -uo pipefail
cd "$(dirname "$0")/.."
EGM=${1:-.venv/bin/egm}
PY=${2:-.venv/bin/python}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT/compare"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1 || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 3

timeout 90 "$PY" benchmarks/step_time.py --device cuda --steps 20 --json "$OUT/step_time.json" \
    > "$OUT/step_time.log" 2>&1 || echo "step_time failed or timed out (see $OUT/step_time.log)"
timeout 60 "$PY" benchmarks/step_time.py --device cuda --steps 20 --L 5 --json "$OUT/step_time_L5.json" \
    > "$OUT/step_time_L5.log" 2>&1 || echo "step_time L=5 failed or timed out"

run() {  # name, seconds, extra args: one comparison under its own time limit
  local name=$1 limit=$2; shift 2
  echo "egm compare configs/$name.toml --device cuda $*" > "$OUT/compare/$name.command"
  timeout "$limit" "$EGM" compare "configs/$name.toml" --device cuda --out "$OUT/compare/$name" "$@" \
      > "$OUT/compare/$name.log" 2>&1 || echo "$name failed or timed out (see $OUT/compare/$name.log)"
}
# shipped (GPU-sized) configs, B = 300, K = 1000: 3e9 evaluations = 10,000 plain steps
# (the Ising 10x10 plain configs now draw sampler proposals: 2 energy evaluations per completion, 8 per row, so
# these budgets are never reached and the time limits end the runs)
run ising10_b04407_plain 150 --budget-energy-evals 3e9 --baseline-max-seconds 30
run ising10_b02_plain 100 --budget-energy-evals 1e9 --baseline-max-seconds 20
run gb_rbm_plain 100 --budget-energy-evals 1e9 --baseline-max-seconds 30
run gmm25_flow_plain 100 --budget-energy-evals 1e9 --baseline-max-seconds 30
echo "done: $OUT"
