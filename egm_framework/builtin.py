"""Components the core itself contributes, registered through the same hooks as any plugin."""

from .hookspecs import hookimpl
from .networks import build_mlp, build_resmlp


@hookimpl
def register_networks(register):
    register("mlp", build_mlp)
    register("resmlp", build_resmlp, aliases=("residual_mlp",))
