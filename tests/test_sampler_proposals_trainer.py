"""estimator.sampler_proposals through the trainer and the CLI: the r = 1 estimates of the rows with
t < sampler_proposal_t_max draw completions from the sampler network instead of the path, the
sampler evaluations are counted and checkpointed, rows above the threshold are untouched, and a
configuration it cannot apply to is a clear error (a generator without completions:
tests/test_teacher_targets_trainer.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from egm_framework.cli import demo_config_path
from egm_framework.config import apply_overrides, config_from_dict, load_config_dict
from egm_framework.errors import ConfigError
from egm_framework.trainer import Trainer

#: the embedded demo (Ising, masked path, jump generator) on 3×3, plain SNIS, 4 steps of B = 16
TINY = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=8",
        "train.batch_size=16", "train.outer_iterations=2", "train.inner_iterations=2", "train.buffer_size=64",
        "train.buffer_refresh=32", "train.progress=false", 'train.device="cpu"', "train.threads=1"]
BOOT = ['estimator.kind="bootstrap"', "estimator.delta=0.1", 'energy_network={name="mlp",hidden=16,layers=2}',
        "estimator.bootstrap_t_max=0.5"]


def _cfg(*extra: str):
    return config_from_dict(apply_overrides(load_config_dict(demo_config_path()), TINY + list(extra)))


def test_plain_rows_take_sampler_proposals_counted_and_checkpointed(tmp_path):
    tr = Trainer(_cfg("estimator.sampler_proposals=4", "estimator.sampler_proposal_steps=3"), tmp_path / "run")
    tr.fit(evaluate_at_end=False)
    assert tr.step == 4 and all(torch.isfinite(p).all() for p in tr.model.parameters())
    # every row (t_max = 1): B · K_s · steps sampler evaluations per step; K_s proposals per row, each
    # with one energy and one conditional-logits pass (the demo's conditional targets)
    assert tr.sampler_proposal_evals == 4 * 16 * 4 * 3
    assert tr.energy_evals == 4 * 16 * 4 * 2
    assert '"sampler_proposal_evals": %d' % tr.sampler_proposal_evals in (tmp_path / "run" / "metrics.jsonl").read_text()
    assert Trainer.open(tmp_path / "run").sampler_proposal_evals == tr.sampler_proposal_evals


def test_the_spacing_reaches_the_generator(tmp_path, monkeypatch):
    """estimator.sampler_proposal_spacing is passed to sample_completions (default 1, equal rounds);
    below 1 is a config error."""
    tr = Trainer(_cfg("estimator.sampler_proposals=2", "estimator.sampler_proposal_spacing=2.5"), tmp_path / "s")
    seen = []
    original = type(tr.comp.generator).sample_completions

    def spy(self, *args, spacing=1.0, **kw):
        seen.append(spacing)
        return original(self, *args, spacing=spacing, **kw)
    monkeypatch.setattr(type(tr.comp.generator), "sample_completions", spy)
    tr.refill_buffer()
    tr.training_batch()
    assert seen and set(seen) == {2.5}
    assert _cfg().estimator.sampler_proposal_spacing == 1.0
    with pytest.raises(ConfigError, match="sampler_proposal_spacing"):
        _cfg("estimator.sampler_proposal_spacing=0.5")


def test_rows_above_the_threshold_keep_the_path_proposals(tmp_path):
    a = Trainer(_cfg(), tmp_path / "a")
    b = Trainer(_cfg("estimator.sampler_proposals=4", "estimator.sampler_proposal_t_max=0.5"), tmp_path / "b")
    a.refill_buffer()
    b.refill_buffer()
    ba, bb = a.training_batch(), b.training_batch()  # same seed: same x_t, t and path proposals
    assert torch.equal(ba.x_t, bb.x_t) and torch.equal(ba.t, bb.t)
    low = ba.t < 0.5
    assert low.any() and (~low).any()
    assert torch.equal(ba.target[~low], bb.target[~low]) and torch.equal(ba.ess[~low], bb.ess[~low])
    masked = (ba.x_t == 2) & low.view(-1, 1, 1)
    assert (ba.target - bb.target)[masked].abs().max() > 0
    # every row below the threshold: both estimates are made (B · 4 · 8 sampler evaluations)
    assert b.sampler_proposal_evals == 16 * 4 * 8


def test_bootstrap_energy_target_uses_them_and_rows_past_the_cut_skip_them(tmp_path):
    tr = Trainer(_cfg(*BOOT, "estimator.sampler_proposals=4", "estimator.sampler_proposal_t_max=0.5",
                      "estimator.sampler_proposal_steps=2"), tmp_path / "boot")
    tr.refill_buffer()
    x_t = tr.buffer.sample(10, tr.gen)
    t = torch.tensor([0.1] * 6 + [0.7] * 4)
    tr.estimator.estimate(x_t, t, tr.gen, n_final=4)
    assert tr.sampler_proposal_evals == 0  # r = 1 rows are all past the cut 0.5 = t_max
    before = tr.sampler_proposal_evals
    direct = tr.estimator.energy_regression_estimate(x_t, t, tr.gen)
    assert tr.sampler_proposal_evals - before == 10 * 4 * 2
    assert torch.isfinite(direct.log_mean_weight).all()
    tr.fit(evaluate_at_end=False)
    assert tr.step == 4 and tr.sampler_proposal_evals > 10 * 4 * 2


def test_bootstrapped_rows_take_sampler_bridges_counted(tmp_path, monkeypatch):
    """estimator.sampler_bridges: the rows below the cut draw their K bridge proposals from the sampler,
    to r = t + delta (passed as r), in sampler_bridge_steps rounds; the rows past the cut do not."""
    tr = Trainer(_cfg(*BOOT, "estimator.sampler_bridges=true", "estimator.sampler_bridge_steps=3"), tmp_path / "b")
    seen = []
    original = type(tr.comp.generator).sample_completions

    def spy(self, model, path, x_t, t, n, steps, generator, spacing=1.0, r=None):
        seen.append((x_t.shape[0], n, steps, None if r is None else r.clone()))
        return original(self, model, path, x_t, t, n, steps, generator, spacing=spacing, r=r)
    monkeypatch.setattr(type(tr.comp.generator), "sample_completions", spy)
    tr.refill_buffer()
    x_t = tr.buffer.sample(10, tr.gen)
    t = torch.tensor([0.1] * 6 + [0.7] * 4)
    est = tr.estimator.estimate(x_t, t, tr.gen, n_final=4)
    assert torch.isfinite(est.log_mean_weight).all() and torch.isfinite(est.target).all()
    assert len(seen) == 1 and seen[0][:3] == (6, 8, 3) and torch.allclose(seen[0][3], torch.full((6,), 0.2))
    assert tr.sampler_proposal_evals == 6 * 8 * 3
    tr.fit(evaluate_at_end=False)
    assert tr.step == 4 and all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert '"sampler_proposal_evals"' in (tmp_path / "b" / "metrics.jsonl").read_text()


def test_sampler_bridges_outside_bootstrapping_or_unsupported_are_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="sampler_bridges.*bootstrap"):
        Trainer(_cfg("estimator.sampler_bridges=true"), tmp_path / "s")
    from egm_discrete.generator import JumpGenerator

    # a generator whose sample_completions predates r (a plugin written against the older interface)
    monkeypatch.setattr(JumpGenerator, "supports_sampler_bridges", False)
    with pytest.raises(ConfigError, match="bridge proposals.*sampler_bridges = false"):
        Trainer(_cfg(*BOOT, "estimator.sampler_bridges=true"), tmp_path / "g")


def test_a_path_without_sampler_proposals_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="masked path"):
        Trainer(_cfg('path={name="uniform"}', "estimator.sampler_proposals=4"), tmp_path / "u")
    with pytest.raises(ConfigError, match="proposal_allocation"):
        Trainer(_cfg('estimator.proposal_allocation="ess"', "estimator.sampler_proposals=4"), tmp_path / "a")


def test_sampler_proposals_with_proposal_parallel_training_are_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "egm_framework.cli", "train", demo_config_path(), "--out", str(tmp_path / "r"),
                          "--no-eval", "--set", "train.parallel=proposals", "--set", "estimator.sampler_proposals=8"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "estimator.sampler_proposals" in res.stderr, res.stderr
