"""Closed-form marginals of a diagonal Gaussian target N(m, diag(s²)) under the cond_ot and ve paths.

cond_ot: x_t = t x_1 + (1 − t) σ_0 x_0 is Gaussian with mean t m and variance v_t = t² s² + σ_0² (1 − t)²;
  u_t(x) = E[x_1 − σ_0 x_0 | x_t = x] = m + (t s² − σ_0² (1 − t)) / v_t · (x − t m)
  (Cov(x_1 − σ_0 x_0, x_t) = t s² − σ_0² (1 − t)),
  ∇log p_t(x) = −(x − t m) / v_t,  E[x_1 | x_t = x] = m + t s² / v_t · (x − t m).
ve: x_t = x_1 + σ_t z: mean m, variance v_t = s² + σ_t²;
  u_t(x) = E[σ̇_t z | x] = (dσ_t²/dt) / (2 v_t) · (x − m),  ∇log p_t(x) = −(x − m) / v_t,
  E[x_1 | x_t = x] = m + s² / v_t · (x − m).
"""

import torch


class GaussianTruth:
    def __init__(self, path, mean, std):
        self.path = path
        self.m = torch.as_tensor(mean, dtype=torch.float32)
        self.s2 = torch.as_tensor(std, dtype=torch.float32) ** 2
        self.kind = path.name
        self.sigma0_sq = float(getattr(path, "sigma0", 1.0)) ** 2

    def moments(self, t):
        """mean (B, d), variance (B, d) of p_t."""
        t = t.float()[:, None]
        if self.kind == "cond_ot":
            return t * self.m, t * t * self.s2 + self.sigma0_sq * (1 - t) ** 2
        sig2 = self.path.sigma2(t[:, 0])[:, None]
        return self.m.expand(t.shape[0], -1), self.s2 + sig2

    def velocity(self, x, t):
        mean, var = self.moments(t)
        if self.kind == "cond_ot":
            tt = t.float()[:, None]
            return self.m + (tt * self.s2 - self.sigma0_sq * (1 - tt)) / var * (x - mean)
        return self.path.dsigma2_dt(t)[:, None] / (2 * var) * (x - mean)

    def endpoint(self, x, t):
        """Posterior mean E[x_1 | x_t = x], (B, d)."""
        mean, var = self.moments(t)
        gain = t.float()[:, None] * self.s2 if self.kind == "cond_ot" else self.s2
        return self.m + gain / var * (x - mean)

    def score(self, x, t):
        mean, var = self.moments(t)
        return -(x - mean) / var

    def energy_at(self, x, r):
        """E_r(x) = −log p_r(x) + const, x: (N, d), r: (N,)."""
        mean, var = self.moments(r)
        return 0.5 * ((x - mean) ** 2 / var).sum(-1)

    def sample_t(self, n, t, generator):
        mean, var = self.moments(t)
        return mean + var.sqrt() * torch.randn(mean.shape[0], self.m.shape[0], generator=generator)
