"""Which rows of a bootstrapped batch take r = 1 (estimator.bootstrap_t_max), how many proposals
they get (estimator.final_num_proposals), and which rows train the energy network."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from egm_framework.cli import demo_config_path
from egm_framework.config import apply_overrides, config_from_dict, load_config_dict
from egm_framework.trainer import Trainer

TINY_BOOT = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=8",
             'estimator.kind="bootstrap"', "estimator.delta=0.1", 'energy_network={name="mlp",hidden=16,layers=2}',
             "train.batch_size=64", "train.outer_iterations=1", "train.inner_iterations=2", "train.buffer_size=64",
             "train.buffer_refresh=32", "train.progress=false", 'train.device="cpu"', "train.threads=1",
             "estimator.conditional_targets=false"]


def _trainer(tmp_path, *extra):
    cfg = config_from_dict(apply_overrides(load_config_dict(demo_config_path()), TINY_BOOT + list(extra)))
    return Trainer(cfg, tmp_path / "run")


def test_bootstrap_t_max_moves_the_cut(tmp_path):
    tr = _trainer(tmp_path, "estimator.bootstrap_t_max=0.5")
    assert tr._bootstrap_cut() == 0.5
    counts = []
    for _ in range(50):
        t, n_final = tr.sample_times(64)
        n_boot = 64 - n_final
        assert (t[:n_boot] < 0.5).all() and (t[n_boot:] >= 0.5).all()
        counts.append(n_final)
    assert 0.4 < np.mean(counts) / 64 < 0.6  # (0.999 − 0.5) / 0.999 of the rows
    # it can only lower the cut: above 1 − Δ the bridge end time t + Δ would pass 1
    assert _trainer(tmp_path / "b", "estimator.bootstrap_t_max=0.95")._bootstrap_cut() == pytest.approx(0.9)
    assert _trainer(tmp_path / "c")._bootstrap_cut() == pytest.approx(0.9)


def test_final_num_proposals_applies_to_the_r1_rows_only(tmp_path):
    tr = _trainer(tmp_path, "estimator.final_num_proposals=40", "estimator.bootstrap_t_max=0.5")
    tr.refill_buffer()
    before = tr.estimator.energy_evals
    x_t = tr.buffer.sample(10, tr.gen)
    t = torch.tensor([0.1] * 6 + [0.7] * 4)
    est = tr.estimator.estimate(x_t, t, tr.gen, n_final=4)
    # the 4 final rows call the true energy on 40 proposals each, the 6 bootstrapped rows never
    assert tr.estimator.energy_evals - before == 4 * 40
    # ESS / K of each row is normalized by its own K: at least 1/K
    assert (est.ess[6:] >= 1 / 40 - 1e-6).all() and (est.ess[:6] >= 1 / 8 - 1e-6).all()


def test_energy_rows_cover_the_final_rows(tmp_path):
    """With energy_batch_fraction < 1 the energy network's rows are spread over the batch; they must
    include rows at t ≥ 1 − Δ, since the network is queried at r = t + Δ up to 1 (the first rows of a
    bootstrapped batch, which an earlier version took, stop at the cut)."""
    tr = _trainer(tmp_path, "estimator.energy_batch_fraction=0.5")
    tr.refill_buffer()
    top = []
    for _ in range(10):
        b = tr.training_batch()
        assert b.t_e.shape[0] == 32
        top.append(float((b.t_e >= tr._bootstrap_cut()).float().mean()))
    assert np.mean(top) > 0.05  # ≈ the 10 % of rows above the cut


def test_a_second_k_with_proposal_parallel_training_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "egm_framework.cli", "train", demo_config_path(), "--out", str(tmp_path / "r"),
                          "--no-eval", "--set", "train.parallel=proposals", "--set", 'estimator.kind="bootstrap"',
                          "--set", 'energy_network={name="mlp",hidden=8,layers=1}',
                          "--set", "estimator.final_num_proposals=512"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "estimator.final_num_proposals" in res.stderr, res.stderr
