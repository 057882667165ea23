"""Contract checks any plugin can run on its components.

    from egm_framework.testing import check_components
    check_components(registry, energy="ising", energy_params={"L": 3, "beta": 0.3}, path="masked",
                     generator="jump")

Each check raises ``AssertionError`` with a message saying which promise of the interface failed:
shapes, dtypes, proposal and target conventions, the linearity of ``weighted_target`` in the weights
(the estimator relies on it to combine chunks), and that the estimator's target is a convex
combination that the loss is minimized at. :func:`check_components` also checks that the path
provides what the generator needs (its ``path_protocol``). Exactness against an enumerable target
needs a target whose answer is known; the first-party plugins' tests do it by enumeration
(``plugins/egm-discrete/tests/test_estimators.py``) and in closed form for Gaussians
(``plugins/egm-continuous/tests/test_estimators.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..estimators import estimate_marginal
import inspect

from ..interfaces import ConditionalPath, Energy, GeneratorParametrization, StateSpace, check_path_fits, simulate
from ..states import State, batch_size, flatten_proposals, tree_leaves, tree_map, tree_map2

__all__ = ["check_state_space", "check_energy", "check_path", "check_generator", "check_components"]


def _close(a: Any, b: Any, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    return all(torch.allclose(x.float(), y.float(), atol=atol, rtol=rtol) for x, y in
               zip(tree_leaves(a), tree_leaves(b), strict=True))


def check_state_space(space: StateSpace, x: State) -> None:
    space.validate(x)
    enc = space.encoder(embedding_dim=4)
    f = enc(x)
    assert f.shape == (batch_size(x), enc.out_features), (
        f"{space.name}: encoder returned {tuple(f.shape)}, expected (B, out_features={enc.out_features})")
    assert f.dtype.is_floating_point, f"{space.name}: encoder features must be float"


def check_energy(energy: Energy, x: State) -> None:
    e = energy(x)
    B = batch_size(x)
    assert isinstance(e, torch.Tensor) and e.shape == (B,), (
        f"{energy.name}: energy must return shape ({B},), got {getattr(e, 'shape', type(e))}")
    assert not torch.isnan(e).any(), f"{energy.name}: energy returned NaN on valid states"
    for k, v in energy.observables(x).items():
        assert v.shape == (B,), f"{energy.name}: observable {k!r} must have shape ({B},), got {tuple(v.shape)}"


def check_path(path: ConditionalPath, x1: State, generator: torch.Generator, n: int = 5) -> None:
    B = batch_size(x1)
    dev = tree_leaves(x1)[0].device
    x0 = path.prior_sample(B, generator, dev)
    assert batch_size(x0) == B, f"{path.name}: prior_sample returned a batch of {batch_size(x0)}, expected {B}"
    lo, hi = path.train_time_range
    t = lo + (hi - lo) * torch.rand(B, generator=generator, device=dev)
    x_t = path.sample_xt(x1, t, generator)
    tree_map2(lambda a, b: _assert_same_shape(path, "sample_xt", a, b), x_t, x1)
    for r in (torch.ones_like(t), torch.clamp(t + 0.05, max=1.0)):
        prop = path.propose(x_t, t, r, n, generator)
        for leaf, ref in zip(tree_leaves(prop), tree_leaves(x1)):
            assert leaf.shape == (B, n, *ref.shape[1:]), (
                f"{path.name}: propose must return (B, n, *event) = {(B, n, *ref.shape[1:])}, got {tuple(leaf.shape)}")
            assert leaf.dtype == ref.dtype, f"{path.name}: proposals changed dtype {ref.dtype} -> {leaf.dtype}"
        logz = path.log_normalizer(x_t, t, r)
        assert logz.shape == (B,), f"{path.name}: log_normalizer must return ({B},), got {tuple(logz.shape)}"
        assert torch.isfinite(logz).all(), f"{path.name}: log_normalizer returned non-finite values"
    prop1 = flatten_proposals(path.propose(x_t, t, torch.ones_like(t), n, generator))
    path.space.validate(prop1)  # proposals to t = 1 lie in the target's space


def _assert_same_shape(path, what, a, b):
    assert a.shape == b.shape and a.dtype == b.dtype, (
        f"{path.name}: {what} returned {tuple(a.shape)}/{a.dtype}, expected {tuple(b.shape)}/{b.dtype}")
    return a


def check_generator(gp: GeneratorParametrization, path: ConditionalPath, network: torch.nn.Module, x1: State,
                    generator: torch.Generator, n: int = 6) -> None:
    B = batch_size(x1)
    dev = tree_leaves(x1)[0].device
    lo, hi = path.train_time_range
    t = lo + (hi - lo) * torch.rand(B, generator=generator, device=dev)
    r = torch.clamp(t + 0.05, max=1.0)
    x_t = path.sample_xt(x1, t, generator)
    out = network(x_t, t)
    x_r = path.propose(x_t, t, r, n, generator)
    w = torch.rand(B, n, generator=generator, device=dev)
    full = gp.weighted_target(path, x_t, t, x_r, r, w)
    tree_map2(lambda o, tg: _assert_same_shape(path, f"{gp.name}.weighted_target vs network output", tg.to(o.dtype), o)
              if o.shape != tg.shape else o, out, full)
    # linear in w: doubling doubles it, and it splits over a partition of the proposals
    twice = gp.weighted_target(path, x_t, t, x_r, r, 2 * w)
    assert _close(twice, tree_map(lambda v: 2 * v, full)), f"{gp.name}: weighted_target is not linear in w (scaling)"
    k = n // 2
    first = gp.weighted_target(path, x_t, t, tree_map(lambda v: v[:, :k], x_r), r, w[:, :k])
    second = gp.weighted_target(path, x_t, t, tree_map(lambda v: v[:, k:], x_r), r, w[:, k:])
    assert _close(tree_map2(torch.add, first, second), full), (
        f"{gp.name}: weighted_target is not additive over proposals (the chunked estimator needs it)")
    loss = gp.loss(out, gp.finalize_target(tree_map2(lambda v, s: v, full, full), x_t, t), x_t, t)
    assert loss.shape == (B,), f"{gp.name}: loss must be per row ({B},), got {tuple(loss.shape)}"
    grid = torch.linspace(*path.sample_time_range, 3)
    x = path.prior_sample(B, generator, dev)
    for i in range(2):
        x = gp.step(lambda s, tt: network(s, tt), path, x, grid[i].expand(B), grid[i + 1].expand(B), generator)
    path.space.validate(x)  # the final state lies in the target's space


def check_components(registry, *, energy: str, energy_params: dict | None = None, path: str,
                     path_params: dict | None = None, generator: str, generator_params: dict | None = None,
                     network: str = "mlp", network_params: dict | None = None, batch: int = 4,
                     seed: int = 0) -> None:
    """Build the named components and run every contract check on them.

    ``network_params`` default: a small network — whichever of ``hidden=16, layers=2, zero_init=False``
    the network's factory accepts (any network works, not only the core's ``mlp``)."""
    g = torch.Generator().manual_seed(seed)
    en = registry.create("energy", energy, **(energy_params or {}))
    sname, sparams = en.space_spec
    space = registry.create("state_space", sname, **dict(sparams))
    p = registry.create("path", path, space, **(path_params or {}))
    gp = registry.create("generator", generator, **(generator_params or {}))
    check_path_fits(gp, p, generator, path)
    params = network_params if network_params is not None else _small_network_params(registry, network)
    net = registry.create("network", network, space, gp.output_shapes(p), **params)
    x1 = simulate(gp, lambda x, t: net(x, t), p, batch, 4, g)
    check_state_space(space, x1)
    check_energy(en, x1)
    check_path(p, x1, g)
    check_generator(gp, p, net, x1, g)
    est = estimate_marginal(p, gp, lambda x, r: en(x), p.sample_xt(x1, torch.full((batch,), 0.5), g),
                            torch.full((batch,), 0.5), torch.ones(batch), 16, g, chunk_size=5)
    assert est.ess.shape == (batch,) and bool(((est.ess > 0) & (est.ess <= 1 + 1e-5)).all()), "ESS/K must be in (0, 1]"


#: parameters that make the core's networks small for a quick check; passed only where accepted
SMALL_NETWORK = {"hidden": 16, "layers": 2, "zero_init": False}


def _small_network_params(registry, network: str) -> dict:
    try:
        sig = inspect.signature(registry.get("network", network).factory)
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return {}
    return {k: v for k, v in SMALL_NETWORK.items() if k in sig.parameters}
