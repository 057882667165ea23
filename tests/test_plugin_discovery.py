"""Finding plugins: entry points of a fake installed distribution, import failures, misspelled
hooks, and the EGM_PLUGINS / EGM_DISABLE_PLUGINS controls.

A fake distribution is a ``<name>-<version>.dist-info/`` folder (METADATA + entry_points.txt) next
to its module in a temporary directory put on ``sys.path``: importlib metadata finds it exactly as
it finds a pip-installed package."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from egm_framework import hookimpl
from egm_framework.errors import PluginLoadError, UnknownComponentError
from egm_framework.plugins import ENTRY_POINT_GROUP, PluginManager, default_plugin_manager, metadata
from egm_framework.registry import Registry

_counter = itertools.count()

GOOD_PLUGIN = '''
from egm_framework import hookimpl


def make_energy(beta: float = 1.0):
    """Fake energy from a fake distribution."""
    return {"beta": beta}


@hookimpl
def register_energies(register):
    register("fake_energy", make_energy, aliases=("fake_alias",))


@hookimpl
def register_paths(register):
    register("fake_path", lambda space, rate=1.0: (space, rate), summary="fake path")
'''

BROKEN_PLUGIN = '''
import egm_this_dependency_does_not_exist  # noqa: F401
'''

MISSPELLED_PLUGIN = '''
from egm_framework import hookimpl


@hookimpl
def register_energys(register):
    register("never", dict)
'''


class FakeSite:
    """A temporary site directory on sys.path holding fake distributions and loose modules."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []
        self.tag = f"t{next(_counter)}"
        monkeypatch.syspath_prepend(str(root))

    def module(self, stem: str, source: str) -> str:
        """Write a module; return its (test-unique) import name."""
        name = f"{stem}_{self.tag}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.modules.append(name)
        return name

    def distribution(self, dist: str, version: str, entry_points: dict[str, str]) -> None:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (info / "RECORD").write_text("")

    def cleanup(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.fixture
def site(tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    s = FakeSite(tmp_path / "site", monkeypatch)
    yield s
    s.cleanup()


def fake_entry_points(dist: str):
    """The group's entry points that belong to one distribution (keeps real plugins out)."""
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == dist]


def real_plugin_names(exclude: str) -> list[str]:
    return [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if not (ep.dist and ep.dist.name == exclude)]


# ---------------------------------------------------------------------------- entry points
def test_entry_point_of_a_fake_distribution_is_discovered(site):
    mod = site.module("fake_egm_plugin", GOOD_PLUGIN)
    site.distribution("fake-egm-plugin", "0.1", {"fakeplug": mod})

    manager = PluginManager()
    manager.load_entry_points()  # the default lookup of the "egm_framework" group
    rec = manager.records["fakeplug"]
    assert rec.status == "loaded" and rec.error is None
    assert (rec.distribution, rec.version, rec.module) == ("fake-egm-plugin", "0.1", mod)
    assert rec.hooks == ("register_energies", "register_paths")
    assert rec.to_json()["distribution"] == "fake-egm-plugin"
    assert manager.pm.get_plugin("fakeplug") is sys.modules[mod]

    # the components carry the plugin and distribution names
    only_fake = PluginManager()
    only_fake.load_entry_points(fake_entry_points("fake-egm-plugin"))
    registry = Registry(only_fake)
    info = registry.get("energy", "fake_alias")
    assert (info.name, info.plugin, info.distribution) == ("fake_energy", "fakeplug", "fake-egm-plugin")
    assert info.summary == "Fake energy from a fake distribution."
    assert registry.create("energy", "fake_energy", beta=2.0) == {"beta": 2.0}
    assert registry.create("path", "fake_path", "S", rate=3.0) == ("S", 3.0)


def test_plugin_that_fails_to_import_is_recorded_and_others_still_load(site):
    good = site.module("fake_good_plugin", GOOD_PLUGIN)
    bad = site.module("fake_broken_plugin", BROKEN_PLUGIN)
    site.distribution("fake-egm-mixed-bag", "2.3", {"goodplug": good, "badplug": bad})

    manager = PluginManager()
    manager.load_entry_points(fake_entry_points("fake-egm-mixed-bag"))  # must not raise
    failed = manager.failed()
    assert [r.name for r in failed] == ["badplug"]
    rec = failed[0]
    assert (rec.status, rec.distribution, rec.version, rec.module) == ("failed", "fake-egm-mixed-bag", "2.3", bad)
    assert "ModuleNotFoundError" in rec.error and "egm_this_dependency_does_not_exist" in rec.error
    assert manager.records["goodplug"].status == "loaded"

    registry = Registry(manager)
    assert registry.names("energy") == ["fake_energy"]
    with pytest.raises(UnknownComponentError) as err:
        registry.get("energy", "ising")
    msg = str(err.value)
    assert "available: fake_alias, fake_energy" in msg
    assert "failed to load" in msg and "badplug" in msg and "fake-egm-mixed-bag" in msg
    assert "egm_this_dependency_does_not_exist" in msg


def test_misspelled_hook_fails_loudly():
    class Misspelled:
        @hookimpl
        def register_energys(self, register):
            register("never", dict)

    manager = PluginManager()
    with pytest.raises(PluginLoadError) as err:
        manager.register(Misspelled(), "typo", distribution="egm-typo")
    msg = str(err.value)
    assert "register_energys" in msg and "'typo'" in msg and "egm-typo" in msg
    assert "register_energies" in msg  # the message lists the real hooks
    assert "typo" not in manager.records and manager.pm.get_plugin("typo") is None
    # the manager is still usable afterwards
    manager.register(type("Ok", (), {})(), "ok")
    Registry(manager)


def test_misspelled_hook_in_an_entry_point_is_recorded_as_failed(site):
    typo = site.module("fake_typo_plugin", MISSPELLED_PLUGIN)
    good = site.module("fake_good_plugin", GOOD_PLUGIN)
    site.distribution("fake-egm-typo", "0.0.1", {"typoplug": typo, "goodplug": good})
    manager = PluginManager()
    manager.load_entry_points(fake_entry_points("fake-egm-typo"))
    assert manager.records["typoplug"].status == "failed"
    assert "register_energys" in manager.records["typoplug"].error
    assert manager.records["goodplug"].status == "loaded"
    assert Registry(manager).names("energy") == ["fake_energy"]


def test_hook_with_a_wrong_argument_name_fails_loudly():
    class WrongArg:
        @hookimpl
        def register_energies(self, reg):
            pass

    with pytest.raises(PluginLoadError, match="register_energies"):
        PluginManager().register(WrongArg(), "wrongarg")


def test_two_plugins_with_the_same_name_are_rejected():
    manager = PluginManager()
    manager.register(type("A", (), {})(), "same")
    with pytest.raises(PluginLoadError, match="two plugins are named 'same'"):
        manager.register(type("B", (), {})(), "same")


# ---------------------------------------------------------------------------- env controls
def test_disable_plugins_by_plugin_or_distribution_name(site):
    mod = site.module("fake_egm_plugin", GOOD_PLUGIN)
    site.distribution("fake-egm-plugin", "0.1", {"fakeplug": mod})

    for disabled in ("fakeplug", "fake-egm-plugin", "other, fakeplug"):
        manager = default_plugin_manager(environ={"EGM_DISABLE_PLUGINS": disabled})
        rec = manager.records["fakeplug"]
        assert rec.status == "disabled" and rec.distribution == "fake-egm-plugin"
        assert manager.pm.get_plugin("fakeplug") is None
        assert manager.records["core"].status == "loaded"

    manager = default_plugin_manager(environ={})
    assert manager.records["fakeplug"].status == "loaded"
    assert manager.records["core"].distribution == "egm-framework"


def test_egm_plugins_loads_an_unpackaged_module(site):
    mod = site.module("loose_egm_plugin", GOOD_PLUGIN)
    missing = f"egm_no_such_module_{site.tag}"
    # keep the real installed plugins out of this registry: only core + the loose module
    disable = ",".join(real_plugin_names(exclude=""))
    manager = default_plugin_manager(environ={"EGM_PLUGINS": f"{mod}, {missing}", "EGM_DISABLE_PLUGINS": disable})
    rec = manager.records[mod]
    assert rec.status == "loaded" and rec.distribution is None and rec.module == mod
    assert manager.records[missing].status == "failed"
    assert "ModuleNotFoundError" in manager.records[missing].error

    registry = Registry(manager)
    info = registry.get("energy", "fake_energy")
    assert info.plugin == mod and info.distribution is None
    assert "mlp" in registry.names("network")  # built-ins are still there
    with pytest.raises(UnknownComponentError, match=missing):
        registry.get("energy", "nope")


def test_egm_plugins_can_be_disabled_too(site):
    mod = site.module("loose_egm_plugin", GOOD_PLUGIN)
    manager = default_plugin_manager(environ={"EGM_PLUGINS": mod, "EGM_DISABLE_PLUGINS": mod})
    assert mod not in manager.records or manager.records[mod].status == "disabled"
    assert manager.pm.get_plugin(mod) is None


def test_same_module_named_twice_is_reported_not_raised(site):
    """EGM_PLUGINS naming a module that an entry point already loaded must not crash discovery."""
    mod = site.module("fake_egm_plugin", GOOD_PLUGIN)
    site.distribution("fake-egm-plugin", "0.1", {"fakeplug": mod})
    disable = ",".join(real_plugin_names(exclude="fake-egm-plugin"))
    manager = default_plugin_manager(environ={"EGM_PLUGINS": mod, "EGM_DISABLE_PLUGINS": disable})
    assert manager.records["fakeplug"].status == "loaded"
    assert manager.records[mod].status == "failed"
    assert "already registered" in manager.records[mod].error
    assert Registry(manager).get("energy", "fake_energy").plugin == "fakeplug"
