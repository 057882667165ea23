"""estimator.proposal_allocation = "ess": K_g ∝ ess_g^(−1/2) per stratum of t, the stratified times,
the per-call K of the estimators, and the trainer end to end (budget, logging, resume, clear errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from egm_framework.allocation import allocate_proposals, stratified_times, stratum_sizes
from egm_framework.cli import demo_config_path
from egm_framework.config import apply_overrides, config_from_dict, load_config_dict
from egm_framework.trainer import ESS_BINS, Trainer

TINY = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=16",
        "train.batch_size=23", "train.outer_iterations=2", "train.inner_iterations=4", "train.log_every=2",
        "train.buffer_size=64", "train.buffer_refresh=32", "train.progress=false", 'train.device="cpu"',
        "train.threads=1"]


def _cfg(*extra: str):
    return config_from_dict(apply_overrides(load_config_dict(demo_config_path()), TINY + list(extra)))


# ---------------------------------------------------------------- the rule


def test_equal_ess_gives_k_everywhere_and_the_rule_is_inverse_square_root():
    assert allocate_proposals([0.3] * 10, 100, 16.0) == [100] * 10
    # two bins, ESS 4x apart: K 2x apart, same total
    assert allocate_proposals([0.1, 0.4], 300, 16.0) == [400, 200]
    # a 100x ESS ratio: 10x in K; the budget is kept up to rounding
    k = allocate_proposals([0.01] * 5 + [1.0] * 5, 1000, 100.0)
    assert k[0] == k[4] and k[5] == k[9] and k[0] / k[5] == pytest.approx(10.0, rel=1e-2)
    assert abs(sum(k) - 10 * 1000) <= 10


def test_allocation_is_clipped_and_missing_bins_take_the_mean():
    k = allocate_proposals([1e-6] + [1.0] * 9, 64, 4.0)
    assert k[0] == 256 and min(k) >= 16
    assert allocate_proposals([None] * 10, 50, 16.0) == [50] * 10
    filled = allocate_proposals([0.1, None, 0.1], 90, 16.0)
    assert filled == [90, 90, 90]
    assert min(allocate_proposals([1.0, 1e-9], 3, 1000.0)) >= 1  # never below one proposal


def test_strata_split_the_batch_evenly_and_without_bias():
    rng = np.random.default_rng(0)
    extra = np.zeros(10)
    for _ in range(2000):
        s = stratum_sizes(23, 10, rng)
        assert sum(s) == 23 and max(s) - min(s) <= 1
        extra += np.array(s) - 2
    # the 3 extra rows land in each stratum equally often (0.3 per draw)
    assert np.allclose(extra / 2000, 0.3, atol=0.05)


def test_stratified_times_lie_in_their_bins_and_are_uniform_overall():
    gen = torch.Generator().manual_seed(1)
    sizes = [50] * 10
    t, finals = stratified_times(sizes, 0.0, 1.0, gen, "cpu")
    assert finals == [0] * 10
    for g in range(10):
        seg = t[50 * g:50 * (g + 1)]
        assert (seg >= g / 10).all() and (seg < (g + 1) / 10 + 1e-6).all()
    # with a bootstrap cut inside a bin: the rows above it come last within that bin only
    rng = np.random.default_rng(0)
    t, finals = stratified_times([400] * 4, 0.0, 1.0, gen, "cpu", cut=0.9, host_rng=rng)
    assert finals[:3] == [0, 0, 0] and 120 < finals[3] < 280  # binomial(400, 0.4)
    last = t[1200:]
    nb = 400 - finals[3]
    assert (last[:nb] < 0.9).all() and (last[nb:] >= 0.9).all() and (last >= 0.75).all()
    # pooled over strata the times are uniform: a coarse histogram
    t, _ = stratified_times([1000] * 10, 0.2, 0.8, gen, "cpu")
    hist = torch.histc(t, bins=6, min=0.2, max=0.8)
    assert (hist - 10000 / 6).abs().max() < 60  # strata of width 0.06 against bins of 0.1: exact up to noise


# ---------------------------------------------------------------- the estimators take K per call


def test_per_call_k_equals_an_estimator_built_with_that_k(tmp_path):
    a = Trainer(_cfg("estimator.num_proposals=16"), tmp_path / "a")
    b = Trainer(_cfg("estimator.num_proposals=40"), tmp_path / "b")
    x1 = torch.randint(0, 2, (5, 3, 3), generator=torch.Generator().manual_seed(0))
    t = torch.full((5,), 0.4)
    x_t = a.comp.path.sample_xt(x1, t, torch.Generator().manual_seed(1))
    ea = a.estimator.estimate(x_t, t, torch.Generator().manual_seed(2), num_proposals=40)
    eb = b.estimator.estimate(x_t, t, torch.Generator().manual_seed(2))
    assert torch.equal(ea.target, eb.target) and torch.equal(ea.ess, eb.ess)
    assert a.estimator.energy_evals == b.estimator.energy_evals == 5 * 40 * 2  # conditional pass counted


# ---------------------------------------------------------------- the trainer


def test_trainer_allocates_by_ess_keeps_the_budget_logs_and_resumes(tmp_path):
    tr = Trainer(_cfg('estimator.proposal_allocation="ess"'), tmp_path / "r")
    assert tr.allocation == [16] * ESS_BINS
    tr.refill_buffer()
    b = tr.training_batch()
    # sorted by stratum: t is non-decreasing bin by bin
    bins = tr._time_bin(b.t)
    assert torch.all(bins[1:] >= bins[:-1])
    # with the uniform initial allocation: 23 rows x 16 proposals x 2 (conditional pass)
    assert tr.estimator.energy_evals == 23 * 16 * 2
    tr.fit(evaluate_at_end=False)
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in recs if "proposals_by_time" in r]
    assert logs and logs[0]["proposals_by_time"] == [16] * ESS_BINS
    # on the masked path the ESS falls towards small t: after the first update small t gets more proposals
    later = logs[-1]["proposals_by_time"]
    assert later != [16] * ESS_BINS and later[0] > later[-1]
    state = tr.state_dict()
    again = Trainer(_cfg('estimator.proposal_allocation="ess"'), tmp_path / "s")
    again.load_state_dict(state)
    assert again.allocation == tr.allocation and again._alloc_ess == tr._alloc_ess


def test_uniform_allocation_is_unchanged_by_the_option(tmp_path):
    tr = Trainer(_cfg(), tmp_path / "u")
    assert tr.allocation is None and "proposal_allocation" not in tr.state_dict()


def test_allocation_with_shards_is_a_clean_cli_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "egm_framework.cli", "train", str(demo_config_path()), "--out", str(tmp_path / "r"),
                          "--no-eval",
                          "--set", 'estimator.proposal_allocation="ess"', "--set", "train.batch_shards=2",
                          "--set", "train.outer_iterations=1", "--set", "train.inner_iterations=1"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("egm: error:"), res.stderr
    assert "estimator.proposal_allocation" in res.stderr and "batch_shards = 2" in res.stderr, res.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_bad_allocation_name_is_a_config_error():
    from egm_framework.errors import ConfigError

    with pytest.raises(ConfigError, match="proposal_allocation"):
        _cfg('estimator.proposal_allocation="adaptive"')
    with pytest.raises(ConfigError, match="proposal_allocation_max_ratio"):
        _cfg("estimator.proposal_allocation_max_ratio=0.5")


def test_bootstrap_with_allocation_trains_and_counts_only_its_final_rows(tmp_path):
    """Bootstrapping: each stratum's rows with r = 1 use the true energy (with K_g proposals), the others
    the learned intermediate energy; training runs and stays finite."""
    tr = Trainer(_cfg('estimator.kind="bootstrap"', "estimator.delta=0.25", 'estimator.proposal_allocation="ess"',
                      'energy_network={name="mlp",hidden=16,layers=2}'), tmp_path / "b")
    tr.refill_buffer()
    before = tr.estimator.energy_evals
    b = tr.training_batch()
    n_final = int((b.t >= tr._bootstrap_cut()).sum())
    # true energy: K = 16 proposals per final row (+ their conditional pass: the demo ships conditional
    # targets), plus the direct energy targets (16 per row, every row)
    direct = 23 * 16
    assert tr.estimator.energy_evals - before == n_final * 16 * 2 + direct
    assert 0 < n_final < 23
    tr.fit(evaluate_at_end=False)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert all(torch.isfinite(p).all() for p in tr.energy_net.parameters())
