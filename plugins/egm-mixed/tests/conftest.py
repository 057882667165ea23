"""Shared fixtures: a registry on a fresh plugin manager (never global state)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# the suite runs with --import-mode=importlib (several plugins have test files of the same name),
# so the helper module beside this file is made importable explicitly
sys.path.insert(0, str(Path(__file__).parent))
from _mixed_helpers import make_registry  # noqa: E402


@pytest.fixture
def registry():
    return make_registry()


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
