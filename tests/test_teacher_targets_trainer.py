"""estimator.teacher_targets through the trainer and the CLI: the bootstrapped rows take the sampler
network's prediction at (x_r, r) as teacher (its EMA copy when there is one), its evaluations are
counted and checkpointed, and a configuration it cannot apply to is a clear error."""

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

#: the embedded demo (Ising) shrunk to 3×3, bootstrapped, 6 steps
TINY_BOOT = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=8",
             'estimator.kind="bootstrap"', "estimator.delta=0.2", 'energy_network={name="mlp",hidden=16,layers=2}',
             "train.batch_size=16", "train.outer_iterations=2", "train.inner_iterations=3", "train.buffer_size=64",
             "train.buffer_refresh=32", "train.progress=false", 'train.device="cpu"', "train.threads=1"]


def _cfg(*extra: str):
    return config_from_dict(apply_overrides(load_config_dict(demo_config_path()), TINY_BOOT + list(extra)))


def test_teacher_targets_train_count_and_resume(tmp_path):
    tr = Trainer(_cfg("estimator.teacher_targets=true"), tmp_path / "run")
    assert tr.estimator.teacher_fn is not None
    tr.fit(evaluate_at_end=False)
    assert tr.step == 6 and all(torch.isfinite(p).all() for p in tr.model.parameters())
    # one teacher evaluation per bootstrapped proposal: a positive multiple of K below B·K per step
    assert 0 < tr.teacher_evals <= 6 * 16 * 8 and tr.teacher_evals % 8 == 0
    assert '"teacher_evals": %d' % tr.teacher_evals in (tmp_path / "run" / "metrics.jsonl").read_text()
    again = Trainer.open(tmp_path / "run")
    assert again.teacher_evals == tr.teacher_evals


def test_teacher_changes_only_the_bootstrapped_rows(tmp_path):
    a = Trainer(_cfg(), tmp_path / "a")
    b = Trainer(_cfg("estimator.teacher_targets=true"), tmp_path / "b")
    a.refill_buffer()
    b.refill_buffer()
    ba, bb = a.training_batch(), b.training_batch()  # same seed: same x_t, t, proposals and weights
    assert torch.equal(ba.x_t, bb.x_t) and torch.equal(ba.t, bb.t)
    boot = ba.t < 1 - 0.2  # r = t + Δ < 1
    final = ~boot
    assert boot.any() and final.any()
    assert torch.equal(ba.target[final], bb.target[final])
    masked = (ba.x_t == 2) & boot.view(-1, 1, 1)
    assert masked.any() and (ba.target - bb.target)[masked].abs().max() > 0
    # the teacher target is a distribution on every masked site; the bridge target has no mass on a
    # bootstrapped site that none of its K = 8 proposals unmasked (it says nothing there)
    mass_a, mass_b = ba.target.sum(-1)[ba.x_t == 2], bb.target.sum(-1)[ba.x_t == 2]
    assert torch.allclose(mass_b, torch.ones(()), atol=1e-5)
    assert (mass_a < 0.5).any()


def test_teacher_is_the_sampler_ema_when_there_is_one(tmp_path):
    tr = Trainer(_cfg("estimator.teacher_targets=true", "train.ema_decay=0.9"), tmp_path / "ema")
    tr.fit(evaluate_at_end=False)
    x = torch.full((4, 3, 3), 2, dtype=torch.long)
    r = torch.full((4,), 0.3)
    with torch.no_grad():
        ema, live = tr.model_ema(x, r), tr.model(x, r)
    assert not torch.allclose(ema, live)
    assert torch.equal(tr._teacher(x, r), ema)


def test_teacher_targets_without_bootstrapping_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="estimator.kind"):
        Trainer(_cfg('estimator.kind="snis"', "estimator.teacher_targets=true"), tmp_path / "snis")


@pytest.mark.parametrize("config, setting", [("gb_rbm_boot.toml", "estimator.teacher_targets=true"),
                                             ("gb_rbm_plain.toml", "estimator.sampler_proposals=8")])
def test_generator_options_on_a_generator_without_them_are_clean_cli_errors(tmp_path, config, setting):
    # the mixed plugin's product generator has neither teacher targets (jump, flow and diffusion have) nor
    # completions of known probability (sampler proposals: jump on the masked path)
    cfg = os.path.join(os.path.dirname(__file__), "..", "configs", config)
    res = subprocess.run([sys.executable, "-m", "egm_framework.cli", "train", cfg, "--out", str(tmp_path / "r"),
                          "--no-eval", "--set", setting],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("egm: error:"), res.stderr
    assert setting.split("=")[0] in res.stderr and "'product'" in res.stderr, res.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
