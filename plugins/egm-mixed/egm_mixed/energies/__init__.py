"""Mixed (continuous × discrete) benchmark energies."""

from .gb_rbm import GaussBernoulliRBM
from .joint_dw4 import JointDW4
from .joint_mog import JointMoG

__all__ = ["GaussBernoulliRBM", "JointMoG", "JointDW4"]
