"""Exact quantities on small enumerable categorical spaces (for tests and contract checks).

Given all target states ``states`` (S, *shape) with log-probabilities ``log_p`` (S,) and a factorized
path exposing ``site_log_kernel`` (log p_{t|r}(x^i | x_r^i), elementwise):

* :func:`exact_denoiser`: D^i(y) = P(x_1^i = y | x_t) with p(x_1 | x_t) ∝ p_{t|1}(x_t | x_1) p(x_1);
* :func:`exact_intermediate_energy`: E_r(x) = −log p_r(x) = −log Σ_{x_1} p_{r|1}(x | x_1) p(x_1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ground_truth import enumerate_tokens


def enumerate_states(shape, vocab: int, device="cpu") -> torch.Tensor:
    """All vocab^sites states, (vocab^sites, *shape) long."""
    shape = torch.Size(shape)
    return enumerate_tokens(int(torch.Size(shape).numel()), vocab, device).view(-1, *shape)


def pair_log_kernel(path, x: torch.Tensor, t: float | torch.Tensor, y: torch.Tensor, r: float | torch.Tensor,
                    chunk: int = 2048) -> torch.Tensor:
    """log p_{t|r}(x_b | y_s) for all pairs: x (B, *shape), y (S, *shape) -> (B, S) float64.
    t, r: scalars or (B,) tensors."""
    B, S = x.shape[0], y.shape[0]
    xf, yf = x.reshape(B, -1), y.reshape(S, -1)
    t = torch.as_tensor(t, dtype=torch.float64).expand(B)
    r = torch.as_tensor(r, dtype=torch.float64).expand(B)
    out = []
    for i in range(0, B, chunk):
        xs = xf[i:i + chunk, None, :]
        lp = path.site_log_kernel(xs, t[i:i + chunk, None, None], yf[None], r[i:i + chunk, None, None])
        out.append(lp.sum(-1))
    return torch.cat(out, 0)


def exact_denoiser(path, states: torch.Tensor, log_p: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
    """P(x_1^i = y | x_t), (B, *shape, N) float64."""
    post = torch.softmax(pair_log_kernel(path, x_t, t, states, 1.0) + log_p.double()[None], dim=1)  # (B, S)
    onehot = F.one_hot(states.reshape(states.shape[0], -1), path.vocab).double()  # (S, sites, N)
    D = torch.einsum("bs,sin->bin", post, onehot)
    return D.view(x_t.shape[0], *x_t.shape[1:], path.vocab)


def exact_intermediate_energy(path, states: torch.Tensor, log_p: torch.Tensor, x: torch.Tensor, r) -> torch.Tensor:
    """E_r(x) = −log Σ_{x_1} p_{r|1}(x | x_1) p(x_1), (B,) float64 (−log p_r exactly, no constant)."""
    return -torch.logsumexp(pair_log_kernel(path, x, r, states, 1.0) + log_p.double()[None], dim=1)
