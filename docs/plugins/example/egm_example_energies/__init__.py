"""egm-example-energies: a tiny third-party plugin for egm-framework.

It contributes one energy, ``curie_weiss`` (the mean-field Ising model), and no modality code: the
energy lives on the ``categorical`` state space, which it names by registry name.
"""

from .curie_weiss import CurieWeissEnergy

__version__ = "0.1.0"
__all__ = ["CurieWeissEnergy", "__version__"]
