"""egm-discrete: categorical state spaces, masked / uniform jump paths, the jump (CTMC) generator,
lattice networks and the Ising / Potts energies with exact and MCMC ground truth."""

__version__ = "0.1.0"
