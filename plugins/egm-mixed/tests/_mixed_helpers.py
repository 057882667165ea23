"""Helpers of the egm-mixed tests (a uniquely named module: the plugin suites may run together)."""

from __future__ import annotations

import importlib

import pytest

from egm_framework import builtin
from egm_framework.plugins import PluginManager
from egm_framework.registry import Registry

PART_PLUGINS = {"discrete": "egm_discrete.plugin", "continuous": "egm_continuous.plugin"}


def make_registry(*extra_plugins) -> Registry:
    """Core built-ins + the installed discrete, continuous and mixed plugin modules + extra throwaway ones.

    The test *suite* may import the modality plugins' modules by name to register them (the mixed plugin
    itself never does); if one is not installed the dependent tests are skipped."""
    pm = PluginManager()
    pm.register(builtin, "core")
    for name, mod in PART_PLUGINS.items():
        try:
            module = importlib.import_module(mod)
        except ImportError:
            pytest.skip(f"{mod} is not installed (pip install -e plugins/egm-{name})")
        pm.register(module, name)
    pm.register(importlib.import_module("egm_mixed.plugin"), "mixed")
    for i, plugin in enumerate(extra_plugins):
        pm.register(plugin, f"extra{i}")
    return Registry(pm)
