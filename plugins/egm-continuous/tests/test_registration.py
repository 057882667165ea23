"""The plugin registers its components on a fresh plugin manager; invalid parameters are ConfigErrors."""

import pytest
import torch

import egm_continuous.plugin as plugin_module
from egm_framework import builtin
from egm_framework.errors import ConfigError
from egm_framework.plugins import PluginManager
from egm_framework.registry import Registry


@pytest.fixture
def registry():
    pm = PluginManager()
    pm.register(builtin, "core")
    pm.register(plugin_module, "continuous")
    return Registry(pm)


def test_components_registered_with_summaries(registry):
    expected = {"state_space": {"euclidean"}, "path": {"cond_ot", "ve"}, "generator": {"flow", "diffusion"},
                "energy": {"gaussian", "gmm25", "gmm40", "dw4"}, "network": {"egnn", "mlp", "resmlp"}}
    for kind, names in expected.items():
        assert names <= set(registry.names(kind)), kind
        for name in names:
            info = registry.get(kind, name)
            assert info.summary
    assert registry.get("path", "linear").name == "cond_ot"
    assert all(registry.get(k, n).plugin == "continuous" for k, ns in expected.items() for n in ns
               if not (k == "network" and n != "egnn"))


def test_compose_by_name(registry, gen):
    energy = registry.create("energy", "dw4")
    space_name, params = energy.space_spec
    space = registry.create("state_space", space_name, **params)
    path = registry.create("path", "linear", space, t_min=0.05)
    gp = registry.create("generator", "diffusion", g=0.5, clip_norm=20.0)
    net = registry.create("network", "mlp", space, gp.output_shapes(path), hidden=16, layers=2)
    enet = registry.create("network", "egnn", space, torch.Size([]), hidden=8, layers=1)
    x = path.prior_sample(3, gen)
    t = torch.full((3,), 0.5)
    assert net(x, t).shape == (3, 8) and enet(x, t).shape == (3,)
    assert energy(x).shape == (3,)
    assert path.name == "cond_ot" and energy.name == "dw4"


@pytest.mark.parametrize("kind,name,args,params", [
    ("state_space", "euclidean", (), {"dim": 0}),
    ("state_space", "euclidean", (), {"dim": 2, "n_particles": 2, "spatial_dim": 3}),
    ("state_space", "euclidean", (), {}),
    ("path", "cond_ot", "space", {"t_min": 0.0}),
    ("path", "ve", "space", {"sigma_min": 2.0, "sigma_max": 1.0}),
    ("path", "ve", "space", {"sigma_maxx": 3.0}),
    ("generator", "flow", (), {"solver": "rk4"}),
    ("generator", "flow", (), {"clip_norm": -1.0}),
    ("generator", "diffusion", (), {"g": "vp"}),
    ("generator", "diffusion", (), {"g": -1.0}),
    ("energy", "gaussian", (), {"dim": 2, "std": [1.0, -1.0]}),
    ("energy", "gmm40", (), {"std": 0}),
    ("energy", "dw4", (), {"temperature": -1}),
    ("network", "egnn", "space2", {}),
])
def test_invalid_parameters_raise_config_error(registry, kind, name, args, params):
    if args == "space":
        args = (registry.create("state_space", "euclidean", dim=2),)
    elif args == "space2":
        sp = registry.create("state_space", "euclidean", dim=2)
        args = (sp, sp.event_shape)  # egnn needs particles
    with pytest.raises(ConfigError):
        registry.create(kind, name, *args, **params)


def test_entry_point_declared():
    from importlib import metadata

    eps = [ep for ep in metadata.entry_points(group="egm_framework") if ep.value == "egm_continuous.plugin"]
    assert eps and eps[0].name == "continuous"
