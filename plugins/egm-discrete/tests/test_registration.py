"""Everything is reachable by name through the plugin hooks; bad parameters become ConfigError."""

import pytest
import torch

from egm_framework.errors import ConfigError
from egm_framework.interfaces import ConditionalPath, Energy, GeneratorParametrization, StateSpace


def test_components_registered(registry):
    assert {"categorical"} <= set(registry.names("state_space"))
    assert {"ising", "potts"} <= set(registry.names("energy"))
    assert {"masked", "uniform"} <= set(registry.names("path"))
    assert "jump" in registry.names("generator")
    assert "lattice_conv" in registry.names("network")
    for info in registry.components():
        if info.plugin == "discrete":
            assert info.summary


def test_create_by_name(registry):
    energy = registry.create("energy", "ising", L=3, beta=0.3)
    assert isinstance(energy, Energy) and energy.name == "ising"
    sname, sparams = energy.space_spec
    space = registry.create("state_space", sname, **sparams)
    assert isinstance(space, StateSpace) and space.event_shape == torch.Size([3, 3])
    path = registry.create("path", "absorbing", space)
    assert isinstance(path, ConditionalPath) and path.uses_mask
    gp = registry.create("generator", "jump", loss="mse")
    assert isinstance(gp, GeneratorParametrization)
    for net_name in ("lattice_conv", "mlp"):
        net = registry.create("network", net_name, space, gp.output_shapes(path))
        x = path.prior_sample(4, torch.Generator().manual_seed(0))
        assert net(x, torch.rand(4)).shape == (4, 3, 3, 2)
        scalar = registry.create("network", net_name, space, torch.Size([]))
        assert scalar(x, torch.rand(4)).shape == (4,)
    potts = registry.create("energy", "potts", L=4, q=3, beta=0.5)
    assert potts.space_spec == ("categorical", {"shape": [4, 4], "vocab": 3})


@pytest.mark.parametrize("kind,name,params,match", [
    ("energy", "ising", {"L": 1, "beta": 0.3}, "L must be an integer >= 2"),
    ("energy", "ising", {"L": 3, "beta": -0.1}, "beta must be >= 0"),
    ("energy", "ising", {"L": 3.5, "beta": 0.1}, "L must be an integer"),
    ("energy", "ising", {"L": 3, "beta": 0.1, "gt_method": "metropolis"}, "ground-truth"),
    ("energy", "potts", {"L": 3, "q": 1, "beta": 0.1}, "q must be"),
    ("energy", "potts", {"L": 3, "q": 3, "beta": 0.1, "colour": 2}, "unknown parameter"),
    ("state_space", "categorical", {"shape": [3, 3], "vocab": 1}, "vocab"),
    ("generator", "jump", {"loss": "l1"}, "loss"),
])
def test_invalid_parameters(registry, kind, name, params, match):
    with pytest.raises(ConfigError, match=match):
        registry.create(kind, name, **params)


def test_path_needs_categorical_space(registry):
    with pytest.raises(ConfigError, match="categorical"):
        registry.create("path", "masked", object())
