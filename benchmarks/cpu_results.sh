#!/usr/bin/env bash
# Quality results on a 2-core CPU: every shipped config under a fixed training-time budget, with
# CPU-sized proposal counts (the shipped configs carry the authors' GPU-sized settings). Two runs at
# a time, one thread each. RUN_GROUPS="ising10 mixed ..." runs a subset of the groups. Writes runs/cpu/<group>/results.md (tables with noise floors) and the
# run folders with their reports. Usage: bash benchmarks/cpu_results.sh [PYTHON]
set -uo pipefail  # a failed run is reported in its group's table; the other groups still run
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=${OUT:-runs/cpu}
EVAL="--set eval.num_samples=2000"
# bootstrapped runs get a few hundred steps here: an EMA of the energy network with decay 0.999 would
# still be two-thirds its zero initialization after 400 steps (flat bootstrap weights), so use 0.99
BOOT="--set estimator.energy_ema_decay=0.99 --set estimator.energy_ema_start=0.0"
RUN_GROUPS=${RUN_GROUPS:-"ising10 ising10_boot continuous continuous_boot mixed mixed_boot"}
want() { [[ " $RUN_GROUPS " == *" $1 "* ]]; }

# Ising 10x10 (three temperatures, plain and bootstrapped): 6 minutes of training each; a smaller
# lattice_conv (32 channels x 4 layers) and smaller buffer refreshes than the GPU-sized configs
ISING="--set network.channels=32 --set network.layers=4 --set train.buffer_refresh=500"
want ising10 && $PY benchmarks/train_all.py configs/ising10_*_plain.toml --out $OUT/ising10 --jobs 2 --max-seconds 360 \
    $ISING --set train.batch_size=256 --set estimator.num_proposals=512 $EVAL
want ising10_boot && $PY benchmarks/train_all.py configs/ising10_*_boot.toml --out $OUT/ising10_boot --jobs 2 --max-seconds 360 \
    $ISING --set train.batch_size=128 --set estimator.num_proposals=256 --set estimator.energy_batch_fraction=0.5 $BOOT $EVAL

# continuous: GMM-25 flow / diffusion and DW-4, 4 minutes each
# dw4_flow_plain with its EGNN diverges here at the first buffer refresh (the EGNN flow blows up 843 of
# 1,000 simulated samples after 100 steps, then NaN); on the CPU it runs with the core MLP instead
want continuous && $PY benchmarks/train_all.py configs/dw4_flow_plain.toml --out $OUT/continuous --jobs 2 \
    --max-seconds 240 --set train.batch_size=256 --set estimator.num_proposals=256 --set train.buffer_refresh=1000 \
    --set 'network={name="mlp", hidden=256, layers=4}' $EVAL
want continuous && $PY benchmarks/train_all.py configs/gmm25_*_plain.toml --out $OUT/continuous \
    --jobs 2 --max-seconds 240 --set train.batch_size=256 --set estimator.num_proposals=256 --set train.buffer_refresh=1000 $EVAL
want continuous_boot && $PY benchmarks/train_all.py configs/gmm25_*_boot.toml configs/dw4_flow_boot.toml --out $OUT/continuous_boot \
    --jobs 2 --max-seconds 240 --set train.batch_size=128 --set estimator.num_proposals=128 --set train.buffer_refresh=1000 $BOOT $EVAL

# mixed: GB-RBM, joint MoG, joint DW-4, 4 minutes each
want mixed && $PY benchmarks/train_all.py configs/gb_rbm_plain.toml configs/joint_mog_plain.toml configs/joint_dw4_plain.toml \
    --out $OUT/mixed --jobs 2 --max-seconds 240 --set train.batch_size=256 --set estimator.num_proposals=256 $EVAL
want mixed_boot && $PY benchmarks/train_all.py configs/gb_rbm_boot.toml configs/joint_mog_boot.toml configs/joint_dw4_boot.toml \
    --out $OUT/mixed_boot --jobs 2 --max-seconds 240 --set train.batch_size=128 --set estimator.num_proposals=256 $BOOT $EVAL
