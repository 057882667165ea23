"""egm-framework: neural samplers for Boltzmann densities trained by Energy-based Generator Matching."""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (plugins import this)

__all__ = ["hookimpl", "__version__"]
