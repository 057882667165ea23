"""egm-mixed hook implementations (entry point ``mixed = "egm_mixed.plugin"``)."""

from egm_framework import hookimpl

from .baselines import MwGBaseline
from .energies import GaussBernoulliRBM, JointDW4, JointMoG
from .generator import ProductGenerator
from .path import ProductPath
from .space import ProductSpace


@hookimpl
def register_state_spaces(register):
    register("product", ProductSpace, summary="continuous × discrete product of two registered state spaces")


@hookimpl
def register_paths(register):
    register("product", ProductPath, summary="product of a continuous and a discrete path, shared time")


@hookimpl
def register_generators(register):
    register("product", ProductGenerator, summary="continuous ⊕ discrete generator, one network with two heads")


@hookimpl
def register_energies(register):
    register("gb_rbm", GaussBernoulliRBM,
             summary="Gauss–Bernoulli RBM, v ∈ R^2 × h ∈ {0,1}^3, six modes (exact)")
    register("joint_mog", JointMoG, summary="joint MoG, x ∈ R^10 × labels {0,1}^10, 1024 equal modes (exact)")
    register("joint_dw4", JointDW4, summary="4 typed double-well particles in R^2 (Metropolis-within-Gibbs)")


@hookimpl
def register_baselines(register):
    register("mwg", MwGBaseline, aliases=("metropolis_within_gibbs",),
             summary="Metropolis-within-Gibbs: MALA on the continuous part, exact Gibbs on the tokens")
