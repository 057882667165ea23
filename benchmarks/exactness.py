"""Measurements of issue 9 (docs/results.md, "Exactness"): importance-weighted estimates from trained runs.

    python benchmarks/exactness.py ising RUN [-n N]               raw vs reweighted ⟨E⟩, ⟨|M|⟩, log Z vs exact
    python benchmarks/exactness.py modes RUN [-n N]               reweighted mode weights vs their noise floor
    python benchmarks/exactness.py mh RUN [--proposals P] [-n N]  MH-corrected E-W1 vs noise floor
    python benchmarks/exactness.py cost RUN [-n N] [--repeat R]   likelihood pass vs plain sampling (seconds)

Every subcommand reads the run (never writes to it) and prints one JSON object; copy its numbers, not
hand-edited ones. ⟨E⟩ of the Ising model is exact from the row transfer matrix (egm-discrete); ⟨|M|⟩ is
compared with the run's ground-truth sampler (Swendsen–Wang near β_c, 2n states, with its standard
error), because the transfer matrix in egm-discrete gives energy moments only. Noise floors: the same
metric for an exact (or ground-truth) sample of the same size, as everywhere in this project.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics as pystats
import time

import numpy as np
import torch

from egm_framework import exactness as ex
from egm_framework.evaluation import ground_truth_sets
from egm_framework.metrics import statistics, wasserstein_1d
from egm_framework.trainer import Trainer


def load(run: str) -> Trainer:
    return Trainer.open(run, device="cpu")  # read-only: takes no lock, writes nothing


def with_q(tr: Trainer, n: int, seed: int = 0, steps: int | None = None):
    g = torch.Generator().manual_seed(seed)
    s = ex.sample_with_log_prob(tr, n, steps or tr.cfg.eval.sample_steps, g)
    st = statistics(tr.comp.energy, s.x)
    return s, st, ex.log_weights(st["energy"], s.log_q)


def cmd_ising(args) -> dict:
    from egm_discrete.ground_truth import transfer_matrix_log_partition, transfer_matrix_moments

    tr = load(args.run)
    e = tr.comp.energy
    s, st, lw = with_q(tr, args.n, args.seed, args.steps)
    exact_e, _ = transfer_matrix_moments(e.L, e.beta, e.J, e.h)
    ref, ref2, method = ground_truth_sets(e, args.ref_n // 2, tr.cfg.eval.ground_truth_seed, "cpu")
    absm_ref = np.concatenate([statistics(e, ref)["abs_magnetization"], statistics(e, ref2)["abs_magnetization"]])
    out = {"run": args.run, "step": tr.step, "n": args.n, "ess_fraction": ex.ess_fraction(lw), **ex.log_z(lw),
           **ex.kl_estimates(lw), "exact_energy_transfer_matrix": exact_e,
           "exact_log_z_transfer_matrix": transfer_matrix_log_partition(e.L, e.beta, e.J, e.h),
           "abs_magnetization_reference": float(absm_ref.mean()),
           "abs_magnetization_reference_se": float(absm_ref.std(ddof=1) / math.sqrt(absm_ref.size)),
           "reference_method": method, "reference_n": int(absm_ref.size)}
    for k in ("energy", "abs_magnetization"):
        rm, rse = ex.raw_mean(st[k])
        wm, wse = ex.self_normalized(st[k], lw)
        out[k] = {"raw": rm, "raw_se": rse, "reweighted": wm, "reweighted_se": wse}
    return out


def _mode_assign(energy, x) -> tuple[np.ndarray, np.ndarray]:
    """(mode index per sample, exact mode weights) for GMM-type and GB-RBM energies."""
    if hasattr(energy, "mode_assignment"):  # gb_rbm: modes of v
        v = x[0].double().numpy()
        return energy.mode_assignment(v)[0], np.asarray(energy.mode_weights, dtype=np.float64)
    means = energy.means.double()
    idx = torch.cdist(x.double(), means).argmin(1).numpy()
    w = energy.weights.double().numpy()
    return idx, w / w.sum()


def _tv(idx, weights, p) -> float:
    emp = np.bincount(idx, weights=weights, minlength=len(p))
    emp = emp / emp.sum()
    return float(0.5 * np.abs(emp - p).sum())


def _exact_log_z(energy) -> float | None:
    """Known log Z: the GMM energies are normalized densities (log Z = 0); GB-RBM by enumeration of h."""
    if hasattr(energy, "log_partition"):
        return float(energy.log_partition)
    return 0.0 if type(energy).__name__ in ("GaussianMixtureEnergy", "GMM25Energy", "GMM40Energy") else None


def cmd_modes(args) -> dict:
    tr = load(args.run)
    e = tr.comp.energy
    s, st, lw = with_q(tr, args.n, args.seed, args.steps)
    idx, p = _mode_assign(e, s.x)
    wn = ex.normalized_weights(lw)
    floors = []
    for k in range(args.floor_repeats):  # exact samples of the same size
        gt = e.ground_truth(args.n, torch.Generator().manual_seed(1000 + k), "cpu")
        gi, _ = _mode_assign(e, gt)
        floors.append(_tv(gi, np.ones(args.n), p))
    return {"run": args.run, "step": tr.step, "n": args.n, "steps": args.steps,
            "ess_fraction": ex.ess_fraction(lw), **ex.log_z(lw), "exact_log_z": _exact_log_z(e),
            "mode_tv_raw": _tv(idx, np.ones(args.n), p), "mode_tv_reweighted": _tv(idx, wn, p),
            "mode_tv_floor_mean": float(np.mean(floors)), "mode_tv_floor_max": float(np.max(floors)),
            "floor_repeats": args.floor_repeats}


def cmd_mh(args) -> dict:
    tr = load(args.run)
    e = tr.comp.energy
    s, st, lw = with_q(tr, args.proposals, args.seed, args.steps)
    chain, acc = ex.independence_mh(lw, np.random.default_rng(args.seed))
    tau = ex.integrated_autocorr_time(st["energy"][chain])
    thin = max(1, args.proposals // args.n)
    picked = chain[::thin][: args.n]
    raw = st["energy"][: args.n]
    # every E-W1 below is the mean over `repeats` independent ground-truth pairs (seeds ground_truth_seed + k):
    # one 2,000-against-2,000 value scatters by ~25 %, more than the 1.5× the issue asks to resolve
    w_raw, w_mh, w_floor = [], [], []
    for k in range(args.repeats):
        ref, ref2, method = ground_truth_sets(e, args.n, tr.cfg.eval.ground_truth_seed + k, "cpu")
        er, er2 = statistics(e, ref)["energy"], statistics(e, ref2)["energy"]
        w_raw.append(wasserstein_1d(raw, er))
        w_mh.append(wasserstein_1d(st["energy"][picked], er))
        w_floor.append(wasserstein_1d(er2, er))
    mean = lambda v: float(np.mean(v))  # noqa: E731
    return {"run": args.run, "step": tr.step, "steps": args.steps, "proposals": args.proposals,
            "n": int(picked.size), "thin": thin, "repeats": args.repeats,
            "ess_fraction": ex.ess_fraction(lw), "acceptance_rate": acc, "energy_autocorr_time": tau,
            "E-W1_raw": mean(w_raw), "E-W1_mh": mean(w_mh), "E-W1_floor": mean(w_floor),
            "E-W1_floor_each": [round(float(v), 5) for v in w_floor], "mh_over_floor": mean(w_mh) / mean(w_floor),
            "ground_truth": method}


def cmd_cost(args) -> dict:
    tr = load(args.run)
    steps = args.steps or tr.cfg.eval.sample_steps
    tr.model.eval()

    def timed(fn):
        ts = []
        for r in range(args.repeat + 1):
            g = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            fn(g)
            ts.append(time.perf_counter() - t0)
        return pystats.median(ts[1:])  # the first call warms up

    def plain(g):
        with torch.no_grad():
            tr.sample(args.n, steps, generator=g)

    out = {"run": args.run, "n": args.n, "steps": steps, "repeat": args.repeat,
           "threads": torch.get_num_threads(), "plain_s": timed(plain)}
    out["with_log_prob_s"] = timed(lambda g: ex.sample_with_log_prob(tr, args.n, steps, g))
    out["ratio"] = out["with_log_prob_s"] / out["plain_s"]
    if tr.comp.generator.name in ("flow", "product"):
        out["hutchinson_2_probes_s"] = timed(lambda g: ex.sample_with_log_prob(tr, args.n, steps, g, exact_max_dim=0))
        out["hutchinson_ratio"] = out["hutchinson_2_probes_s"] / out["plain_s"]
    return out


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn in (("ising", cmd_ising), ("modes", cmd_modes), ("mh", cmd_mh), ("cost", cmd_cost)):
        c = sub.add_parser(name)
        c.add_argument("run")
        c.add_argument("-n", type=int, default=2000)
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--steps", type=int, help="integration steps (default: the run's eval.sample_steps)")
        c.set_defaults(fn=fn)
        if name == "ising":
            c.add_argument("--ref-n", type=int, default=4000, help="ground-truth states for ⟨|M|⟩")
        if name == "modes":
            c.add_argument("--floor-repeats", type=int, default=5)
        if name == "mh":
            c.add_argument("--proposals", type=int, default=20000)
            c.add_argument("--repeats", type=int, default=5, help="independent ground-truth pairs averaged")
        if name == "cost":
            c.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(json.dumps(args.fn(args), indent=2))


if __name__ == "__main__":
    main()
