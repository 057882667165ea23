"""egm-discrete's hook implementations (components live in their own modules)."""

from egm_framework import hookimpl

from .baselines import GibbsBaseline, SwendsenWangBaseline
from .energies import IsingEnergy, PottsEnergy
from .generator import JumpGenerator
from .networks import build_lattice_conv
from .paths import MaskedPath, UniformPath
from .space import CategoricalSpace


@hookimpl
def register_state_spaces(register):
    register("categorical", CategoricalSpace, summary="tokens 0..N-1 on a grid of sites (mask token N)")


@hookimpl
def register_energies(register):
    register("ising", IsingEnergy, summary="L×L periodic Ising model, E = β(−J Σ s_i s_j − h Σ s_i)")
    register("potts", PottsEnergy, summary="L×L periodic q-state Potts model, E = −βJ Σ 1[x_i = x_j]")


@hookimpl
def register_paths(register):
    register("masked", MaskedPath, aliases=("absorbing",),
             summary="masked (absorbing) jump path, prior all-mask, schedule κ_t (default linear)")
    register("uniform", UniformPath, summary="uniform-noise jump path, prior uniform tokens, schedule κ_t (default linear)")


@hookimpl
def register_generators(register):
    register("jump", JumpGenerator, summary="CTMC jump rates from a denoiser (logits per site)")


@hookimpl
def register_networks(register):
    register("lattice_conv", build_lattice_conv,
             summary="periodic CNN on 2-D lattices with a time embedding (per-site logits or scalar)")


@hookimpl
def register_baselines(register):
    register("gibbs", GibbsBaseline,
             summary="parallel Gibbs: checkerboard/colour classes on lattices, systematic scan otherwise")
    register("swendsen_wang", SwendsenWangBaseline, aliases=("sw",),
             summary="Swendsen–Wang cluster updates for ferromagnetic Ising/Potts lattices")
