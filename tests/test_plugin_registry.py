"""The registry as plugins see it: one throwaway plugin per test, on a fresh PluginManager.

Covers every hook, creation with parameters, aliases, summaries, and the three error families
(duplicate names, unknown names, bad parameters)."""

from __future__ import annotations

import pytest

from egm_framework import hookimpl
from egm_framework.errors import ConfigError, DuplicateComponentError, EGMError, UnknownComponentError
from egm_framework.hookspecs import KIND_HOOKS
from egm_framework.plugins import PluginManager
from egm_framework.registry import KINDS, Registry


class Thing:
    """A stand-in component: remembers what its factory received."""

    def __init__(self, *context, **params):
        self.context = context
        self.params = params


def make_registry(*plugins: tuple[str, object], distribution: str | None = None) -> Registry:
    manager = PluginManager()
    for name, plugin in plugins:
        manager.register(plugin, name, distribution=distribution or f"dist-{name}", version="1.0")
    return Registry(manager)


# ---------------------------------------------------------------------------- one plugin per hook
def space_factory(size: int = 3, vocab: int = 2):
    """A toy state space."""
    return Thing(size=size, vocab=vocab)


def energy_factory(beta: float = 1.0):
    """A toy energy."""
    return Thing(beta=beta)


def path_factory(space, rate: float = 1.0):
    """A toy path."""
    return Thing(space, rate=rate)


def generator_factory(steps: int = 10):
    """A toy generator."""
    return Thing(steps=steps)


def network_factory(space, output_shapes, hidden: int = 16):
    """A toy network."""
    return Thing(space, output_shapes, hidden=hidden)


def schedule_factory(power: float = 1.0):
    """A toy schedule."""
    return Thing(power=power)


def baseline_factory(energy, space, thin: int = 1):
    """A toy baseline."""
    return Thing(energy, space, thin=thin)


class AllHooks:
    @hookimpl
    def register_state_spaces(self, register):
        register("toy_space", space_factory, aliases=("ts",), summary="toy space summary")

    @hookimpl
    def register_energies(self, register):
        register("toy_energy", energy_factory, aliases=("te",), summary="toy energy summary")

    @hookimpl
    def register_paths(self, register):
        register("toy_path", path_factory, aliases=("tp",), summary="toy path summary")

    @hookimpl
    def register_generators(self, register):
        register("toy_generator", generator_factory, aliases=("tg",), summary="toy generator summary")

    @hookimpl
    def register_networks(self, register):
        register("toy_network", network_factory, aliases=("tn",), summary="toy network summary")

    @hookimpl
    def register_schedules(self, register):
        register("toy_schedule", schedule_factory, aliases=("tsc",), summary="toy schedule summary")

    @hookimpl
    def register_baselines(self, register):
        register("toy_baseline", baseline_factory, aliases=("tb",), summary="toy baseline summary")


CASES = {  # kind -> (name, alias, positional context, params, expected params seen by the factory)
    "state_space": ("toy_space", "ts", (), {"size": 5}, {"size": 5, "vocab": 2}),
    "energy": ("toy_energy", "te", (), {"beta": 0.5}, {"beta": 0.5}),
    "path": ("toy_path", "tp", ("SPACE",), {"rate": 2.0}, {"rate": 2.0}),
    "generator": ("toy_generator", "tg", (), {"steps": 3}, {"steps": 3}),
    "network": ("toy_network", "tn", ("SPACE", {"logits": (4, 2)}), {"hidden": 8}, {"hidden": 8}),
    "schedule": ("toy_schedule", "tsc", (), {"power": 2.0}, {"power": 2.0}),
    "baseline": ("toy_baseline", "tb", ("ENERGY", "SPACE"), {"thin": 2}, {"thin": 2}),
}


def test_cases_cover_every_hook():
    assert set(CASES) == set(KINDS) == set(KIND_HOOKS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_hook_registers_and_creates(kind):
    name, alias, context, params, expected = CASES[kind]
    registry = make_registry(("toy", AllHooks()))
    assert registry.names(kind) == [name]
    info = registry.get(kind, name)
    assert (info.kind, info.plugin, info.distribution) == (kind, "toy", "dist-toy")
    assert info.aliases == (alias,)
    assert info.summary == f"{name.replace('_', ' ')} summary"

    obj = registry.create(kind, name, *context, **params)
    assert isinstance(obj, Thing)
    assert obj.context == context and obj.params == expected
    assert obj.name == name  # the registry names what it builds

    by_alias = registry.create(kind, alias, *context, **params)
    assert by_alias.name == name and by_alias.params == expected
    assert registry.get(kind, alias) is info


@pytest.mark.parametrize("kind", sorted(CASES))
def test_hooks_fill_only_their_own_kind(kind):
    registry = make_registry(("toy", AllHooks()))
    for other in KINDS:
        if other != kind:
            with pytest.raises(UnknownComponentError):
                registry.get(other, CASES[kind][0])


def test_plugin_as_module_with_a_subset_of_hooks():
    import types

    mod = types.ModuleType("throwaway_energy_plugin")

    @hookimpl
    def register_energies(register):
        register("only_energy", energy_factory)

    mod.register_energies = register_energies
    manager = PluginManager()
    manager.register(mod, "mod_plugin")
    assert manager.records["mod_plugin"].hooks == ("register_energies",)
    assert manager.records["mod_plugin"].module == "throwaway_energy_plugin"
    registry = Registry(manager)
    assert registry.names("energy") == ["only_energy"]
    assert registry.names("path") == []


def test_components_listing_and_json():
    registry = make_registry(("toy", AllHooks()))
    comps = registry.components()
    assert [c.kind for c in comps] == list(KINDS)
    assert [c.name for c in registry.components("energy")] == ["toy_energy"]
    assert registry.get("energy", "toy_energy").to_json() == {
        "kind": "energy", "name": "toy_energy", "plugin": "toy", "distribution": "dist-toy",
        "summary": "toy energy summary", "aliases": ["te"],
        "params": [{"name": "beta", "required": False, "default": 1.0}],
    }


# ---------------------------------------------------------------------------- summaries
class Documented:
    """First line of the docstring.

    More detail that is not part of the summary."""


class Undocumented(Documented):
    pass


def test_summary_from_argument_docstring_or_empty():
    class P:
        @hookimpl
        def register_energies(self, register):
            register("explicit", Documented, summary="given summary\nsecond line dropped")
            register("from_doc", Documented)
            register("none", lambda: Thing())
            register("inherits", Undocumented)

    registry = make_registry(("p", P()))
    assert registry.get("energy", "explicit").summary == "given summary"
    assert registry.get("energy", "from_doc").summary == "First line of the docstring."
    assert registry.get("energy", "none").summary == ""
    # a subclass without its own docstring must not borrow its base class's description
    assert registry.get("energy", "inherits").summary == ""


# ---------------------------------------------------------------------------- registry injection
def test_factory_parameter_named_registry_receives_the_registry():
    seen = {}

    def composite(space, registry, inner: str = "toy_path"):
        seen["registry"] = registry
        return registry.create("path", inner, space)

    class P:
        @hookimpl
        def register_paths(self, register):
            register("toy_path", path_factory)
            register("composite", composite)

    registry = make_registry(("p", P()))
    obj = registry.create("path", "composite", "SPACE")
    assert seen["registry"] is registry
    assert obj.context == ("SPACE",) and obj.params == {"rate": 1.0}
    # `registry` is not advertised as a user parameter
    with pytest.raises(ConfigError) as err:
        registry.create("path", "composite", "SPACE", bogus=1)
    assert "accepted: inner" in str(err.value)


# ---------------------------------------------------------------------------- duplicates
class First:
    @hookimpl
    def register_energies(self, register):
        register("shared", energy_factory, aliases=("shared_alias",))


class SecondSameName:
    @hookimpl
    def register_energies(self, register):
        register("shared", energy_factory)


class SecondAliasClash:
    @hookimpl
    def register_energies(self, register):
        register("shared_alias", energy_factory)


class SecondNewAliasClash:
    @hookimpl
    def register_energies(self, register):
        register("fresh", energy_factory, aliases=("shared",))


@pytest.mark.parametrize("second", [SecondSameName, SecondAliasClash, SecondNewAliasClash])
def test_duplicate_names_across_plugins_are_errors_naming_both(second):
    manager = PluginManager()
    manager.register(First(), "alpha", distribution="egm-alpha")
    manager.register(second(), "beta", distribution="egm-beta")
    with pytest.raises(DuplicateComponentError) as err:
        Registry(manager)
    msg = str(err.value)
    assert "registered twice" in msg
    assert "'alpha'" in msg and "egm-alpha" in msg
    assert "'beta'" in msg and "egm-beta" in msg
    assert "EGM_DISABLE_PLUGINS" in msg
    assert isinstance(err.value, EGMError)


def test_same_name_in_different_kinds_is_fine():
    class P:
        @hookimpl
        def register_energies(self, register):
            register("same", energy_factory)

        @hookimpl
        def register_generators(self, register):
            register("same", generator_factory)

    registry = make_registry(("p", P()))
    assert registry.names("energy") == registry.names("generator") == ["same"]


# ---------------------------------------------------------------------------- unknown names
def test_unknown_name_lists_available_suggests_and_hints_install():
    registry = make_registry(("toy", AllHooks()))
    with pytest.raises(UnknownComponentError) as err:
        registry.create("energy", "toy_enrgy")
    msg = str(err.value)
    assert msg.startswith("unknown energy 'toy_enrgy'; available: ")
    assert "te" in msg and "toy_energy" in msg
    assert "did you mean 'toy_energy'?" in msg
    assert "install the distribution that provides it" in msg and "egm plugins" in msg
    assert "egm-discrete" not in msg  # a third-party name gets no first-party package suggested
    assert isinstance(err.value, LookupError)


def test_unknown_name_without_close_match_or_components():
    registry = make_registry()
    with pytest.raises(UnknownComponentError) as err:
        registry.get("path", "masked")
    msg = str(err.value)
    assert "available: (none)" in msg and "did you mean" not in msg
    assert "install it" in msg


def test_unknown_kind():
    registry = make_registry(("toy", AllHooks()))
    with pytest.raises(UnknownComponentError, match="unknown component kind 'energies'.*did you mean 'energy'"):
        registry.names("energies")


# ---------------------------------------------------------------------------- parameters
def test_unknown_parameter_lists_accepted_parameters():
    registry = make_registry(("toy", AllHooks()))
    with pytest.raises(ConfigError) as err:
        registry.create("state_space", "toy_space", sise=4)
    msg = str(err.value)
    assert "unknown parameter(s) 'sise'" in msg and "state space 'toy_space'" in msg
    assert "accepted: size, vocab" in msg and "did you mean 'size'?" in msg


def test_unknown_parameter_list_excludes_positional_context():
    registry = make_registry(("toy", AllHooks()))
    with pytest.raises(ConfigError, match=r"accepted: hidden$") as err:
        registry.create("network", "toy_network", "SPACE", {}, width=3)
    assert "output_shapes" not in str(err.value)


def test_missing_argument_is_a_config_error():
    registry = make_registry(("toy", AllHooks()))
    with pytest.raises(ConfigError, match="path 'toy_path'"):
        registry.create("path", "toy_path")  # the space is missing


def test_factory_value_error_becomes_config_error():
    def picky(L: int = 4):
        if L < 2:
            raise ValueError(f"L must be an integer >= 2, got {L}")
        return Thing(L=L)

    class P:
        @hookimpl
        def register_energies(self, register):
            register("picky", picky)

    registry = make_registry(("p", P()))
    assert registry.create("energy", "picky", L=3).params == {"L": 3}
    with pytest.raises(ConfigError) as err:
        registry.create("energy", "picky", L=1)
    assert str(err.value) == "energy 'picky': L must be an integer >= 2, got 1"
    assert isinstance(err.value.__cause__, ValueError)
    assert isinstance(err.value, ValueError)  # callers catching ValueError still work


def test_factory_accepting_kwargs_takes_anything():
    def loose(**params):
        return Thing(**params)

    class P:
        @hookimpl
        def register_generators(self, register):
            register("loose", loose)

    registry = make_registry(("p", P()))
    assert registry.create("generator", "loose", anything=1).params == {"anything": 1}


def test_builtin_core_networks_register_like_any_plugin():
    from egm_framework import builtin

    registry = make_registry(("core", builtin))
    assert {"mlp", "resmlp"} <= set(registry.names("network"))
    assert registry.get("network", "residual_mlp").name == "resmlp"
    assert registry.get("network", "mlp").plugin == "core"


def test_hook_that_raises_marks_only_its_plugin_failed():
    from egm_framework import hookimpl
    from egm_framework.plugins import PluginManager
    from egm_framework.registry import Registry

    class Good:
        @hookimpl
        def register_energies(self, register):
            register("good_energy", lambda: None)

    class Bad:
        @hookimpl
        def register_paths(self, register):
            register("half_done", lambda space: None)

        @hookimpl
        def register_energies(self, register):
            raise RuntimeError("boom")

    pm = PluginManager()
    pm.register(Good(), "good")
    pm.register(Bad(), "bad", distribution="bad-dist")
    reg = Registry(pm)
    assert reg.names("energy") == ["good_energy"]
    assert reg.names("path") == []  # what the broken plugin registered before failing is dropped
    rec = pm.records["bad"]
    assert rec.status == "failed" and "boom" in rec.error and rec.distribution == "bad-dist"
    with pytest.raises(Exception, match=r"bad \(bad-dist\).*boom"):
        reg.get("path", "half_done")
