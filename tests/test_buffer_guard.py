"""The replay buffer keeps finite outliers out: refill samples whose energy is far above the buffer's
quantiles are dropped and logged (egm_framework.buffer_guard, Trainer.refill_buffer)."""

import json

import pytest
import torch

from egm_framework.buffer_guard import energy_outlier_mask, energy_threshold
from egm_framework.config import config_from_dict
from egm_framework.errors import UnknownComponentError
from egm_framework.registry import get_registry


def test_mask_drops_far_energies_and_keeps_the_bulk():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1000, generator=g)  # q90 - q10 ≈ 2.56
    bad = torch.tensor([1e7, 50.0, float("inf"), float("nan")])
    keep = energy_outlier_mask(torch.cat([e, bad]))
    assert keep[:1000].all()
    assert not keep[1000:].any()
    # the threshold is q90 + 10 · (q90 − q10) of the buffer's energies together with the new ones
    thr = float(energy_threshold(e))
    assert 25.0 < thr < 30.0
    assert energy_outlier_mask(torch.tensor([thr - 0.1, thr + 0.1]), e).tolist() == [True, False]
    # a reference spread below 1 counts as 1 (energies are in units of kT)
    assert energy_outlier_mask(torch.tensor([9.5, 10.5]), torch.zeros(100)).tolist() == [True, False]
    # a refill whose bulk moved away from a stale buffer is kept (the buffer follows the model) ...
    moved = 200.0 + 30.0 * torch.randn(1000, generator=g)
    assert energy_outlier_mask(moved, e).float().mean() > 0.99
    # ... while its own far outliers are still dropped
    assert not energy_outlier_mask(torch.cat([moved, torch.tensor([1e7])]), e)[-1]


def test_refill_drops_injected_outliers(tmp_path):
    try:
        reg = get_registry()
        reg.get("energy", "gaussian")
    except UnknownComponentError as exc:  # pragma: no cover - the plugins are installed by `make test`
        pytest.skip(str(exc))
    from egm_framework.trainer import Trainer

    cfg = config_from_dict({
        "energy": {"name": "gaussian", "dim": 2}, "path": {"name": "cond_ot"}, "generator": {"name": "flow"},
        "network": {"name": "mlp", "hidden": 8, "layers": 1}, "estimator": {"num_proposals": 8},
        "train": {"batch_size": 8, "outer_iterations": 1, "inner_iterations": 1, "buffer_size": 256,
                  "buffer_refresh": 100, "buffer_sample_steps": 2, "device": "cpu", "progress": False},
    })
    trainer = Trainer(cfg, tmp_path / "run", registry=reg)
    (tmp_path / "run").mkdir(parents=True, exist_ok=True)
    trainer.folder.acquire_lock()  # the refill logs to metrics.jsonl, which only the lock holder may write
    g = torch.Generator().manual_seed(1)

    def fake_sample(n, steps, generator=None):
        x = torch.randn(n, 2, generator=g)
        x[:3] = torch.tensor([[1e3, 0.0], [0.0, -40.0], [25.0, 25.0]])  # finite, energies 5e5, 800, 625
        return x

    trainer.sample = fake_sample
    trainer.refill_buffer()  # empty buffer: the refill's own quantiles are the reference
    trainer.refill_buffer()  # then the buffer's
    data = trainer.buffer.data[:trainer.buffer.size]
    assert trainer.buffer.size == 2 * 97
    assert data.abs().max() < 10
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["buffer_dropped_outliers"] for r in logs if "buffer_dropped_outliers" in r] == [3, 3]
