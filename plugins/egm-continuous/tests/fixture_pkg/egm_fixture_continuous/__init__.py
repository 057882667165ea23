"""egm-fixture-continuous: a third-party continuous energy (test fixture for egm-continuous)."""

from .banana import BananaEnergy

__version__ = "0.1.0"
__all__ = ["BananaEnergy", "__version__"]
