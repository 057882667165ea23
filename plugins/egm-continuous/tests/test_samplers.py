"""Samplers driven by the EXACT marginal generator of a Gaussian target reproduce its mean and covariance.

Target N(m, diag(s²)), m = (0.8, −0.5), s = (0.7, 1.3), n = 20000 samples (Monte Carlo standard error of
the mean ≈ s/√n ≤ 0.01). Tolerances: |mean error| ≤ 0.05, relative variance error ≤ 6 %.
"""

import pytest
import torch

from egm_framework.interfaces import simulate
from egm_continuous.generators import DiffusionGenerator, FlowGenerator
from egm_continuous.paths import CondOTPath, VEPath
from egm_continuous.space import EuclideanSpace
from gaussian_truth import GaussianTruth

MEAN = torch.tensor([0.8, -0.5])
STD = torch.tensor([0.7, 1.3])
N = 20000


def _check(x):
    assert torch.all((x.mean(0) - MEAN).abs() < 0.05), x.mean(0)
    assert torch.all(((x.var(0) - STD ** 2) / STD ** 2).abs() < 0.06), x.var(0)
    assert abs(float(torch.corrcoef(x.T)[0, 1])) < 0.05


def _model(gp, truth, path):
    def model(x, t):
        u = truth.velocity(x, t)
        if isinstance(gp, DiffusionGenerator):
            u = u + 0.5 * gp.g2(path, t)[:, None] * truth.score(x, t)
        return u
    return model


@pytest.mark.parametrize("gp,steps", [(FlowGenerator(solver="euler"), 200), (FlowGenerator(solver="heun"), 20),
                                      (DiffusionGenerator(g=1.0), 300)], ids=["euler", "heun", "em"])
def test_cond_ot_samplers_exact_generator(gp, steps, gen):
    path = CondOTPath(EuclideanSpace(dim=2))
    truth = GaussianTruth(path, MEAN, STD)
    x = simulate(gp, _model(gp, truth, path), path, N, steps, gen)
    _check(x)


@pytest.mark.parametrize("gp,steps", [(FlowGenerator(solver="heun"), 100), (DiffusionGenerator(g="ve"), 400)],
                         ids=["heun", "em-ve"])
def test_ve_samplers_exact_generator(gp, steps, gen):
    """VE: start from the exact p_0 = N(m, s² + σ_0²) (the path's N(0, σ_0²) prior is the usual approximation)."""
    path = VEPath(EuclideanSpace(dim=2), sigma_min=0.01, sigma_max=2.0)
    truth = GaussianTruth(path, MEAN, STD)
    model = _model(gp, truth, path)
    # σ_t² changes fastest near t = 0: a grid refined there (t_i = 1 − (1 − i/n)²)
    s = torch.linspace(0, 1, steps + 1)
    grid = 1 - (1 - s) ** 2
    x = truth.sample_t(N, torch.zeros(N), gen)
    ones = torch.ones(N)
    for i in range(steps):
        x = gp.step(model, path, x, grid[i] * ones, grid[i + 1] * ones, gen)
    _check(x)


def test_last_diffusion_step_is_noise_free(gen):
    path = CondOTPath(EuclideanSpace(dim=2))
    gp = DiffusionGenerator(g=3.0)
    x = torch.zeros(4, 2)
    out = torch.ones(4, 2)
    last = gp.step_from_output(path, x, torch.full((4,), 0.9), torch.ones(4), out, gen)
    assert torch.allclose(last, torch.full((4, 2), 0.1))
    mid = gp.step_from_output(path, x, torch.full((4,), 0.5), torch.full((4,), 0.6), out, gen)
    assert not torch.allclose(mid, torch.full((4, 2), 0.1))
    tail = DiffusionGenerator(g=3.0, noise_free_tail=0.5)
    assert torch.allclose(tail.step_from_output(path, x, torch.full((4,), 0.5), torch.full((4,), 0.6), out, gen),
                          torch.full((4, 2), 0.1))


def test_clip_norm_and_loss():
    gp = FlowGenerator(clip_norm=2.0)
    target = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    clipped = gp.finalize_target(target, None, None)
    assert torch.allclose(clipped, torch.tensor([[1.2, 1.6], [0.3, 0.4]]))
    loss = gp.loss(torch.zeros(2, 2), clipped, None, None)
    assert torch.allclose(loss, torch.tensor([(1.44 + 2.56) / 2, (0.09 + 0.16) / 2]))
    assert gp.output_shapes(CondOTPath(EuclideanSpace(dim=3))) == torch.Size([3])
