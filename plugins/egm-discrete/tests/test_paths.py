"""Masked and uniform paths: normalizers, proposals, bridges and their composition, by brute force."""

import math

import pytest
import torch

from egm_discrete.exact import enumerate_states, pair_log_kernel
from egm_discrete.paths import MaskedPath, UniformPath
from egm_discrete.space import CategoricalSpace

SPACE = CategoricalSpace([2, 2], 3)


def _end_states(path, r):
    """All possible end points x_r: with the mask token for the masked path at r < 1."""
    vocab = path.vocab + (1 if (path.uses_mask and r < 1) else 0)
    return enumerate_states(SPACE.event_shape, vocab)


def _some_xt(path, t, gen, n=6):
    x1 = torch.randint(0, 3, (n, 2, 2), generator=gen)
    return path.sample_xt(x1, torch.full((n,), t), gen)


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
@pytest.mark.parametrize("t,r", [(0.0, 0.3), (0.3, 0.4), (0.5, 1.0), (0.0, 1.0), (0.9, 1.0), (0.2, 0.9)])
def test_log_normalizer_brute_force(cls, t, r, gen):
    path = cls(SPACE)
    x_t = _some_xt(path, t, gen)
    ends = _end_states(path, r)
    lp = pair_log_kernel(path, x_t, t, ends, r)  # (B, S)
    ref = torch.logsumexp(lp, dim=1)
    got = path.log_normalizer(x_t, torch.full((6,), t), torch.full((6,), r))
    assert torch.allclose(got.double(), ref, atol=1e-5)


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
@pytest.mark.parametrize("t,r", [(0.3, 0.6), (0.5, 1.0), (0.0, 0.5)])
def test_proposal_distribution(cls, t, r, gen):
    """Proposal frequencies match q(x_r | x_t) = p_{t|r}(x_t | x_r) e^{−c(x_r)} / Z_{r|t}(x_t) over all end
    points (c the path's proposal log-correction, 0 where it proposes exactly ∝ p_{t|r}); that q is
    normalized pins the correction (chi-square, 60k draws)."""
    path = cls(SPACE)
    x_t = _some_xt(path, t, gen, n=2)
    n = 60000
    props = path.propose(x_t, torch.full((2,), t), torch.full((2,), r), n, gen)
    assert props.shape == (2, n, 2, 2) and props.dtype == torch.long
    ends = _end_states(path, r)
    base = path.vocab + 1 if (path.uses_mask and r < 1) else path.vocab
    lp = pair_log_kernel(path, x_t, t, ends, r)
    tt, rr = torch.full((2,), t), torch.full((2,), r)
    corr = path.proposal_log_correction(x_t, tt, rr, ends.unsqueeze(0).expand(2, *ends.shape))
    log_q = lp - (0.0 if corr is None else corr.double()) - path.log_normalizer(x_t, tt, rr).double()[:, None]
    assert torch.allclose(torch.logsumexp(log_q, 1), torch.zeros(2, dtype=torch.float64), atol=1e-4)
    p = torch.softmax(log_q, dim=1)
    codes = (props.reshape(2, n, 4) * base ** torch.arange(3, -1, -1)).sum(-1)
    for b in range(2):
        counts = torch.bincount(codes[b], minlength=len(ends)).double()
        support = p[b] > 0
        assert counts[~support].sum() == 0  # never proposes an impossible end point
        expected = n * p[b][support]
        chi2 = ((counts[support] - expected) ** 2 / expected).sum().item()
        dof = int(support.sum()) - 1
        assert chi2 < dof + 5 * math.sqrt(2 * max(dof, 1)) + 5, (chi2, dof)


def test_masked_proposal_at_r1_fills_every_mask(gen):
    path = MaskedPath(SPACE)
    x_t = torch.tensor([[[3, 1], [3, 3]], [[0, 3], [2, 1]]])
    t = torch.tensor([0.2, 0.7])
    r = torch.tensor([1.0, 0.8])
    props = path.propose(x_t, t, r, 500, gen)
    assert (props[0] != 3).all()  # row with r = 1: no mask left
    assert (props[1] == 3).any()  # row with r < 1: some masks stay
    keep = x_t != 3
    assert (props.transpose(0, 1)[:, keep] == x_t[keep]).all()


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
def test_bridges_compose(cls):
    """Σ_{x_r} p_{t|r}(x|x_r) p_{r|1}(x_r|x_1) = p_{t|1}(x|x_1), per site (all pairs, 1 site space)."""
    path = cls(CategoricalSpace([1], 3))
    t, r = 0.3, 0.7
    xs = enumerate_states([1], path.vocab + (1 if path.uses_mask else 0))
    x1 = enumerate_states([1], path.vocab)
    k_tr = pair_log_kernel(path, xs, t, xs, r).exp()  # (x, x_r)
    k_r1 = pair_log_kernel(path, xs, r, x1, 1.0).exp()  # (x_r, x_1)
    k_t1 = pair_log_kernel(path, xs, t, x1, 1.0).exp()
    assert torch.allclose(k_tr @ k_r1, k_t1, atol=1e-12)
    assert torch.allclose(k_t1.sum(0), torch.ones(3, dtype=torch.float64))  # a distribution over x


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
def test_sample_xt_and_prior(cls, gen):
    path = cls(SPACE)
    x1 = torch.randint(0, 3, (20000, 2, 2), generator=gen)
    t = torch.full((20000,), 0.6)
    xt = path.sample_xt(x1, t, gen)
    same = (xt == x1).double().mean().item()
    expected = 0.6 if cls is MaskedPath else 0.6 + 0.4 / 3
    assert same == pytest.approx(expected, abs=0.01)
    if cls is MaskedPath:
        assert ((xt == x1) | (xt == 3)).all()
        assert (path.prior_sample(4, gen) == 3).all()
        assert (path.active_sites(xt) == (xt == 3)).all()
    else:
        assert path.active_sites(xt).all()
        pr = path.prior_sample(3000, gen)
        assert pr.min() >= 0 and pr.max() <= 2


def test_denoiser_target_affine():
    path = MaskedPath(SPACE)
    t = torch.tensor([0.2, 0.5, 0.5])
    r = torch.tensor([0.3, 1.0, 0.75])
    a, b = path.denoiser_target_affine(t, r)
    assert torch.allclose(a, torch.tensor([0.8 / 0.1, 1.0, 0.5 / 0.25]))
    assert torch.allclose(a + b, torch.ones(3))
    assert path.kappa(t) is t and torch.equal(path.kappa_dot(t), torch.ones(3))
    lo, hi = path.train_time_range
    assert 0 <= lo < hi < 1 and path.sample_time_range == (0.0, 1.0)
    assert math.isfinite(path.log_normalizer(torch.full((1, 2, 2), 3), torch.zeros(1), torch.ones(1)).item())
