"""Tests of the example plugin, written the way a third-party package would write them:
register the plugin on a fresh PluginManager (no global state), build through the Registry."""

import itertools

import pytest
import torch

from egm_framework.errors import ConfigError
from egm_framework.plugins import PluginManager
from egm_framework.registry import Registry

import egm_example_energies.plugin as example_plugin
from egm_example_energies import CurieWeissEnergy


@pytest.fixture
def registry():
    manager = PluginManager()
    manager.register(example_plugin, "example", distribution="egm-example-energies", version="0.1.0")
    return Registry(manager)


def test_registered_with_alias_and_summary(registry):
    info = registry.get("energy", "curie_weiss")
    assert info.plugin == "example" and info.distribution == "egm-example-energies"
    assert "mean_field_ising" in info.aliases and "Curie-Weiss" in info.summary
    energy = registry.create("energy", "mean_field_ising", n_spins=6, beta=0.5)
    assert isinstance(energy, CurieWeissEnergy) and energy.name == "curie_weiss"
    assert energy.space_spec == ("categorical", {"shape": [6], "vocab": 2})


def test_bad_parameters_are_config_errors(registry):
    with pytest.raises(ConfigError, match="n_spins must be an integer >= 2"):
        registry.create("energy", "curie_weiss", n_spins=1)
    with pytest.raises(ConfigError, match="accepted: n_spins, beta, J, h"):
        registry.create("energy", "curie_weiss", temperature=2.0)


def test_energy_shape_and_formula():
    e = CurieWeissEnergy(n_spins=4, beta=2.0, J=1.0, h=0.25)
    x = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]])
    out = e(x)
    assert out.shape == (3,) and out.dtype == torch.get_default_dtype()
    # M = 4, -4, 0
    expected = torch.tensor([2.0 * (-16 / 8 - 0.25 * 4), 2.0 * (-16 / 8 + 0.25 * 4), 0.0])
    torch.testing.assert_close(out, expected)
    obs = e.observables(x)
    torch.testing.assert_close(obs["magnetization"], torch.tensor([1.0, -1.0, 0.0]))


def test_log_partition_matches_enumeration():
    e = CurieWeissEnergy(n_spins=8, beta=1.3, h=0.1)
    states = torch.tensor(list(itertools.product([0, 1], repeat=8)))
    brute = torch.logsumexp(-e(states).double(), dim=0)
    assert abs(e.log_partition() - float(brute)) < 1e-4


def test_ground_truth_is_exact():
    e = CurieWeissEnergy(n_spins=6, beta=1.5, h=0.0)
    samples = e.ground_truth(40_000, torch.Generator().manual_seed(0))
    assert samples.shape == (40_000, 6) and samples.dtype == torch.long
    k = samples.sum(dim=1)
    empirical = torch.bincount(k, minlength=7).double() / k.numel()
    torch.testing.assert_close(empirical, e.level_log_probs().exp(), atol=0.01, rtol=0)
    # given k, the up spins are spread uniformly over the sites
    site_freq = samples[k == 3].double().mean(dim=0)
    torch.testing.assert_close(site_freq, torch.full((6,), 0.5, dtype=torch.float64), atol=0.02, rtol=0)
    # reproducible from the generator
    again = e.ground_truth(40_000, torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_lives_on_the_installed_categorical_space():
    """With a plugin providing "categorical" installed (egm-discrete), the energy's space builds
    from its space_spec and accepts the ground-truth samples."""
    from egm_framework.errors import UnknownComponentError
    from egm_framework.plugins import default_plugin_manager

    full = Registry(default_plugin_manager())
    try:
        full.get("state_space", "categorical")
    except UnknownComponentError:
        pytest.skip("no plugin providing the 'categorical' state space is installed")
    full_manager_has_example = "curie_weiss" in full.names("energy")
    energy = (full.create("energy", "curie_weiss", n_spins=9) if full_manager_has_example
              else CurieWeissEnergy(n_spins=9))
    space_name, space_params = energy.space_spec
    space = full.create("state_space", space_name, **space_params)
    x = energy.ground_truth(16, torch.Generator().manual_seed(1))
    space.validate(x)
    assert energy(x).shape == (16,)


def test_curie_weiss_meets_the_shared_contract():
    """The contract checks of egm_framework.testing, as the plugin guide shows (needs egm-discrete)."""
    import pytest

    import importlib

    from egm_framework.errors import UnknownComponentError
    from egm_framework.plugins import default_plugin_manager
    from egm_framework.registry import Registry
    from egm_framework.testing import check_components

    importlib.invalidate_caches()  # the package may have been pip-installed earlier in this session
    reg = Registry(default_plugin_manager())
    if "curie_weiss" not in reg.names("energy"):
        # not installed (make test leaves no test package behind): load its plugin module by EGM_PLUGINS
        import os

        env = {**os.environ, "EGM_PLUGINS": "egm_example_energies.plugin"}
        reg = Registry(default_plugin_manager(env))
    try:
        reg.get("path", "masked")
    except UnknownComponentError as exc:
        pytest.skip(f"needs egm-discrete: {exc}")
    check_components(reg, energy="curie_weiss", energy_params={"n_spins": 8}, path="masked", generator="jump")


def test_exact_values_match_enumeration():
    e = CurieWeissEnergy(n_spins=8, beta=0.7, J=1.0, h=0.2)
    states = torch.tensor(list(itertools.product([0, 1], repeat=8)))
    energies = e(states).double()
    p = torch.softmax(-energies, dim=0)
    m = (2 * states.sum(-1) - 8).double().abs() / 8
    exact = e.exact_values()
    assert exact["E-mean"] == pytest.approx(float((p * energies).sum()), rel=1e-6)  # energies are float32
    assert exact["|M|-mean"] == pytest.approx(float((p * m).sum()), rel=1e-6)  # energies are float32
    assert exact["log Z"] == pytest.approx(float(torch.logsumexp(-energies, 0)), rel=1e-6)  # energies are float32
