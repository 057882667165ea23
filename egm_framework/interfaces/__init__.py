"""The abstract interfaces every modality implements, the schedules of paths, the network-factory
protocol, and the path protocols generators require (:mod:`.protocols`)."""

from .energy import Energy
from .generator import GeneratorParametrization, ModelFn, simulate, time_grid, within_training_range
from .network import NetworkFactory
from .path import ConditionalPath
from .protocols import AffineGaussianPath, AffineGaussianScorePath, MixturePath, check_path_fits
from .schedule import AffineSchedule, MixtureSchedule
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
    "MixtureSchedule",
    "AffineSchedule",
    "MixturePath",
    "AffineGaussianPath",
    "AffineGaussianScorePath",
    "check_path_fits",
    "within_training_range",
]
