"""Core ``simulate`` + jump generator, driven by the exact denoiser, reproduces the exact distribution."""

import pytest
import torch

from egm_framework.interfaces import simulate

from egm_discrete.energies import IsingEnergy
from egm_discrete.exact import enumerate_states, exact_denoiser
from egm_discrete.generator import JumpGenerator
from egm_discrete.paths import MaskedPath, UniformPath
from egm_discrete.space import CategoricalSpace


@pytest.mark.parametrize("cls,sampler", [(MaskedPath, "tau_leaping"), (MaskedPath, "exact"),
                                         (UniformPath, "tau_leaping")])
def test_ctmc_with_exact_denoiser_reproduces_target(cls, sampler, gen):
    energy = IsingEnergy(L=2, beta=0.3, h=0.2)
    states = enumerate_states([2, 2], 2)
    log_p = torch.log_softmax(-energy(states).double(), 0)
    path = cls(CategoricalSpace([2, 2], 2))

    base = 3 if path.uses_mask else 2
    all_xt = enumerate_states([2, 2], base)  # every state the process can visit
    powers = base ** torch.arange(3, -1, -1)

    def model(x, t):  # logits = log of the exact denoiser P(x_1^i = y | x_t)
        # τ-leaping uses one t per step; the masked path's denoiser does not depend on t at all
        # (the posterior of the masked sites given the visible ones), so any t serves the exact sampler
        table = exact_denoiser(path, states, log_p, all_xt, t[0] if sampler == "tau_leaping" else torch.tensor(0.5))
        return torch.log(table.clamp(min=1e-30)).float()[(x.flatten(1) * powers).sum(-1)]

    n = 20000
    x = simulate(JumpGenerator(sampler=sampler), model, path, n, 200, gen)
    assert x.shape == (n, 2, 2) and x.dtype == torch.long and x.min() >= 0 and x.max() <= 1
    codes = (x.flatten(1) * (2 ** torch.arange(3, -1, -1))).sum(-1)
    freq = torch.bincount(codes, minlength=16).double() / n
    tv = 0.5 * (freq - log_p.exp()).abs().sum().item()
    # sampling noise alone is ≈ 0.01 here; τ-leaping gets room for its O(1/steps) error, the exact
    # masked sampler (one network call per site) only for the noise
    assert tv < (0.03 if sampler == "tau_leaping" else 0.02), tv
