"""Where a DW-4 sampler's distance error comes from: basin populations, the sample spread, the prior.

    python benchmarks/dw4_diagnostics.py runs/hard/NAME [runs/hard/OTHER ...]
    python benchmarks/dw4_diagnostics.py runs/hard/NAME --prior-extra-std 0 1.5 1.82
    python benchmarks/dw4_diagnostics.py --gt-check

For each run (its samples.pt against its cached ground truth): distance W1 and E-W1, the
per-coordinate standard deviation, and the number of configurations with k = 0..6 of their six
pair distances in the inner well (r < d0 = 4). Quenching ground-truth states (gradient descent)
shows these counts label DW-4's metastable basins (k = 2: minimum energy −12.90, k = 4: −12.66,
k = 5: −11.73; odd counts other than 5 are mostly transition states), so the counts are the basin
populations.

``--prior-extra-std s ...`` resamples the run's network (2,000 samples, 1,000 Euler steps, seed 0) from
a VE prior widened to N(0, (σ_0² + s²) I), the t = 0 marginal's variance when the target's coordinates
have standard deviation s: it separates the error the approximate prior causes from the network's.

``--gt-check`` compares the ground-truth sampler's settings (MALA, 2,000 burn-in steps) with ten times
the burn-in, 2,000 states each: the distance W1 between them must sit at the noise floor.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch


def _energy():
    from egm_continuous.energies import DoubleWellEnergy

    return DoubleWellEnergy()


def _w1(a, b):
    from egm_continuous.energies import w1_1d

    return float(w1_1d(a, b))


def describe(e, x, gt, label: str) -> None:
    ds, dg = e.distances(x), e.distances(gt)
    counts = torch.bincount((ds < e.d0).sum(-1), minlength=7).tolist()
    gcounts = torch.bincount((dg < e.d0).sum(-1), minlength=7).tolist()
    with torch.no_grad():
        ew1 = _w1(e(x.float()), e(gt.float()))
    print(f"{label}: dist W1 {_w1(ds, dg):.3f}  E-W1 {ew1:.3f}  coordinate std {x.std(0).mean():.3f} "
          f"[ground truth {gt.std(0).mean():.3f}]\n    configurations by inner-pair count k = 0..6: {counts} "
          f"[ground truth {gcounts}]", flush=True)


def _ground_truth(run: Path):
    d = torch.load(run / "ground_truth.pt", map_location="cpu", weights_only=True)
    a = d["a"]
    return a["x"] if isinstance(a, dict) else a


def run_report(run: Path, extra_stds: list[float], n: int, steps: int) -> None:
    e = _energy()
    gt = _ground_truth(run)
    s = torch.load(run / "samples.pt", map_location="cpu", weights_only=True)
    describe(e, s["x"] if isinstance(s, dict) else s, gt, f"{run} (its samples.pt)")
    if not extra_stds:
        return
    from egm_framework.trainer import Trainer

    tr = Trainer.open(str(run), device="cpu")  # reads the run; writes nothing
    path = tr.comp.path
    if not hasattr(path, "prior_std"):
        sys.exit(f"{run}: the path {path.name!r} has an exact prior; --prior-extra-std is for the VE path")
    base = path.prior_std()
    original = path.prior_sample
    for extra in extra_stds:
        f = math.sqrt(base ** 2 + extra ** 2) / base

        def widened(k, generator, device="cpu", f=f):
            return f * original(k, generator, device)

        path.prior_sample = widened
        x = tr.sample(n, steps, generator=torch.Generator().manual_seed(0))
        describe(e, x, gt, f"    resampled from the prior widened by {f:.3f} (extra std {extra})")
    path.prior_sample = original


def gt_check() -> None:
    from egm_framework.mcmc import mala

    e = _energy()
    out = []
    for burn in (e.gt_burn_in, 10 * e.gt_burn_in):
        g = torch.Generator().manual_seed(1)
        x0 = 2.0 * torch.randn(e.gt_chains, e.dim, generator=g)
        res = mala(e, x0, 2000, g, burn_in=burn, thin=e.gt_thin, step_size=0.01, target_accept=0.6,
                   project=e._project)
        out.append(res.samples)
        print(f"burn-in {burn}: acceptance {res.acceptance:.3f}, step size {res.step_size:.4f}", flush=True)
    describe(e, out[0], out[1], f"burn-in {e.gt_burn_in} against {10 * e.gt_burn_in}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--prior-extra-std", type=float, nargs="*", default=[])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--gt-check", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.gt_check:
        gt_check()
    for run in args.runs:
        run_report(run, args.prior_extra_std, args.n, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
