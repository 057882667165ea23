"""Rao–Blackwellized targets on the discrete part of product states: the energies' closed-form label
conditionals, and the estimator with them against the exact joint denoiser of the enumerable toy."""

import pytest
import torch

from egm_framework.estimators import estimate_marginal
from egm_framework.states import MixedState

from test_mixed_product import ToyEnergy, build, exact_targets


def labels_by_substitution(energy, x: MixedState, vocab: int) -> torch.Tensor:
    """−E(c, b with b_j := v) for every label site j and token v: (B, sites, vocab)."""
    c, b = x
    out = torch.empty(b.shape[0], b.shape[1], vocab)
    for j in range(b.shape[1]):
        for v in range(vocab):
            bb = b.clone()
            bb[:, j] = v
            out[:, j, v] = -energy(MixedState(c, bb))
    return out


def toy_points(path):
    """Five (x_t, t) of the toy: fully masked, one label known, both known; t from 0.15 to 0.75."""
    mask = path.discrete.mask_token
    xt = MixedState(torch.tensor([[0.3], [-1.0], [1.8], [0.9], [0.1]]),
                    torch.tensor([[mask, mask], [mask, mask], [mask, 1], [1, mask], [mask, mask]]))
    return xt, torch.tensor([0.15, 0.3, 0.45, 0.6, 0.75])


class ToyWithConditionals(ToyEnergy):
    supports_conditionals = True

    def conditional_logits(self, x):
        return None, labels_by_substitution(self, x, 2)


@pytest.mark.parametrize("name,params", [("gb_rbm", {}), ("joint_mog", {"dim": 4, "sigma": 0.4})])
def test_closed_form_label_conditionals_match_substitution(registry, name, params, gen):
    energy = registry.create("energy", name, **params)
    x = energy.ground_truth(5, gen)
    x = MixedState(x[0] + 0.5 * torch.randn(x[0].shape, generator=gen), x[1])  # off the modes too
    cond_c, cond_d = energy.conditional_logits(x)
    assert cond_c is None
    ref = labels_by_substitution(energy, x, 2)
    assert torch.allclose(torch.log_softmax(cond_d.double(), -1), torch.log_softmax(ref.double(), -1), atol=1e-4)


def test_conditional_targets_match_the_exact_joint_denoiser(registry):
    """Both heads from large-K SNIS with the labels' conditional targets equal the exact ones (the
    continuous head is the plain target, unchanged)."""
    _, space, path, g = build(registry)
    e = ToyWithConditionals()
    gen = torch.Generator().manual_seed(7)
    xt, t = toy_points(path)
    est = estimate_marginal(path, g, lambda x, r: e(x), xt, t, torch.ones_like(t), 40000, gen,
                            conditional_fn=e.conditional_logits)
    _, den = est.target
    _, ed, *_ = exact_targets(path, xt, t)
    tol = 6 * (0.25 / (40000 * est.ess.double())).sqrt()[:, None, None] + 1e-6
    assert ((den.double() - ed).abs() <= tol).all(), (den, ed)
    assert (ed[0, :, 1] - 0.5).abs().max() > 0.1  # a genuinely joint posterior


class ToyGaussian(ToyWithConditionals):
    """The toy declares its continuous part: x | b ~ N(M_b, S_b²), a variance that depends on b."""

    supports_conditional_gaussian = True

    def conditional_gaussian(self, d):
        k = d[:, 0] * 2 + d[:, 1]
        return M.float()[k][:, None], (S.float()[k]) ** 2


from test_mixed_product import M, S  # noqa: E402


@pytest.mark.parametrize("with_conditionals", [False, True])
def test_collapsed_proposals_match_the_exact_joint_generator(registry, with_conditionals):
    """Continuous part integrated out: both heads equal the exact ones (the weights over the 4 label
    configurations do not collapse), and the log-weights sit on the joint estimator's scale."""
    _, space, path, g = build(registry)
    e = ToyGaussian()
    gen = torch.Generator().manual_seed(3)
    xt, t = toy_points(path)
    ones = torch.ones_like(t)
    K = 40000

    def collapsed(x_t, tt, k, gn):
        x1, logw, cond, _ = path.collapsed_proposals(x_t, tt, k, gn, e, with_conditionals=with_conditionals)
        return x1, logw, cond

    est = estimate_marginal(path, g, lambda x, r: e(x), xt, t, ones, K, gen, collapsed_fn=collapsed)
    out, den = est.target
    vel = g.continuous.field(path.continuous, xt.continuous, t, out)
    ev, ed, *_ = exact_targets(path, xt, t)
    assert (vel.double() - ev).abs().max() < 0.03 * ev.abs().max() + 1e-3, (vel, ev)  # K_eff ≈ 10⁴
    assert (den.double() - ed).abs().max() < 0.01, (den, ed)
    assert est.ess.min() > 0.2  # 4 discrete configurations: the weights do not collapse
    joint = estimate_marginal(path, g, lambda x, r: e(x), xt, t, ones, 200000, gen)
    assert torch.allclose(est.log_mean_weight, joint.log_mean_weight, atol=0.05), (est.log_mean_weight,
                                                                                  joint.log_mean_weight)


def test_collapsed_weights_and_means_are_the_exact_posterior(registry, gen):
    """Per discrete configuration, the collapsed log-weights are the exact log posterior π(b | x_t) up to
    a constant per row, and the continuous part of each proposal is the exact E[x_1 | b, x_t]."""
    _, space, path, g = build(registry)
    e = ToyGaussian()
    mask = path.discrete.mask_token
    xt = MixedState(torch.tensor([[0.3], [-1.0], [1.8]]), torch.tensor([[mask, mask], [mask, mask], [mask, 1]]))
    t = torch.tensor([0.15, 0.5, 0.9])
    x1, logw, cond, evals = path.collapsed_proposals(xt, t, 64, gen, e, with_conditionals=True)
    _, _, pi, mu, _ = exact_targets(path, xt, t)
    k = x1.discrete[..., 0] * 2 + x1.discrete[..., 1]  # (B, n) configuration index
    lp = logw.double() - torch.log(pi).gather(1, k)
    assert torch.isfinite(lp).all() and (lp - lp[:, :1]).abs().max() < 1e-4
    assert torch.allclose(x1.continuous[..., 0].double(), mu.gather(1, k), atol=1e-5)
    assert evals == 3 * 64 * (1 + 2 * 2) and cond[0] is None and cond[1].shape == (3, 64, 2, 2)
    # the label conditionals: softmax over the token of site j = π of the two configurations that differ there
    p_site0 = torch.softmax(cond[1][:, :, 0].double(), -1)[..., 1]  # P(b_0 = 1 | b_1 of the proposal, x_t)
    other = x1.discrete[..., 1]
    num = pi.gather(1, 2 + other)
    assert torch.allclose(p_site0, num / (num + pi.gather(1, other)), atol=1e-4)


def test_trainer_with_collapsed_joint_mog_counts_its_evaluations(tmp_path):
    from pathlib import Path

    from egm_framework.config import apply_overrides, config_from_dict, load_config_dict
    from egm_framework.trainer import Trainer

    root = Path(__file__).resolve().parents[3]
    d = apply_overrides(load_config_dict(root / "configs" / "joint_mog_plain.toml"), [
        "energy.dim=3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=8",
        "train.batch_size=4", "train.outer_iterations=1", "train.inner_iterations=3", "train.buffer_size=16",
        "train.buffer_refresh=8", "train.buffer_sample_steps=4", "train.progress=false", 'train.device="cpu"',
        "estimator.collapse_continuous=true", "estimator.conditional_targets=true"])
    tr = Trainer(config_from_dict(d), tmp_path / "r")
    tr.fit(evaluate_at_end=False)
    assert tr.step == 3
    assert tr.estimator.energy_evals == 3 * 4 * 8 * (1 + 3 * 2)  # steps · B · K · (1 + sites · tokens)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
