"""A discrete path for the core's documented MixturePath protocol (what the `jump` generator needs):
each site keeps its end value with probability κ_t and is otherwise a uniform token,
p_{t|r}(x^i | x_r^i) = α 1[x^i = x_r^i] + (1 − α)/N with α = κ_t/κ_r."""

import math

import torch

from egm_framework.interfaces import ConditionalPath, MixtureSchedule
from egm_framework.schedules import resolve_schedule


class FlipPath(ConditionalPath):
    uses_mask = False
    supports_bootstrap = False  # plain SNIS (r = 1) only
    train_time_range = (0.0, 0.999)

    def __init__(self, space, schedule="tp_square", registry=None):
        super().__init__(space)
        self.schedule = resolve_schedule(schedule, MixtureSchedule, registry=registry, owner="path 'tp_flip'")
        self.shape = torch.Size(space.event_shape)
        self.vocab = int(space.vocab)
        self.num_sites = math.prod(self.shape)

    # the schedule part of the protocol
    def kappa(self, t):
        return self.schedule.kappa(t)

    def kappa_dot(self, t):
        return self.schedule.kappa_dot(t)

    def kappa_inverse(self, k):
        return self.schedule.kappa_inverse(k)

    def denoiser_target_affine(self, t, r):
        kt, kr = self.kappa(t), self.kappa(r)
        a = torch.where(r >= 1, torch.ones_like(kt), (1 - kt) / (kr - kt).clamp_min(1e-12))
        return a, 1 - a

    def active_sites(self, x):
        return torch.ones_like(x, dtype=torch.bool)

    # ConditionalPath
    def _keep(self, x, keep, generator):
        u = torch.rand(x.shape, generator=generator, device=x.device)
        noise = torch.randint(0, self.vocab, x.shape, generator=generator, device=x.device)
        return torch.where(u < keep, x, noise)

    def prior_sample(self, n, generator, device="cpu"):
        return torch.randint(0, self.vocab, (n, *self.shape), generator=generator, device=device)

    def sample_xt(self, x1, t, generator):
        return self._keep(x1, self.kappa(t).view(-1, *[1] * len(self.shape)), generator)

    def propose(self, x_t, t, r, n, generator):
        alpha = (self.kappa(t) / self.kappa(r).clamp_min(1e-12)).view(-1, 1, *[1] * len(self.shape))
        return self._keep(x_t.unsqueeze(1).expand(-1, n, *self.shape), alpha, generator)

    def log_normalizer(self, x_t, t, r):
        return torch.zeros(x_t.shape[0], dtype=t.dtype, device=t.device)  # Σ_y p(x | y) = 1 per site
