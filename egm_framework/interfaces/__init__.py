"""The four abstract interfaces every modality implements, plus the network-factory protocol."""

from .energy import Energy
from .generator import GeneratorParametrization, ModelFn, simulate, time_grid
from .network import NetworkFactory
from .path import ConditionalPath
from .space import StateSpace

__all__ = [
    "Energy",
    "StateSpace",
    "ConditionalPath",
    "GeneratorParametrization",
    "NetworkFactory",
    "ModelFn",
    "simulate",
    "time_grid",
]
