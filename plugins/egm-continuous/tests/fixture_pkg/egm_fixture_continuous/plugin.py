"""Entry point of the fixture plugin: only ``@hookimpl`` functions."""

from egm_framework import hookimpl

from .banana import BananaEnergy


@hookimpl
def register_energies(register):
    register("banana", BananaEnergy, summary="2-D banana: x1 ~ N(0, s^2), x2 | x1 ~ N(b x1^2, 1) (exact ground truth)")
