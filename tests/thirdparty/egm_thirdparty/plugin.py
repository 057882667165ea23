from egm_framework import hookimpl

from .network import build_tiny_net
from .path import FlipPath
from .schedules import RaisedCosine, SquareSchedule


@hookimpl
def register_schedules(register):
    register("tp_square", SquareSchedule, summary="κ_t = t²")
    register("tp_cosine", RaisedCosine, summary="α_t = 1 − cos(πt/2), σ_t = cos(πt/2)")


@hookimpl
def register_paths(register):
    register("tp_flip", FlipPath, summary="uniform-noise path on categorical states with a κ schedule")


@hookimpl
def register_networks(register):
    register("tp_net", build_tiny_net, summary="one hidden layer on the space's encoder, time appended")
