"""EuclideanSpace validation/encoder and the EGNN's symmetries."""

import math

import pytest
import torch

from egm_continuous.networks import EGNN
from egm_continuous.space import EuclideanSpace
from egm_framework.networks import build_mlp


def test_space_shapes_and_validation():
    s = EuclideanSpace(dim=3)
    assert s.event_shape == torch.Size([3]) and s.dim == 3 and s.free_dim == 3
    s.validate(torch.zeros(4, 3))
    for bad in (torch.zeros(4, 2), torch.zeros(4, 3, dtype=torch.long), torch.full((2, 3), float("nan")), torch.zeros(3)):
        with pytest.raises(ValueError):
            s.validate(bad)
    p = EuclideanSpace(n_particles=4, spatial_dim=2, zero_com=True)
    assert p.event_shape == torch.Size([8]) and p.free_dim == 6
    x = torch.randn(5, 8)
    with pytest.raises(ValueError):
        p.validate(x + 1.0)
    p.validate(p.project(x))
    assert p.particles(x).shape == (5, 4, 2)
    assert EuclideanSpace(shape=[5]).dim == 5
    enc = EuclideanSpace(dim=2, feature_scale=0.5).encoder()
    assert enc.out_features == 2 and torch.allclose(enc(torch.ones(1, 2)), torch.full((1, 2), 0.5))


def test_core_mlp_on_euclidean():
    s = EuclideanSpace(dim=2)
    net = build_mlp(s, s.event_shape, hidden=16, layers=2)
    assert net(torch.randn(7, 2), torch.rand(7)).shape == (7, 2)


def _rand_orthogonal(gen):
    th = 1.1
    R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    return R @ torch.diag(torch.tensor([1.0, -1.0]))  # a rotation times a reflection


def test_egnn_equivariance(gen):
    space = EuclideanSpace(n_particles=4, spatial_dim=2, zero_com=True)
    net = EGNN(space, space.event_shape, hidden=16, layers=2)
    for p in net.parameters():  # leave zero init: make coordinate updates nonzero
        torch.nn.init.normal_(p, std=0.3, generator=gen) if p.dim() > 1 else None
    x = torch.randn(6, 8, generator=gen) * 2
    t = torch.rand(6, generator=gen)
    v = net(x, t)
    assert v.abs().max() > 1e-4
    R = _rand_orthogonal(gen)
    shift = torch.tensor([2.0, -3.0])
    xr = (x.view(6, 4, 2) @ R.T + shift).reshape(6, 8)
    assert torch.allclose(net(xr, t), (v.view(6, 4, 2) @ R.T).reshape(6, 8), atol=1e-4)
    perm = [3, 1, 0, 2]
    xp = x.view(6, 4, 2)[:, perm].reshape(6, 8)
    assert torch.allclose(net(xp, t), v.view(6, 4, 2)[:, perm].reshape(6, 8), atol=1e-4)
    assert v.view(6, 4, 2).mean(1).abs().max() < 1e-5  # centre-of-mass free
    scalar = EGNN(space, torch.Size([]), hidden=16, layers=2)
    e = scalar(x, t)
    assert e.shape == (6,)
    assert torch.allclose(scalar(xr, t), e, atol=1e-4) and torch.allclose(scalar(xp, t), e, atol=1e-4)
    # trains: gradients reach every parameter after one step
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = (net(x, t) - 1.0).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in net.parameters())
    scalar(x, t).sum().backward()
    assert all(p.grad is not None for p in scalar.parameters())


def test_egnn_output_is_bounded_for_huge_inputs(gen):
    """Normalized distance features and a tanh-bounded coordinate update: the vector output of L layers
    moves each particle by less than L · distance_scale, whatever the input's scale (it used to grow like
    |x|⁴); the scalar head saturates; both stay equivariant / invariant at ×1000."""
    space = EuclideanSpace(n_particles=4, spatial_dim=2, zero_com=True)
    net = EGNN(space, space.event_shape, hidden=16, layers=3, distance_scale=1.5)
    scalar = EGNN(space, torch.Size([]), hidden=16, layers=3, distance_scale=1.5)
    for m in (net, scalar):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.5, generator=gen) if p.dim() > 1 else None
    x = torch.randn(6, 8, generator=gen)
    t = torch.rand(6, generator=gen)
    R = _rand_orthogonal(gen)
    for scale in (1.0, 1000.0):
        xs = x * scale
        v = net(xs, t)
        assert torch.isfinite(v).all()
        assert v.view(6, 4, 2).norm(dim=-1).max() < 3 * 1.5
        xr = (xs.view(6, 4, 2) @ R.T).reshape(6, 8)
        assert torch.allclose(net(xr, t), (v.view(6, 4, 2) @ R.T).reshape(6, 8), atol=1e-3)
        e = scalar(xs, t)
        assert torch.isfinite(e).all()
        assert torch.allclose(scalar(xr, t), e, rtol=1e-4, atol=1e-3)
    # the scalar head saturates: its output at ×1000 and ×10⁶ agree (bounded features)
    assert torch.allclose(scalar(x * 1e3, t), scalar(x * 1e6, t), rtol=1e-3, atol=1e-2)
    assert v.abs().max() > 1e-2  # not trivially zero


def test_egnn_radial_basis_features_keep_it_equivariant_bounded_and_resolve_distances(gen):
    """distance_rbf adds bounded Gaussian features of r: the output stays equivariant (rotation,
    permutation), bounded at ×1000, and the features separate DW-4's two wells (r ≈ 2.5 and 5.5) that
    r/(r + s) maps within 0.14 of each other."""
    space = EuclideanSpace(n_particles=4, spatial_dim=2, zero_com=True)
    net = EGNN(space, space.event_shape, hidden=16, layers=3, distance_scale=2.0, distance_rbf=16)
    assert net.rbf_centres.shape == (16,) and float(net.rbf_centres[-1]) == 8.0  # 4 · distance_scale
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5, generator=gen) if p.dim() > 1 else None
    x = torch.randn(5, 8, generator=gen) * 3
    t = torch.rand(5, generator=gen)
    R = _rand_orthogonal(gen)
    perm = torch.tensor([2, 0, 3, 1])
    for scale in (1.0, 1000.0):
        xs = x * scale
        v = net(xs, t)
        assert torch.isfinite(v).all() and v.view(5, 4, 2).norm(dim=-1).max() < 3 * 2.0
        xr = (xs.view(5, 4, 2) @ R.T).reshape(5, 8)
        assert torch.allclose(net(xr, t), (v.view(5, 4, 2) @ R.T).reshape(5, 8), atol=1e-3)
        xp = xs.view(5, 4, 2)[:, perm].reshape(5, 8)
        assert torch.allclose(net(xp, t), v.view(5, 4, 2)[:, perm].reshape(5, 8), atol=1e-3)
    c = net.rbf_centres
    width = c[1] - c[0]
    f = lambda r: torch.exp(-((r - c) / width) ** 2)  # noqa: E731  (the layer's feature map)
    assert (f(torch.tensor(2.5)) - f(torch.tensor(5.5))).abs().max() > 0.9
    with pytest.raises(ValueError, match="distance_rbf"):
        EGNN(space, space.event_shape, distance_rbf=-1)
    with pytest.raises(ValueError, match="rbf_max"):
        EGNN(space, space.event_shape, distance_rbf=4, rbf_max=0.0)
