"""Device checks (skipped without CUDA): ground truth drawn with a CUDA generator, energies, estimates and
sampling on the GPU, and the MwG chain on the GPU."""

from __future__ import annotations

import pytest
import torch

from egm_framework.estimators import estimate_marginal
from egm_framework.interfaces import simulate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("name", ["gb_rbm", "joint_mog", "joint_dw4"])
def test_mixed_pipeline_on_cuda(registry, name):
    dev = torch.device("cuda")
    kw = {"n_chains": 256, "burn_in": 100, "thin": 2} if name == "joint_dw4" else {}
    e = registry.create("energy", name, **kw)
    sname, params = e.space_spec
    space = registry.create("state_space", sname, **params)
    path = registry.create("path", "product", space)
    g = registry.create("generator", "product")
    net = registry.create("network", "resmlp", space, g.output_shapes(path), hidden=32, blocks=1).to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    x1 = e.ground_truth(64, gen, dev)
    assert x1.continuous.device.type == "cuda" and x1.discrete.device.type == "cuda"
    lo, hi = path.train_time_range
    t = lo + (hi - lo) * torch.rand(64, generator=gen, device=dev)
    xt = path.sample_xt(x1, t, gen)
    est = estimate_marginal(path, g, lambda x, r: e(x), xt, t, torch.ones_like(t), 128, gen)
    loss = g.loss(net(xt, t), est.target, xt, t)
    assert torch.isfinite(loss).all()
    x = simulate(g, net, path, 16, 5, gen, dev)
    assert e(x).shape == (16,)
    cpu = tuple(v.cpu() for v in x1)
    assert isinstance(e.extra_metrics(cpu, cpu), dict)
