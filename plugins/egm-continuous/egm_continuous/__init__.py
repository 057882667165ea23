"""egm-continuous: Euclidean state spaces, Gaussian paths (cond-OT, VE), flow and diffusion generators,
continuous energies (Gaussian, GMM-25, GMM-40, DW-4) and an E(n)-equivariant network for egm-framework."""

__version__ = "0.1.0"
