#!/usr/bin/env bash
# EGM against MCMC at a matched budget of energy evaluations, one `egm compare` per task, run one
# after another (one thread each) on a 2-core CPU. Budgets and CPU-sized overrides are below, next to
# each command; ising5_plain runs its shipped config unchanged. Writes runs/compare/<config>/ (compare.md,
# compare.json, compare.png, the EGM run folder). TASKS="ising5_plain gb_rbm_plain" runs a subset.
# Then: python benchmarks/collect_compare.py runs/compare  (updates docs/results.md and docs/figures/).
# Usage: bash benchmarks/compare_all.sh [EGM]
set -uo pipefail  # a failed task is reported; the others still run
cd "$(dirname "$0")/.."
EGM=${1:-.venv/bin/egm}
OUT=${OUT:-runs/compare}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TASKS=${TASKS:-"ising5_plain ising10_b02_plain ising10_b03_plain ising10_b04407_plain gmm25_flow_plain gb_rbm_plain joint_mog_plain dw4_flow_plain joint_dw4_plain ising5_boot gb_rbm_boot ising10_b03_boot ising10_b04407_boot joint_mog_boot gmm25_flow_boot ising10_b02_boot dw4_flow_boot joint_dw4_boot gmm25_diffusion_plain gmm25_diffusion_boot"}
# the Ising 10x10 rows were measured with uniform completions; the shipped plain configs now draw sampler proposals,
# whose steps cost about 800x fewer energy evaluations (and far more network evaluations): pinned off here (with
# the sampler EMA the files now ship) so the
# energy budget below keeps its meaning (docs/results.md, "Ising 10x10: the sampler as proposal")
ISING10="--set network.channels=32 --set network.layers=4 --set train.buffer_refresh=500 --set train.batch_size=256 --set estimator.num_proposals=512 --set estimator.sampler_proposals=0 --set train.ema_decay=0"
SMALL="--set train.batch_size=256 --set estimator.num_proposals=256"
BOOT="--set estimator.energy_ema_decay=0.99 --set estimator.energy_ema_start=0.0"
# bootstrapped runs cost far fewer energy evaluations per step than plain ones: their energy budget is the
# plain row's, and --egm-max-seconds caps EGM's training (the baselines then match the evaluations it used)
CAP="--egm-max-seconds ${CAP_SECONDS:-480}"
ISING10_BOOT="--set network.channels=32 --set network.layers=4 --set train.buffer_refresh=500 --set train.batch_size=64 --set estimator.num_proposals=64 --set estimator.delta=0.1 $BOOT $CAP"
SMALL_BOOT="--set train.batch_size=128 --set estimator.num_proposals=256 $BOOT $CAP"
declare -A ARGS=(
  [ising5_plain]="--budget-energy-evals 3e8"
  [ising10_b02_plain]="--budget-energy-evals 4e7 $ISING10"
  [ising10_b03_plain]="--budget-energy-evals 4e7 $ISING10"
  [ising10_b04407_plain]="--budget-energy-evals 4e7 $ISING10"
  [gmm25_flow_plain]="--budget-energy-evals 5e7 $SMALL --set train.buffer_refresh=1000"
  [gb_rbm_plain]="--budget-energy-evals 5e7 $SMALL"
  [joint_mog_plain]="--budget-energy-evals 5e7 $SMALL"
  [dw4_flow_plain]="--budget-energy-evals 5e7 $SMALL --set train.buffer_refresh=1000 --set network={name=\"mlp\",hidden=256,layers=4}"
  [joint_dw4_plain]="--budget-energy-evals 5e7 $SMALL"
  [ising5_boot]="--budget-energy-evals 1e7 --set train.batch_size=128 --set estimator.num_proposals=256 $BOOT"
  [gb_rbm_boot]="--budget-energy-evals 2e7 --set train.batch_size=128 --set estimator.num_proposals=256 $BOOT"
  [ising10_b02_boot]="--budget-energy-evals 4e7 $ISING10_BOOT"
  [ising10_b03_boot]="--budget-energy-evals 4e7 $ISING10_BOOT"
  [ising10_b04407_boot]="--budget-energy-evals 4e7 $ISING10_BOOT"
  [gmm25_flow_boot]="--budget-energy-evals 5e7 $SMALL_BOOT --set train.buffer_refresh=1000"
  [gmm25_diffusion_plain]="--budget-energy-evals 5e7 $SMALL --set train.buffer_refresh=1000"
  [gmm25_diffusion_boot]="--budget-energy-evals 5e7 $SMALL_BOOT --set train.buffer_refresh=1000"
  [joint_mog_boot]="--budget-energy-evals 5e7 $SMALL_BOOT"
  [dw4_flow_boot]="--budget-energy-evals 5e7 $SMALL_BOOT --set train.buffer_refresh=1000"
  [joint_dw4_boot]="--budget-energy-evals 5e7 $SMALL_BOOT"
)
mkdir -p "$OUT"
for t in $TASKS; do
  if [[ -e "$OUT/$t/compare.json" ]]; then echo "== $t: done already ($OUT/$t)"; continue; fi
  echo "== $t: egm compare configs/$t.toml ${ARGS[$t]}"
  start=$(date +%s)
  # shellcheck disable=SC2086
  $EGM compare "configs/$t.toml" --out "$OUT/$t" ${ARGS[$t]} > "$OUT/$t.log" 2>&1 || echo "   FAILED (see $OUT/$t.log)"
  echo "   $(( $(date +%s) - start )) s"
  echo "egm compare configs/$t.toml ${ARGS[$t]}" > "$OUT/$t.command"
done
