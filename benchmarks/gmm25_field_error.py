"""Where does a trained GMM-25 flow lose its mode width? Compares the run's velocity field with the
exact marginal velocity of GMM-25 on the cond-OT path (closed form: p_t is a mixture of Gaussians),
and swaps in the exact field after a time τ to see which part of [0, 1] widens the modes.

    python benchmarks/gmm25_field_error.py RUN [RUN ...] [-n 2000] [--steps 1000]

Prints one JSON object per run: per t, the relative RMS error of the network's velocity on x_t ~ p_t
and the slope of (network − exact) against (x − the posterior mode mean), whose sign says whether the
network expands (> 0) or contracts (< 0) a mode more than the exact flow; then the median distance of
samples to their nearest mode centre (exact 1.18) when integrating the network on [0, τ] and the
exact field on [τ, 1]. Reads the runs only.
"""

from __future__ import annotations

import argparse
import json

import torch

from egm_framework.trainer import Trainer


def exact_field(energy, sigma0: float):
    means, s2 = energy.means.double(), energy.std ** 2

    def posterior(x, t):
        tt = t[:, None]
        var = tt * tt * s2 + sigma0 ** 2 * (1 - tt) ** 2  # (B, 1)
        d2 = ((x[:, None, :] - tt[:, :, None] * means[None]) ** 2).sum(-1)  # (B, M)
        resp = torch.softmax(-d2 / (2 * var), dim=1)
        return resp, var

    def endpoint(x, t):
        resp, var = posterior(x, t)
        tt = t[:, None]
        per = means[None] + (tt * s2 / var)[:, :, None] * (x[:, None, :] - tt[:, :, None] * means[None])
        return (resp[..., None] * per).sum(1), resp

    def velocity(x, t):
        xh, resp = endpoint(x, t)
        return (xh - x) / (1 - t[:, None]), resp

    return velocity, means


def sample_pt(energy, sigma0, t, n, g):
    x1 = energy.ground_truth(n, g).double()
    return t * x1 + (1 - t) * sigma0 * torch.randn(x1.shape, generator=g, dtype=torch.float64)


@torch.no_grad()
def analyse(run: str, n: int, steps: int) -> dict:
    tr = Trainer.open(run, device="cpu")
    energy, path = tr.comp.energy, tr.comp.path
    sigma0 = float(getattr(path, "sigma0", 1.0))
    vel, means = exact_field(energy, sigma0)
    gp = tr.comp.generator
    g = torch.Generator().manual_seed(0)

    def net_velocity(x, t):
        out = tr.model_fn(x.float(), t.float())
        return gp.field(path, x.float(), t.float(), out).double()  # velocity from either parametrization

    rows = []
    for tv in (0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99):
        t = torch.full((n,), tv, dtype=torch.float64)
        x = sample_pt(energy, sigma0, tv, n, g)
        v_ex, resp = vel(x, t)
        v_net = net_velocity(x, t)
        err = v_net - v_ex
        # displacement from the responsible mode's centre at time t
        dev = x - tv * means[resp.argmax(1)]
        slope = float((err * dev).sum() / (dev * dev).sum())
        rows.append({"t": tv, "rel_rms": float(err.pow(2).sum(1).mean().sqrt() / v_ex.pow(2).sum(1).mean().sqrt()),
                     "expansion_slope_error": round(slope, 4)})

    def simulate(tau: float) -> float:
        gs = torch.Generator().manual_seed(1)
        x = path.prior_sample(n, gs).double()
        h = 1.0 / steps
        for i in range(steps):
            t = torch.full((n,), i * h, dtype=torch.float64)
            v = vel(x, t.clamp(max=1 - 1e-6))[0] if i * h >= tau else net_velocity(x, t.clamp(path.train_time_range[0], path.train_time_range[1]))
            x = x + h * v
        d = torch.cdist(x.float(), means.float()).min(1).values
        return round(float(d.median()), 3)

    widths = {f"tau={tau}": simulate(tau) for tau in (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)}
    return {"run": run, "step": tr.step, "field": rows, "median_distance_net_then_exact": widths, "exact_median": 1.18}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for r in a.runs:
        print(json.dumps(analyse(r, a.n, a.steps)))


if __name__ == "__main__":
    main()
