"""estimator.conditional_targets through the trainer and the CLI: it trains, it counts the extra
conditional pass in energy_evals, and an energy or generator without conditionals is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from egm_framework.cli import demo_config_path
from egm_framework.config import apply_overrides, config_from_dict, load_config_dict
from egm_framework.trainer import Trainer

#: the embedded demo (Ising) shrunk to 3×3 and 6 steps
TINY = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=16",
        "train.batch_size=16", "train.outer_iterations=2", "train.inner_iterations=3", "train.buffer_size=64",
        "train.buffer_refresh=32", "train.progress=false", 'train.device="cpu"', "train.threads=1"]


def _cfg(*extra: str):
    return config_from_dict(apply_overrides(load_config_dict(demo_config_path()), TINY + list(extra)))


def test_conditional_targets_train_and_count_the_conditional_pass(tmp_path):
    plain = Trainer(_cfg("estimator.conditional_targets=false"), tmp_path / "plain")
    plain.fit(evaluate_at_end=False)
    rb = Trainer(_cfg("estimator.conditional_targets=true"), tmp_path / "rb")
    assert rb.estimator.conditional_targets
    rb.fit(evaluate_at_end=False)
    assert rb.step == plain.step == 6
    # one true-energy pass and one conditional pass per proposal: twice the plain count
    assert rb.estimator.energy_evals == 2 * plain.estimator.energy_evals > 0
    assert all(torch.isfinite(p).all() for p in rb.model.parameters())


def test_conditional_targets_change_the_targets(tmp_path):
    a = Trainer(_cfg("estimator.conditional_targets=false"), tmp_path / "a")
    b = Trainer(_cfg("estimator.conditional_targets=true"), tmp_path / "b")
    a.refill_buffer()
    b.refill_buffer()
    ba, bb = a.training_batch(), b.training_batch()  # same seed: same x_t, same proposals
    assert torch.equal(ba.x_t, bb.x_t)
    masked = ba.x_t == 2
    assert masked.any()
    # indicator targets of one proposal set vs conditional laws of the same proposals: close, not equal
    diff = (ba.target - bb.target)[masked].abs()
    assert 0 < diff.max() < 1


def test_energy_without_conditionals_is_a_clean_cli_error(tmp_path):
    cfg = os.path.join(os.path.dirname(__file__), "..", "configs", "gmm25_flow_plain.toml")
    res = subprocess.run([sys.executable, "-m", "egm_framework.cli", "train", cfg, "--out", str(tmp_path / "r"),
                          "--no-eval", "--set", "estimator.conditional_targets=true"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("egm: error:"), res.stderr
    for fragment in ("estimator.conditional_targets", "'gmm25'", "conditional_logits"):
        assert fragment in res.stderr, res.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_collapse_on_a_path_without_it_is_a_clean_cli_error(tmp_path):
    cfg = os.path.join(os.path.dirname(__file__), "..", "configs", "gmm25_flow_plain.toml")
    res = subprocess.run([sys.executable, "-m", "egm_framework.cli", "train", cfg, "--out", str(tmp_path / "r"),
                          "--no-eval", "--set", "estimator.collapse_continuous=true"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "estimator.collapse_continuous" in res.stderr and "'cond_ot'" in res.stderr, res.stderr
