"""Ground-truth samplers and exact results for L×L periodic lattice models (Ising, Potts).

Both models are written once in *token Potts form* on tokens x_i ∈ {0..q−1}:

    p(x) ∝ exp( K Σ_⟨ij⟩ 1[x_i = x_j] + Σ_i f[x_i] ),

summing over the 2L² bonds (i, i + x̂), (i, i + ŷ) of the torus (for L = 2 every neighbouring pair is
joined by two bonds, exactly as ``torch.roll`` counts them). Potts: K = βJ, f = 0. Ising with
s = 2x − 1 and E = β(−J Σ s_i s_j − h Σ s_i): since s_i s_j = 2·1[x_i = x_j] − 1, K = 2βJ and
f = (−βh, +βh) (constants dropped).

Samplers (all vectorized over chains with torch, randomness from the given generator):
* exact enumeration of all q^(L²) states (small lattices);
* parallel Gibbs over a proper colouring of the torus (checkerboard for even L, a greedy 3-colouring
  for odd L), many independent chains, burn-in then thinning;
* Swendsen–Wang (K > 0) with clusters found by min-label propagation and pointer jumping, cluster
  colours drawn with the field: P(colour k) ∝ exp(|C| f[k]).

Exact helpers for the Ising model: :func:`exact_distribution` (enumeration, L ≤ 4) and
:func:`transfer_matrix_moments` (row transfer matrix, float64, L ≤ 12).
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch
import torch.nn.functional as F

SAMPLER_METHODS = ("auto", "exact", "gibbs", "swendsen_wang")


# --------------------------------------------------------------------------- lattice helpers
def neighbour_count(onehot: torch.Tensor) -> torch.Tensor:
    """(n, L, L, q) one-hot -> (n, L, L, q) number of the 4 torus neighbours (bond slots) holding each token."""
    return (torch.roll(onehot, 1, 1) + torch.roll(onehot, -1, 1) + torch.roll(onehot, 1, 2)
            + torch.roll(onehot, -1, 2))


def equal_bonds(x: torch.Tensor) -> torch.Tensor:
    """Number of bonds with equal tokens, each of the 2L² bonds once. x: (n, L, L) -> (n,) float."""
    right = (x == torch.roll(x, -1, dims=-1))
    down = (x == torch.roll(x, -1, dims=-2))
    return (right.flatten(1).sum(-1) + down.flatten(1).sum(-1)).to(torch.float32)


def torus_colouring(L: int) -> torch.Tensor:
    """A proper vertex colouring of the L×L torus as (C, L, L) bool masks: checkerboard for even L,
    greedy row-major colouring (3 colours) for odd L. For L = 2 neighbours are still distinct sites."""
    if L % 2 == 0:
        ij = torch.arange(L)[:, None] + torch.arange(L)[None, :]
        return torch.stack([ij % 2 == 0, ij % 2 == 1])
    col = [[-1] * L for _ in range(L)]
    for i in range(L):
        for j in range(L):
            used = {col[(i + di) % L][(j + dj) % L] for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))}
            c = 0
            while c in used:
                c += 1
            col[i][j] = c
    col_t = torch.tensor(col)
    return torch.stack([col_t == c for c in range(int(col_t.max()) + 1)])


def enumerate_tokens(num_sites: int, q: int, device="cpu") -> torch.Tensor:
    """All q^num_sites token vectors, (q^num_sites, num_sites) long, lexicographic (last site fastest)."""
    idx = torch.arange(q ** num_sites, device=device)
    powers = q ** torch.arange(num_sites - 1, -1, -1, device=device)
    return (idx[:, None] // powers[None, :]) % q


def _gumbel_argmax(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-30, max=1 - 1e-7)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


# --------------------------------------------------------------------------- token Potts model
@attrs.frozen(kw_only=True)
class TokenPotts:
    """p(x) ∝ exp(K Σ_⟨ij⟩ 1[x_i = x_j] + Σ_i f[x_i]) on the L×L torus (see module docstring)."""

    L: int
    q: int
    K: float
    field: tuple[float, ...] = ()

    def field_tensor(self, device) -> torch.Tensor:
        f = self.field if self.field else (0.0,) * self.q
        return torch.tensor(f, dtype=torch.float32, device=device)

    def log_weight(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalized log p, (n,)."""
        f = self.field_tensor(x.device)
        return self.K * equal_bonds(x) + f[x].flatten(1).sum(-1)


@attrs.frozen(kw_only=True)
class SamplerSettings:
    """How :func:`sample_lattice` draws ground truth.

    ``method``: auto | exact | gibbs | swendsen_wang. ``burn_in``: sweeps before the first sample
    (None: 1000 for Gibbs, 200 for Swendsen–Wang). ``thin``: sweeps between samples of one chain.
    ``chains``: parallel chains (None: one chain per requested sample, so all samples are independent).
    """

    method: str = attrs.field(default="auto", validator=attrs.validators.in_(SAMPLER_METHODS))
    burn_in: int | None = None
    thin: int = 10
    chains: int | None = None

    def __attrs_post_init__(self):
        if self.burn_in is not None and (not isinstance(self.burn_in, int) or self.burn_in < 0):
            raise ValueError(f"burn_in must be an integer >= 0, got {self.burn_in!r}")
        if not isinstance(self.thin, int) or self.thin < 1:
            raise ValueError(f"thin must be an integer >= 1, got {self.thin!r}")
        if self.chains is not None and (not isinstance(self.chains, int) or self.chains < 1):
            raise ValueError(f"chains must be a positive integer, got {self.chains!r}")


def sample_exact(model: TokenPotts, n: int, generator: torch.Generator) -> torch.Tensor:
    """n i.i.d. samples by enumerating all q^(L²) states. -> (n, L, L) long on the generator's device."""
    device = generator.device
    states = enumerate_tokens(model.L * model.L, model.q, device).view(-1, model.L, model.L)
    logw = model.log_weight(states).double()
    probs = torch.softmax(logw, 0)
    idx = torch.multinomial(probs, n, replacement=True, generator=generator)
    return states[idx]


def gibbs_sweep(x: torch.Tensor, model: TokenPotts, colours: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One parallel Gibbs sweep: each colour class (an independent set) is resampled at once from
    P(x_i = k | rest) ∝ exp(K·#{neighbours = k} + f[k]). x: (n, L, L) long."""
    if model.q == 2:  # binary fast path: P(x_i = 1 | rest) = σ(K(2·n_1 − 4) + f[1] − f[0])
        f = model.field
        df = (f[1] - f[0]) if f else 0.0
        for c in range(colours.shape[0]):
            xf = x.to(torch.float32)
            n1 = torch.roll(xf, 1, 1) + torch.roll(xf, -1, 1) + torch.roll(xf, 1, 2) + torch.roll(xf, -1, 2)
            p1 = torch.sigmoid(model.K * (2 * n1 - 4) + df)
            new = (torch.rand(x.shape, generator=generator, device=x.device) < p1).long()
            x = torch.where(colours[c].to(x.device), new, x)
        return x
    f = model.field_tensor(x.device)
    for c in range(colours.shape[0]):
        onehot = F.one_hot(x, model.q).to(torch.float32)
        logits = model.K * neighbour_count(onehot) + f
        new = _gumbel_argmax(logits, generator)
        x = torch.where(colours[c].to(x.device), new, x)
    return x


def _cluster_labels(right: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """Connected components of the open bonds. right/down: (n, L, L) bool (bond (i,j)-(i,j+1) / (i+1,j)).
    -> (n, L·L) long, the smallest site index of each site's cluster."""
    n, L, _ = right.shape
    lab = torch.arange(L * L, device=right.device).view(1, L, L).expand(n, L, L).contiguous()
    big = L * L
    left = torch.roll(right, 1, 2)
    up = torch.roll(down, 1, 1)
    while True:
        cand = torch.minimum(
            torch.minimum(torch.where(right, torch.roll(lab, -1, 2), big), torch.where(left, torch.roll(lab, 1, 2), big)),
            torch.minimum(torch.where(down, torch.roll(lab, -1, 1), big), torch.where(up, torch.roll(lab, 1, 1), big)))
        new = torch.minimum(lab, cand).view(n, -1)
        for _ in range(3):  # pointer jumping: labels are site indices of the same cluster
            new = torch.gather(new, 1, new)
        new = new.view(n, L, L)
        if torch.equal(new, lab):  # host sync: fine for a ground-truth sampler
            return lab.view(n, -1)
        lab = new


def swendsen_wang_sweep(x: torch.Tensor, model: TokenPotts, generator: torch.Generator) -> torch.Tensor:
    """One Swendsen–Wang update (K ≥ 0): open each equal-token bond with probability 1 − e^{−K}, find the
    clusters, give each cluster C a new token k with probability ∝ exp(|C| f[k])."""
    n, L, _ = x.shape
    p = 1.0 - math.exp(-model.K)
    right = (x == torch.roll(x, -1, 2)) & (torch.rand(x.shape, generator=generator, device=x.device) < p)
    down = (x == torch.roll(x, -1, 1)) & (torch.rand(x.shape, generator=generator, device=x.device) < p)
    lab = _cluster_labels(right, down)
    size = torch.zeros(n, L * L, device=x.device).scatter_add_(1, lab, torch.ones(n, L * L, device=x.device))
    logits = size[..., None] * model.field_tensor(x.device)  # (n, L·L, q); only roots are used
    colour = _gumbel_argmax(logits, generator)
    return torch.gather(colour, 1, lab).view(n, L, L)


def run_chains(model: TokenPotts, n: int, generator: torch.Generator, method: str,
               settings: SamplerSettings) -> torch.Tensor:
    """n samples from ``chains`` parallel chains (burn-in, then one sample every ``thin`` sweeps)."""
    device = generator.device
    chains = min(n, settings.chains or n)
    per_chain = math.ceil(n / chains)
    if method == "gibbs":
        colours = torus_colouring(model.L).to(device)
        sweep: Callable = lambda x: gibbs_sweep(x, model, colours, generator)  # noqa: E731
        burn_in = 1000 if settings.burn_in is None else settings.burn_in
    elif method == "swendsen_wang":
        if model.K < 0:
            raise ValueError("Swendsen–Wang needs a ferromagnetic coupling (J > 0); use method='gibbs'")
        sweep = lambda x: swendsen_wang_sweep(x, model, generator)  # noqa: E731
        burn_in = 200 if settings.burn_in is None else settings.burn_in
    else:
        raise ValueError(f"unknown chain method {method!r}")
    x = torch.randint(0, model.q, (chains, model.L, model.L), generator=generator, device=device)
    for _ in range(burn_in):
        x = sweep(x)
    out = [x]
    for _ in range(per_chain - 1):
        for _ in range(settings.thin):
            x = sweep(x)
        out.append(x)
    return torch.cat(out, 0)[:n]


def method_text(method: str, model: TokenPotts, settings: SamplerSettings) -> str:
    if method == "exact":
        return f"exact enumeration of all {model.q}^{model.L * model.L} states, i.i.d. draws"
    kind = {"gibbs": ("parallel Gibbs over a " + ("checkerboard" if model.L % 2 == 0 else
                                                  f"{int(torus_colouring(model.L).shape[0])}-colouring")
                      + " of the torus", 1000),
            "swendsen_wang": ("Swendsen–Wang cluster updates", 200)}[method]
    burn = kind[1] if settings.burn_in is None else settings.burn_in
    chains = "one independent chain per sample" if settings.chains is None else f"{settings.chains} chains"
    return f"{kind[0]}: {chains}, burn-in {burn} sweeps, thinning {settings.thin} sweeps"


def sample_lattice(model: TokenPotts, n: int, generator: torch.Generator, method: str,
                   settings: SamplerSettings) -> torch.Tensor:
    """Dispatch to the sampler named ``method`` (already resolved from 'auto')."""
    if method == "exact":
        return sample_exact(model, n, generator)
    return run_chains(model, n, generator, method, settings)


# --------------------------------------------------------------------------- exact Ising results
def ising_energy_tokens(x: torch.Tensor, beta: float, J: float = 1.0, h: float = 0.0) -> torch.Tensor:
    """E(x) = β(−J Σ_⟨ij⟩ s_i s_j − h Σ_i s_i), s = 2x − 1, bonds (i, i+x̂), (i, i+ŷ) once each. -> (n,)"""
    s = (2 * x - 1).to(torch.float32)
    bonds = (s * torch.roll(s, -1, -1)).flatten(1).sum(-1) + (s * torch.roll(s, -1, -2)).flatten(1).sum(-1)
    return beta * (-J * bonds - h * s.flatten(1).sum(-1))


def exact_distribution(L: int, beta: float, J: float = 1.0, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2^(L²) Ising states (2^(L²), L, L) long and their probabilities (float64), L ≤ 4."""
    if not 1 <= L <= 4:
        raise ValueError(f"exact enumeration needs L <= 4 (2^(L^2) states), got L={L}")
    states = enumerate_tokens(L * L, 2).view(-1, L, L)
    s = (2 * states - 1).double()
    bonds = (s * torch.roll(s, -1, -1)).flatten(1).sum(-1) + (s * torch.roll(s, -1, -2)).flatten(1).sum(-1)
    e = beta * (-J * bonds - h * s.flatten(1).sum(-1))
    return states, torch.softmax(-e, 0)


def transfer_matrix_moments(L: int, beta: float, J: float = 1.0, h: float = 0.0) -> tuple[float, float]:
    """Exact ⟨E⟩ and Var(E) per configuration of the L×L periodic Ising model, E in the pinned
    convention (β included), from the row transfer matrix (float64, 2^L × 2^L, L ≤ 12).

    With H(s) = −J Σ s_i s_j − h Σ s_i and rows σ, σ' of L spins, T(σ, σ') = exp(−β M(σ, σ')),
    M = ½H_row(σ) + ½H_row(σ') − J Σ_j σ_j σ'_j, and Z = Tr T^L. In the eigenbasis T = V Λ Vᵀ, with
    A = Vᵀ T' V, B = Vᵀ T'' V (T' = −M∘T, T'' = M²∘T):
        Z' = L Σ_k λ_k^{L−1} A_kk,
        Z'' = L Σ_k λ_k^{L−1} B_kk + L Σ_{k,l} A_kl² Σ_{j=0}^{L−2} λ_k^j λ_l^{L−2−j}.
    Then ⟨H⟩ = −Z'/Z, Var H = Z''/Z − (Z'/Z)², ⟨E⟩ = β⟨H⟩, Var E = β² Var H. Eigenvalues are scaled
    by the largest |λ| (the scale cancels in the ratios), so nothing overflows.
    """
    if not isinstance(L, int) or not 2 <= L <= 12:
        raise ValueError(f"transfer matrix needs an integer 2 <= L <= 12, got {L!r}")
    rows = (2 * enumerate_tokens(L, 2) - 1).double()  # (2^L, L)
    h_row = -J * (rows * torch.roll(rows, -1, 1)).sum(1) - h * rows.sum(1)
    M = 0.5 * h_row[:, None] + 0.5 * h_row[None, :] - J * rows @ rows.T
    # shift M by its minimum for numerical range: T = exp(−β(M − m)) · exp(−βm); H shifts by L·m
    m = float(M.min())
    Ms = M - m
    T = torch.exp(-beta * Ms)
    lam, V = torch.linalg.eigh(T)
    scale = lam.abs().max()
    lam = lam / scale
    A = V.T @ (-Ms * T) @ V / scale
    B = V.T @ (Ms * Ms * T) @ V / scale
    Z = (lam ** L).sum()
    Z1 = L * (lam ** (L - 1) * torch.diagonal(A)).sum()
    # Σ_{j=0}^{L−2} λ_k^j λ_l^{L−2−j}
    j = torch.arange(L - 1, dtype=torch.float64)
    pk = lam[:, None] ** j[None, :]                       # (n, L−1): λ_k^j
    pl = lam[:, None] ** (L - 2 - j)[None, :]             # (n, L−1): λ_l^{L−2−j}
    S = pk @ pl.T                                         # (n, n)
    Z2 = L * (lam ** (L - 1) * torch.diagonal(B)).sum() + L * (A * A.T * S).sum()
    mean_h = -(Z1 / Z).item() + L * m                     # undo the shift: H = H_shifted + L·m
    var_h = (Z2 / Z - (Z1 / Z) ** 2).item()
    return beta * mean_h, beta * beta * max(var_h, 0.0)


def transfer_matrix_log_partition(L: int, beta: float, J: float = 1.0, h: float = 0.0) -> float:
    """Exact log Z = log Σ_s exp(−E(s)) of the L×L periodic Ising model (pinned convention, β included)
    from the row transfer matrix: Z = Tr T^L = Σ_k λ_k^L, T(σ, σ') = exp(−β M(σ, σ')) with M as in
    :func:`transfer_matrix_moments` (float64, 2^L × 2^L, L ≤ 12)."""
    if not isinstance(L, int) or not 2 <= L <= 12:
        raise ValueError(f"transfer matrix needs an integer 2 <= L <= 12, got {L!r}")
    rows = (2 * enumerate_tokens(L, 2) - 1).double()
    h_row = -J * (rows * torch.roll(rows, -1, 1)).sum(1) - h * rows.sum(1)
    M = 0.5 * h_row[:, None] + 0.5 * h_row[None, :] - J * rows @ rows.T
    m = float(M.min())
    lam = torch.linalg.eigvalsh(torch.exp(-beta * (M - m)))
    scale = lam.abs().max()
    return float(-beta * L * m + L * torch.log(scale) + torch.log(((lam / scale) ** L).sum()))
