"""Where a trained masked-path Ising sampler's error comes from, by time: the network's denoiser
against a high-K reference, and the finite-K bias of the indicator and conditional targets.

For each t of a grid, x_t = the masked-path corruption of ground-truth samples (the run's cached
ground_truth.pt); on the masked sites it reports, as the mean total-variation distance per site,
  * net: the network's denoiser D_θ(x_t, t) against the reference,
  * ind@K / rb@K: one estimate at the run's K with indicator / conditional targets against the
    reference (bias + noise of the regression target the network was trained on),
  * ind@K avg / rb@K avg: the average of ``--repeats`` such estimates (mostly bias),
  * ess: the reference weights' ESS / K_ref.
The reference is the conditional-target estimate at ``--k-ref`` proposals (its own error is about
the rb@K avg column scaled by √(K / K_ref)). With ``--ref-sampler K_S`` its proposals are instead
K_S completions drawn by a trained sampler (``--ref-run``, default the run itself) in ``--ref-rounds``
rounds of spacing ``--ref-spacing``, weighted by q_uniform/q_sampler (estimator.sampler_proposals): consistent for any network,
and at small t far better than uniform completions when the network is good (see ess_ref). Use one
``--ref-run`` for every run compared, so that they share the reference.

    python benchmarks/ising_denoiser_error.py runs/ising_hard/b02/rb/plain_rb --points 64
    python benchmarks/ising_denoiser_error.py RUN --ref-sampler 4096 --ref-rounds 32 --ref-run BEST_RUN
"""

from __future__ import annotations

import argparse
import json

import torch

from egm_framework.estimators import estimate_marginal
from egm_framework.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--points", type=int, default=64, help="x_t per time")
    ap.add_argument("--times", type=float, nargs="+", default=[0.02, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95])
    ap.add_argument("--k-ref", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--ref-sampler", type=int, default=0, help="K of a sampler-proposal reference (0: uniform)")
    ap.add_argument("--ref-rounds", type=int, default=32)
    ap.add_argument("--ref-spacing", type=float, default=2.0,
                    help="γ of the reference's rounds (estimator.sampler_proposal_spacing)")
    ap.add_argument("--ref-run", default=None, help="run whose sampler draws the reference (default: RUN)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr = Trainer.open(args.run, device="cpu")  # read-only
    path, gp, energy = tr.comp.path, tr.comp.generator, tr.comp.energy
    K = tr.cfg.estimator.num_proposals
    gt = torch.load(f"{args.run}/ground_truth.pt", weights_only=True)["a"]["x"]  # the first ground-truth set
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    efn = lambda x, r: energy(x)  # noqa: E731
    ref_model = (tr if args.ref_run is None else Trainer.open(args.ref_run, device="cpu")).model_fn

    def ref_proposals(x, t, k, g):
        with torch.no_grad():
            return gp.sample_completions(ref_model, path, x, t, k, args.ref_rounds, g, spacing=args.ref_spacing)
    for t in args.times:
        idx = torch.randint(0, gt.shape[0], (args.points,), generator=gen)
        tt = torch.full((args.points,), t)
        x_t = path.sample_xt(gt[idx], tt, gen)
        masked = path.active_sites(x_t)
        ones = torch.ones_like(tt)
        if args.ref_sampler:
            ref = estimate_marginal(path, gp, efn, x_t, tt, ones, args.ref_sampler, gen, memory_mb=256,
                                    conditional_fn=energy.conditional_logits, proposal_fn=ref_proposals)
        else:
            ref = estimate_marginal(path, gp, efn, x_t, tt, ones, args.k_ref, gen, memory_mb=256,
                                    conditional_fn=energy.conditional_logits)
        with torch.no_grad():
            net = torch.softmax(tr.model_fn(x_t, tt).float(), -1)

        def tv(a):
            return float(0.5 * (a - ref.target).abs().sum(-1)[masked].mean())

        row = {"t": t, "ess_ref": float(ref.ess.mean()), "net": tv(net)}
        for name, cond in (("ind", None), ("rb", energy.conditional_logits)):
            ests = [estimate_marginal(path, gp, efn, x_t, tt, ones, K, gen, conditional_fn=cond).target
                    for _ in range(args.repeats)]
            row[f"{name}@K"] = tv(ests[0])
            row[f"{name}@K avg"] = tv(torch.stack(ests).mean(0))
        rows.append(row)
        print(json.dumps(row), flush=True)
    cols = ["t", "net", "ind@K", "rb@K", "ind@K avg", "rb@K avg", "ess_ref"]
    ref_note = (f"sampler reference K_S = {args.ref_sampler} in {args.ref_rounds} rounds from {args.ref_run or args.run}"
                if args.ref_sampler else f"K_ref = {args.k_ref}")
    print(f"\nrun {args.run}, K = {K}, {ref_note}, {args.points} points per t, {args.repeats} repeats\n")
    print("| " + " | ".join(cols) + " |")
    print("|---" * len(cols) + "|")
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3g}" for c in cols) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "K": K, "k_ref": args.k_ref, "ref_sampler": args.ref_sampler,
                       "ref_rounds": args.ref_rounds, "ref_run": args.ref_run, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
