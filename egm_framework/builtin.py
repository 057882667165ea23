"""Components the core itself contributes, registered through the same hooks as any plugin."""

from .baselines import MetropolisBaseline
from .hookspecs import hookimpl
from .networks import build_mlp, build_resmlp
from .schedules import BUILTIN_SCHEDULES


@hookimpl
def register_networks(register):
    register("mlp", build_mlp)
    register("resmlp", build_resmlp, aliases=("residual_mlp",))


@hookimpl
def register_schedules(register):
    for name, (factory, aliases, summary) in BUILTIN_SCHEDULES.items():
        register(name, factory, aliases=aliases, summary=summary)


@hookimpl
def register_baselines(register):
    register("metropolis", MetropolisBaseline,
             summary="random-walk Metropolis on any space (the fallback): one proposal per chain and part")
