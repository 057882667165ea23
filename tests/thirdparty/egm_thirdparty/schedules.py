import math

import torch

from egm_framework.interfaces import AffineSchedule, MixtureSchedule


class SquareSchedule(MixtureSchedule):
    """κ_t = t²."""

    def kappa(self, t):
        return t * t

    def kappa_dot(self, t):
        return 2 * t

    def kappa_inverse(self, k):
        return k.clamp_min(0).sqrt()


class RaisedCosine(AffineSchedule):
    """α_t = 1 − cos(πt/2), σ_t = cos(πt/2): a cosine schedule that is not variance preserving.
    The generic bridge and the bisection inverse of the base class are used."""

    def alpha(self, t):
        return 1 - torch.cos(0.5 * math.pi * t)

    def alpha_dot(self, t):
        return 0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def sigma(self, t):
        return torch.cos(0.5 * math.pi * t)

    def sigma_dot(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)
