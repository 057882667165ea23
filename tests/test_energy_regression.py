"""The robust intermediate-energy regression: exact values of its pieces, boundedness under an
injected heavy-tailed target (where plain least squares blows up), the separate gradient clips, and
the small-t policy of the trainer."""

from __future__ import annotations

import math

import pytest
import torch

from egm_framework.config import config_from_dict
from egm_framework.energy_regression import RobustEnergyLoss, huber
from egm_framework.errors import ConfigError
from egm_framework.estimators import log_mean_variance


def test_huber_exact_values():
    r = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0])
    assert torch.allclose(huber(r, 1.0), torch.tensor([2.5, 0.5, 0.0, 0.125, 1.5]))
    assert torch.allclose(huber(r, 2.0), torch.tensor([4.0, 0.5, 0.0, 0.125, 2.0]))


def test_running_center_and_spread_are_per_bin_median_and_mad_unmoved_by_outliers():
    fn = RobustEnergyLoss((0.0, 1.0), "cpu", bins=3, min_scale=0.0)
    y = torch.tensor([100.0, 1.0, 3.0, 20.0, 10.0, 30.0, 5.0, float("nan")])
    t = torch.tensor([0.1, 0.2, 0.3, 0.5, 0.55, 0.6, 0.9, 0.95])
    valid = ~torch.isnan(y)
    fn.update(torch.nan_to_num(y), fn.bin_of(t), valid)
    assert torch.allclose(fn.center, torch.tensor([3.0, 20.0, 5.0]))
    # bin 0: |y − 3| = 97, 2, 0 -> MAD 2; bin 1: MAD 10; bin 2 has one valid row: no spread of its
    # own, it takes the geometric mean of the others'
    s0, s1 = 1.4826 * 2, 1.4826 * 10
    assert torch.allclose(fn.scale(torch.tensor([0, 1, 2])), torch.tensor([s0, s1, math.sqrt(s0 * s1)]))
    # a second batch: the running values are the averages of the two batches' (log-spread: geometric)
    fn.update(torch.tensor([7.0, 8.0, 11.0]), fn.bin_of(torch.tensor([0.1, 0.2, 0.3])), torch.ones(3, dtype=torch.bool))
    assert fn.center[0].item() == pytest.approx((3.0 + 8.0) / 2)
    assert fn.scale(torch.tensor([0]))[0].item() == pytest.approx(math.sqrt(s0 * 1.4826 * 1.0))


def test_non_finite_targets_and_targets_beyond_the_limit_are_left_out():
    fn = RobustEnergyLoss((0.0, 1.0), "cpu", kind="mse", normalize=False, target_limit=10.0)
    pred = torch.zeros(6)
    target = torch.tensor([1.0, float("nan"), float("-inf"), float("inf"), -3.0, 11.0])
    loss, rows = fn(pred, target, torch.full((6,), 0.5))
    assert torch.allclose(rows, torch.tensor([1.0, 0.0, 0.0, 0.0, 9.0, 0.0]))
    assert loss.item() == pytest.approx(10.0 / 2)


def _fit_linear(loss_fn, steps=300, lr=0.1, seed=0):
    """SGD on a linear 'energy network' against a Cauchy target of scale 1e6 at small t (the heavy
    tail of the direct target) plus a well-behaved target at larger t."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(3, requires_grad=True)
    losses, preds = [], []
    for _ in range(steps):
        x = torch.randn(64, 3, generator=g)
        t = torch.rand(64, generator=g)
        clean = x[:, 0]
        noise = 1e6 * torch.tan(math.pi * (torch.rand(64, generator=g) - 0.5))  # Cauchy
        target = torch.where(t < 0.1, clean + noise, clean)
        pred = x @ w
        loss, _ = loss_fn(pred, target, t)
        w.grad = None
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
        losses.append(loss.item())
        preds.append(pred.detach().abs().max().item())
    return losses, preds, w.detach()


def test_energy_loss_is_bounded_under_an_injected_heavy_tailed_target():
    losses, preds, w = _fit_linear(RobustEnergyLoss((0.0, 1.0), "cpu"))
    assert all(math.isfinite(v) for v in losses)
    # limit 1000, normalized Huber: the loss is at most δ(|pred| + 2000)/min_scale; here far below
    assert max(losses) < 1e3 and max(preds) < 100
    # and the clean signal (R = x_0) is still learned from the rows at t ≥ 0.1
    assert torch.allclose(w, torch.tensor([1.0, 0.0, 0.0]), atol=0.15)


def test_plain_least_squares_blows_up_on_the_same_target():
    """The failure the robust loss removes (so the test above can fail)."""
    losses, preds, _ = _fit_linear(RobustEnergyLoss((0.0, 1.0), "cpu", kind="mse", normalize=False,
                                                    target_limit=None), steps=30)
    assert not all(math.isfinite(v) and v < 1e6 for v in losses) or max(preds) > 1e6


def test_log_mean_variance_delta_method():
    K = 8
    assert log_mean_variance(torch.tensor([1.0]), K).item() == pytest.approx(0.0)  # equal weights
    assert log_mean_variance(torch.tensor([1.0 / K]), K).item() == pytest.approx(1 - 1 / K)  # one weight
    # against the Monte-Carlo variance of log mean w for lognormal weights (σ = 0.3), K = 2000
    g = torch.Generator().manual_seed(0)
    K = 2000
    w = torch.exp(0.3 * torch.randn(400, K, generator=g))
    ess = w.sum(1) ** 2 / (w * w).sum(1) / K
    mc = torch.log(w.mean(1)).var().item()
    assert log_mean_variance(ess, K).mean().item() == pytest.approx(mc, rel=0.2)


def test_new_estimator_keys_are_validated():
    base = {"energy": {"name": "ising"}, "path": {"name": "masked"}, "generator": {"name": "jump"},
            "network": {"name": "mlp"}}
    for key, value, msg in [("energy_loss", "l1", "estimator.energy_loss: must be one of 'huber', 'mse'"),
                            ("energy_normalize", 1, "estimator.energy_normalize: must be true or false"),
                            ("energy_t_min", 1.5, r"estimator.energy_t_min: must be in \[0, 1\]"),
                            ("energy_grad_clip", 0.0, r"estimator.energy_grad_clip: must be in \(0"),
                            ("energy_weighting", "ess", "estimator.energy_weighting: must be one of"),
                            ("energy_num_proposals", 0, r"estimator.energy_num_proposals: must be")]:
        with pytest.raises(ConfigError, match=msg):
            config_from_dict({**base, "estimator": {key: value}})


# ----------------------------------------------------------------------------- in the trainer
def _boot_cfg(**est):
    return config_from_dict({
        "energy": {"name": "ising", "L": 3, "beta": 0.3}, "path": {"name": "masked"},
        "generator": {"name": "jump"}, "network": {"name": "mlp", "hidden": 16, "layers": 2},
        "energy_network": {"name": "mlp", "hidden": 16, "layers": 2},
        "estimator": {"kind": "bootstrap", "num_proposals": 16, "energy_ema_decay": 0.9, **est},
        "train": {"batch_size": 32, "outer_iterations": 1, "inner_iterations": 40, "buffer_size": 64,
                  "buffer_refresh": 64, "device": "cpu", "progress": False, "log_every": 10, "grad_clip": 1.0},
        "eval": {"num_samples": 64, "figures": False},
    })


def _inject_heavy_tail(trainer, scale=1e8):
    est = trainer.estimator
    orig = est.energy_regression_estimate
    g = torch.Generator().manual_seed(1)

    def heavy(x, t, gen, **kw):
        e = orig(x, t, gen, **kw)
        noise = scale * torch.tan(math.pi * (torch.rand(t.shape, generator=g) - 0.5))
        return type(e)(target=None, ess=e.ess, log_mean_weight=e.log_mean_weight - noise,
                       log_normalizer=e.log_normalizer)
    est.energy_regression_estimate = heavy


def test_trainer_energy_loss_and_energy_network_stay_bounded_under_heavy_tailed_targets(tmp_path):
    from egm_framework.trainer import Trainer

    tr = Trainer(_boot_cfg(), tmp_path / "run")
    _inject_heavy_tail(tr)
    tr.fit(evaluate_at_end=False)
    import json
    recs = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    eloss = [r["energy_loss"] for r in recs if "energy_loss" in r]
    assert len(eloss) == 4 and all(math.isfinite(v) and v < 1e4 for v in eloss)
    assert all(len(r["energy_loss_by_time"]) == 10 for r in recs if "energy_loss" in r)
    # the injected Cauchy noise of scale 1e8 puts nearly every direct target beyond the limit
    assert all(r["energy_target_dropped"] > 0.5 for r in recs if "energy_loss" in r)
    x = tr.buffer.sample(64, tr.gen)
    out = tr.energy_ema(x, torch.rand(64))
    assert torch.isfinite(out).all() and out.abs().max() < 1e3


def test_an_energy_loss_spike_does_not_shrink_the_sampler_step(tmp_path):
    """Clips are separate: one step with a 1e8-scale energy target moves the sampler exactly as one
    with the true target (same seed, so the same batch and estimate)."""
    from egm_framework.trainer import Trainer

    params = []
    for heavy in (False, True):
        tr = Trainer(_boot_cfg(), tmp_path / f"run{heavy}")
        if heavy:
            _inject_heavy_tail(tr, scale=1e12)
        tr.refill_buffer()
        tr.train_step()
        params.append([p.detach().clone() for p in tr.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))


def test_small_t_rows_take_the_bootstrapped_target(tmp_path):
    from egm_framework.trainer import Trainer

    tr = Trainer(_boot_cfg(energy_t_min=0.5), tmp_path / "run")
    tr.refill_buffer()
    x1 = tr.buffer.sample(8, tr.gen)
    t = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    x_t = tr.comp.path.sample_xt(x1, t, tr.gen)
    est = tr.estimator.estimate(x_t, t, tr.gen)
    state = tr.gen.get_state()
    _, _, target, weight = tr._energy_target(est, x_t, t)
    tr.gen.set_state(state)
    direct = tr.estimator.energy_regression_target(x_t, t, tr.gen)
    boot = tr.estimator.residual_target_from(est, x_t, t)
    assert weight is None
    assert torch.equal(target[:4], boot[:4]) and torch.equal(target[4:], direct[4:])


def test_energy_evaluations_are_counted_exactly(tmp_path):
    """Plain: B·K per step. Bootstrapped with the direct target on half the batch: K per row with
    r = 1 (true energy in the bridge estimate) plus K per direct-target row."""
    from egm_framework.trainer import Trainer

    plain = _boot_cfg()
    import attrs
    plain = attrs.evolve(plain, estimator=attrs.evolve(plain.estimator, kind="snis"), energy_network=None)
    tr = Trainer(plain, tmp_path / "plain")
    tr.refill_buffer()
    tr.train_step()
    tr.train_step()
    assert tr.estimator.energy_evals == 2 * 32 * 16
    # bootstrapped: the direct target with the sampler's K, then with its own K (40 per row)
    for name, extra, k_e in (("boot", {}, 16), ("boot_k", {"energy_num_proposals": 40}, 40)):
        tr = Trainer(_boot_cfg(energy_batch_fraction=0.5, **extra), tmp_path / name)
        tr.refill_buffer()
        state = tr.host_rng.bit_generator.state
        _, n_final = tr.sample_times(32)
        tr.host_rng.bit_generator.state = state
        tr.train_step()
        assert tr.estimator.energy_evals == n_final * 16 + 16 * k_e


def test_run_folders_with_the_old_clamp_key_still_load():
    base = {"energy": {"name": "ising"}, "path": {"name": "masked"}, "generator": {"name": "jump"},
            "network": {"name": "mlp"}}
    cfg = config_from_dict({**base, "estimator": {"energy_target_clamp": 50.0}})
    assert cfg.estimator.energy_target_limit == 50.0
