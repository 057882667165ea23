"""Entry point of the plugin (``[project.entry-points.egm_framework] example = ...``).

This module holds only ``@hookimpl`` functions; the components live in their own modules.
"""

from egm_framework import hookimpl

from .curie_weiss import CurieWeissEnergy


@hookimpl
def register_energies(register):
    register(
        "curie_weiss",
        CurieWeissEnergy,
        aliases=("mean_field_ising",),
        summary="Curie-Weiss (mean-field Ising) model on N spins, exact ground truth",
    )
