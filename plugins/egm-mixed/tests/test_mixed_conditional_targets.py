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
    mask = path.discrete.mask_token
    xt = MixedState(torch.tensor([[0.3], [-1.0], [1.8], [0.9], [0.1]]),
                    torch.tensor([[mask, mask], [mask, mask], [mask, 1], [1, mask], [mask, mask]]))
    t = torch.tensor([0.15, 0.3, 0.45, 0.6, 0.75])
    est = estimate_marginal(path, g, lambda x, r: e(x), xt, t, torch.ones_like(t), 40000, gen,
                            conditional_fn=e.conditional_logits)
    _, den = est.target
    _, ed, *_ = exact_targets(path, xt, t)
    tol = 6 * (0.25 / (40000 * est.ess.double())).sqrt()[:, None, None] + 1e-6
    assert ((den.double() - ed).abs() <= tol).all(), (den, ed)
    assert (ed[0, :, 1] - 0.5).abs().max() > 0.1  # a genuinely joint posterior
