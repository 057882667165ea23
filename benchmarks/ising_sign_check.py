"""Does a trained masked-path Ising sampler's own proposal see both magnetization signs?

At the all-masked state (t = 0) the exact denoiser is P(+1) = 1/2 per site by symmetry, and the
sampler-proposal estimate (estimator.sampler_proposals) must find both signs to say so. For each
rounds/spacing pair C:γ this draws K completions of the all-masked lattice from the run's sampler
(``GeneratorParametrization.sample_completions``) and prints

  * ESS/K of the weights e^{−E} q_uniform/q_sampler,
  * the share of completions with M > 0, raw and weighted (exact: 1/2 for a symmetric target),
  * the weighted mean energy and the log mean weight (its value is log Z − log N^S up to the
    estimator's noise: a missing sign lowers it by about ln 2).

The run is only read. Example (the table "the first round decides the sign" in docs/results.md):

    python benchmarks/ising_sign_check.py runs/ising_hard/b04407/samp6/plain_b32_rb_sp8x16 \\
        --rounds 16:1 16:2 16:3 32:2 100:1
"""

from __future__ import annotations

import argparse
import math

import torch

from egm_framework.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--rounds", nargs="+", default=["16:1", "16:2"], help="C:γ pairs (rounds and spacing)")
    ap.add_argument("--k", type=int, default=512, help="completions per pair")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr = Trainer.open(args.run, device="cpu")  # read-only
    path, gp, energy = tr.comp.path, tr.comp.generator, tr.comp.energy
    if getattr(path, "name", "") != "masked" or path.vocab != 2:
        raise SystemExit(f"{args.run}: needs a run on the masked path with two tokens (an Ising run)")
    x_t = torch.full((1, *path.shape), path.mask_token, dtype=torch.long)
    t = torch.zeros(1)
    with torch.no_grad():
        d = torch.softmax(tr.model_fn(x_t, t).float(), -1).reshape(-1, path.vocab)
    print(f"{args.run}: the sampler's denoiser at the all-masked state, P(+1) per site: {d[:, 1].mean():.3f}"
          f" (exact 0.5)")
    print("| C:γ | ESS/K | P(M > 0) raw | P(M > 0) weighted | E weighted | log mean weight |\n|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(args.seed)
    for spec in args.rounds:
        c, _, g = spec.partition(":")
        C, gamma = int(c), float(g or 1)
        with torch.no_grad():
            x1, log_ratio = gp.sample_completions(tr.model_fn, path, x_t, t, args.k, C, gen, spacing=gamma)
        x1 = x1[0]
        E = energy(x1).double()
        lw = -E + log_ratio[0].double()
        w = torch.softmax(lw, 0)
        plus = ((2 * x1.flatten(1).double() - 1).mean(1) > 0).double()
        print(f"| {C}:{gamma:g} | {1 / (w ** 2).sum() / args.k:.3f} | {plus.mean():.3f} | {(w * plus).sum():.3f} | "
              f"{(w * E).sum():.2f} | {torch.logsumexp(lw, 0) - math.log(args.k):.2f} |")


if __name__ == "__main__":
    main()
