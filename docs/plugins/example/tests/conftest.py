"""Make the example package importable from a source checkout, installed or not (the core's
tests/test_example_plugin_install.py installs it and checks discovery through its entry point)."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
