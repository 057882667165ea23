"""Hook implementations of the egm-continuous plugin (registration only)."""

from egm_framework import hookimpl

from .baselines import MALABaseline
from .energies import DoubleWellEnergy, GaussianEnergy, GaussianMixtureEnergy, GMM25Energy, GMM40Energy
from .generators import DiffusionGenerator, FlowGenerator
from .networks import build_egnn
from .paths import AffinePath, CondOTPath, VEPath
from .space import EuclideanSpace


@hookimpl
def register_state_spaces(register):
    register("euclidean", EuclideanSpace,
             summary="R^d, optionally n particles in R^D (zero_com: centre-of-mass-free subspace)")


@hookimpl
def register_paths(register):
    register("cond_ot", CondOTPath, aliases=("linear",),
             summary="linear path x_t = t x_1 + (1-t) x_0, x_0 ~ N(0, I), with Gaussian bridges")
    register("affine", AffinePath, aliases=("gaussian",),
             summary="affine Gaussian path x_t = alpha_t x_1 + sigma_t x_0 with a registered schedule (default cond_ot)")
    register("ve", VEPath, aliases=("variance_exploding",),
             summary="variance-exploding path N(x_1, sigma_t^2 I), sigma_t^2 = smin^2((smax/smin)^(2(1-t)) - 1)")


@hookimpl
def register_generators(register):
    register("flow", FlowGenerator, summary="velocity field of the probability-flow ODE (euler | heun sampler)")
    register("diffusion", DiffusionGenerator,
             summary="SDE drift u + (g^2/2) score (constant g or g='ve'), Euler-Maruyama sampler")


@hookimpl
def register_energies(register):
    register("gaussian", GaussianEnergy, summary="Gaussian N(mean, cov) in R^d (exact ground truth)")
    register("gmm", GaussianMixtureEnergy, summary="isotropic Gaussian mixture with given means, std and weights (exact)")
    register("gmm25", GMM25Energy, summary="equal mixture of 25 Gaussians (std 1) on {-10,-5,0,5,10}^2 (exact)")
    register("gmm40", GMM40Energy, summary="40-mode 2-D GMM, means uniform in [-40,40]^2 from seed 0 (exact)")
    register("dw4", DoubleWellEnergy, aliases=("double_well",),
             summary="DW-4: 4 particles in R^2, pairwise double well (b=-4, c=0.9, d0=4); MALA ground truth")


@hookimpl
def register_networks(register):
    register("egnn", build_egnn, summary="E(n)-equivariant GNN for particle systems (velocity or scalar energy)")


@hookimpl
def register_baselines(register):
    register("mala", MALABaseline, summary="MALA with step-size adaptation: one energy + one gradient per chain and sweep")
