"""train.ema_decay: an exponential moving average of the sampler's weights drives every simulation,
is checkpointed, survives a resume, and may be switched on at resume."""

from __future__ import annotations

import pytest
import torch

from egm_framework.cli import demo_config_path
from egm_framework.config import apply_overrides, config_from_dict, load_config_dict
from egm_framework.trainer import Trainer

#: the embedded demo config shrunk to a tiny Ising 3×3 run (6 steps)
TINY = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=16",
        "train.batch_size=16", "train.outer_iterations=2", "train.inner_iterations=3", "train.buffer_size=64",
        "train.buffer_refresh=32", "train.log_every=2", "train.progress=false", 'train.device="cpu"',
        "train.threads=1", "eval.num_samples=64"]


def tiny_dict() -> dict:
    return apply_overrides(load_config_dict(demo_config_path()), TINY)


def _cfg(*extra: str):
    return config_from_dict(apply_overrides(tiny_dict(), list(extra)))


def _flat(module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_ema_off_by_default_and_simulations_use_the_raw_weights(tmp_path):
    tr = Trainer(_cfg(), tmp_path / "r")
    assert tr.model_ema is None
    x, t = torch.zeros(2, 9, dtype=torch.long), torch.full((2,), 0.5)
    assert torch.equal(tr.model_fn(x, t), tr.model(x, t))


def test_ema_is_the_exact_running_average_and_drives_sampling(tmp_path):
    decay = 0.9
    tr = Trainer(_cfg(f"train.ema_decay={decay}"), tmp_path / "r")
    tr.fit(evaluate_at_end=False)  # 6 steps
    assert tr.step == 6
    # replay the average from the weights after each step: rerun the same training and record them
    tr2 = Trainer(_cfg(f"train.ema_decay={decay}"), tmp_path / "r2")
    ema = _flat(tr2.model).clone()
    orig = tr2.train_step

    def step_and_record():
        nonlocal ema
        orig()
        d = min(decay, (1.0 + tr2.step) / (10.0 + tr2.step))
        ema = d * ema + (1 - d) * _flat(tr2.model)

    tr2.train_step = step_and_record
    tr2.fit(evaluate_at_end=False)
    assert torch.allclose(_flat(tr2.model_ema), ema, atol=1e-6)
    assert torch.allclose(_flat(tr.model_ema), ema, atol=1e-6)  # same seed, same run
    assert not torch.allclose(_flat(tr.model_ema), _flat(tr.model), atol=1e-6)
    x, t = torch.zeros(3, 9, dtype=torch.long), torch.full((3,), 0.4)
    assert torch.equal(tr.model_fn(x, t), tr.model_ema(x, t))
    assert not torch.equal(tr.model_fn(x, t), tr.model(x, t))


def test_ema_is_checkpointed_and_resumed_bit_identically(tmp_path):
    cfg = _cfg("train.ema_decay=0.8")
    full = Trainer(cfg, tmp_path / "full")
    full.fit(evaluate_at_end=False)
    crashed = Trainer(cfg, tmp_path / "crashed")  # dies in its 4th step, after the checkpoint of outer 1
    orig = crashed.train_step

    def dying_step():
        if crashed.step == 3:
            raise RuntimeError("simulated crash")
        orig()

    crashed.train_step = dying_step
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(evaluate_at_end=False)
    crashed.folder.release_lock()
    resumed = Trainer.resume(tmp_path / "crashed")
    assert resumed.step == 3 and not torch.equal(_flat(resumed.model_ema), _flat(resumed.model))
    resumed.fit(evaluate_at_end=False)
    assert torch.equal(_flat(resumed.model_ema), _flat(full.model_ema))
    assert torch.equal(_flat(resumed.model), _flat(full.model))


def test_ema_switched_on_at_resume_starts_from_the_weights(tmp_path):
    plain = Trainer(_cfg("train.outer_iterations=1"), tmp_path / "r")
    plain.fit(evaluate_at_end=False)
    on = Trainer.resume(tmp_path / "r", overrides=["train.ema_decay=0.9", "train.outer_iterations=2"])
    assert torch.equal(_flat(on.model_ema), _flat(on.model))
    on.fit(evaluate_at_end=False)
    assert not torch.equal(_flat(on.model_ema), _flat(on.model))
