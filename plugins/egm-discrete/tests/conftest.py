import pytest
import torch

from egm_framework import builtin
from egm_framework.plugins import PluginManager
from egm_framework.registry import Registry

import egm_discrete.plugin


@pytest.fixture
def registry() -> Registry:
    """A registry from a fresh plugin manager holding only the core built-ins and this plugin."""
    pm = PluginManager()
    pm.register(builtin, "core")
    pm.register(egm_discrete.plugin, "discrete", distribution="egm-discrete")
    return Registry(pm)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
