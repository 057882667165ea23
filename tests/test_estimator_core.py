"""The core estimator against exact answers on a toy path whose proposals enumerate a fixed set.

The toy path proposes, for every row, the candidates c_0, c_1, ... of a fixed list in order (the
k-th call continues where the previous chunk stopped), with q uniform over the list. Then SNIS over
K = len(list) proposals is an exact expectation under softmax(−E), whatever the chunking.
"""

import math

import pytest
import torch

from egm_framework.estimators import chunk_size_for, estimate_marginal
from egm_framework.errors import EnergyEvaluationError
from egm_framework.interfaces import ConditionalPath, GeneratorParametrization


class EnumPath(ConditionalPath):
    def __init__(self, candidates: torch.Tensor, log_z: float = 0.0):
        self.space = None
        self.candidates = candidates  # (M, d)
        self.pos = 0
        self.log_z = log_z

    def prior_sample(self, n, generator, device="cpu"):
        return torch.zeros(n, self.candidates.shape[1])

    def sample_xt(self, x1, t, generator):
        return x1

    def propose(self, x_t, t, r, n, generator):
        idx = (torch.arange(n) + self.pos) % self.candidates.shape[0]
        self.pos += n
        return self.candidates[idx][None].expand(x_t.shape[0], n, -1)

    def log_normalizer(self, x_t, t, r):
        return torch.full((x_t.shape[0],), self.log_z)


class MeanGenerator(GeneratorParametrization):
    """Target T(x_t | x_r) = x_r: the estimate is the posterior mean."""

    def output_shapes(self, path):
        return torch.Size([path.candidates.shape[1]])

    def weighted_target(self, path, x_t, t, x_r, r, w):
        return torch.einsum("bk,bkd->bd", w, x_r)

    def loss(self, output, target, x_t, t):
        return ((output - target) ** 2).sum(-1)

    def step_from_output(self, path, x, t, t_next, output, generator):
        return output


def energy(x):
    return 500.0 * x[:, 0] - 3.0 * x[:, 1] ** 2  # large scale: naive exp would overflow


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_online_softmax_over_chunks_is_exact(chunk):
    torch.manual_seed(0)
    cands = torch.randn(64, 2)
    path = EnumPath(cands, log_z=0.7)
    B = 3
    x_t = torch.zeros(B, 2)
    t = torch.full((B,), 0.5)
    est = estimate_marginal(path, MeanGenerator(), lambda x, r: energy(x), x_t, t, torch.ones(B), 64,
                            torch.Generator(), chunk_size=chunk)
    logw = -energy(cands).double()
    w = torch.softmax(logw, 0)
    exact = (w[:, None] * cands.double()).sum(0)
    assert torch.allclose(est.target, exact.float().expand(B, 2), atol=1e-5)
    ess = 1.0 / (w ** 2).sum() / 64
    assert torch.allclose(est.ess, ess.float().expand(B), rtol=1e-4)
    log_mean = torch.logsumexp(logw, 0) - math.log(64)
    assert torch.allclose(est.log_mean_weight.double(), log_mean.expand(B), rtol=1e-6)
    assert torch.allclose(est.log_marginal.double(), (log_mean + 0.7).expand(B), rtol=1e-6)


def test_plus_infinite_energies_get_zero_weight():
    cands = torch.tensor([[0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    path = EnumPath(cands)
    e = lambda x, r: torch.where(x[:, 0] > 0, torch.full_like(x[:, 0], math.inf), x[:, 1])  # noqa: E731
    est = estimate_marginal(path, MeanGenerator(), e, torch.zeros(2, 2), torch.full((2,), .5), torch.ones(2), 3,
                            torch.Generator(), chunk_size=1)
    w = torch.softmax(-torch.tensor([1.0, 2.0]), 0)
    assert torch.allclose(est.target[0], (w[:, None] * cands[:2]).sum(0), atol=1e-6)


def test_energy_with_wrong_shape_is_reported():
    path = EnumPath(torch.randn(4, 2))
    with pytest.raises(EnergyEvaluationError, match=r"shape \(8, 1\).*shape \(8,\)"):
        estimate_marginal(path, MeanGenerator(), lambda x, r: x[:, :1], torch.zeros(2, 2), torch.zeros(2),
                          torch.ones(2), 4, torch.Generator())


def test_chunk_size_follows_memory_budget():
    x_t = torch.zeros(300, 100, dtype=torch.long)
    small = chunk_size_for(x_t, 1000, memory_mb=16)
    big = chunk_size_for(x_t, 1000, memory_mb=1024)
    assert 1 <= small < big <= 1000
    assert 300 * small * 100 * 8 * 8 <= 16 * 2**20
