"""Ising 10×10: plain vs bootstrapped EGM at equal wall clock, on a shared CPU.

All runs of one call start together and train under the same ``train.max_seconds`` (one thread
each), so they share whatever the machine has left in the same proportion: that is what "equal
wall clock" means here. Steps and true-energy evaluations are reported beside the metrics, so the
comparison can also be read per step or per energy evaluation.

    python benchmarks/ising_boot_vs_plain.py --beta b03 --seconds 600 --variants plain boot \\
        --out runs/ising_hard

Variants (CPU-sized like benchmarks/cpu_results.sh: lattice_conv 32 × 4, buffer refresh 500):
  plain          configs/ising10_<beta>_plain.toml, B = 256, K = 512
  boot           configs/ising10_<beta>_boot.toml with the settings it shipped with before the Ising
                 measurements of docs/results.md (MLP 256 × 3 energy network, Δ = 0.01, indicator
                 targets), B = 128, K = 256, direct energy target on half the batch, energy EMA 0.99
  boot_shipped   the config file as it is now (teacher targets, cut 0.5, K = 16 bridged, 16 sampler
                 proposals in 8 rounds at r = 1 and for the direct energy target, lattice_conv energy
                 network, Δ = 0.1), B = 64; _k<K>, _b<B> as below (its settings were measured as
                 boot_conv_d0.1_k16_b32_e256_f4096_c0.5_rb_teach_sp16x8, whose K_e and K at r = 1 the
                 sampler proposals replace)
  boot_d<Δ>      the same with estimator.delta = Δ (e.g. boot_d0.1)
  boot_conv      energy network lattice_conv 8 × 2 with a summed scalar head instead of the MLP;
                 boot_conv<C>x<L> with C channels and L layers (e.g. boot_conv16x4: a receptive field of
                 9 × 9, the whole periodic 10 × 10 lattice, where 8 × 2 sees 5 × 5)
  suffixes _k<K>, _b<B> set the proposals and batch size, e.g. boot_d0.1_k64_b64, plain_k2048_b64;
                 boot_..._t<T> sets estimator.energy_t_min = T (bootstrapped energy target below T),
                 boot_..._e<K> estimator.energy_num_proposals = K (the direct energy target's own K),
                 boot_..._f<K> estimator.final_num_proposals = K (the r = 1 rows' own K),
                 boot_..._c<T> estimator.bootstrap_t_max = T (rows with t ≥ T take r = 1)
  a final _pow<p> sets the masked path's schedule to κ_t = t^p (path.schedule = {name = "poly", power = p}),
                 e.g. plain_b32_rb_sp8x16_pow2; it may precede _ema, _rb, _teach, _ess
  a final _sb<C> (bootstrapped) draws the K proposals of the rows with r < 1 from the sampler, to r, in C
                 rounds (estimator.sampler_bridges, sampler_bridge_steps), e.g. boot_conv_..._sp8x16g2_ema_sb4;
                 it may precede _seed only
  a last _seed<N> repeats a variant with train.seed = N, e.g. plain_b32_rb_sp8x16g2_seed1
  a final _ema adds the sampler EMA (train.ema_decay = 0.999; _ema0.99 another decay), e.g. plain_ema
  a final _rb uses Rao–Blackwellized targets (estimator.conditional_targets = true), e.g. plain_rb,
                 boot_d0.1_rb (then on the rows with r = 1 only)
  a final _teach uses the sampler network as teacher on the rows with r < 1
                 (estimator.teacher_targets = true), e.g. boot_conv_d0.1_k64_b64_rb_teach
  a final _sp<K>x<C>[g<γ>][t<T>] draws K sampler proposals in C rounds of spacing γ (default 1) for the
                 r = 1 estimates (plain rows, bootstrapped rows past the cut, the direct energy target) of
                 rows with t < T (default 1) instead of the path's (estimator.sampler_proposals,
                 sampler_proposal_spacing), e.g. plain_k4096_b32_rb_sp16x8t0.5, plain_b32_rb_sp8x16g2
  a final _ess allocates the proposals per time bin from the measured ESS
                 (estimator.proposal_allocation = "ess"), e.g. plain_rb_ess
Run folders go to OUT/<beta>/<tag>/; OUT/<beta>/results.md and results.json collect the rows of
every call. With --eval-every N each run also evaluates every N × 100 steps (outside its training
time); `python benchmarks/ising_boot_vs_plain.py --curves RUN...` then prints E-W1 and M-W1 over
their floors against training seconds and true-energy evaluations, and `--table RUN...` their end
points with the trained sampler's importance weights and log Z beside the exact one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["network.channels=32", "network.layers=4", "train.buffer_refresh=500", "eval.num_samples=2000",
          "train.progress=false", 'train.device="cpu"']
#: the plain and bootstrapped variants pin what the shipped files have changed since (sampler proposals, their
#: spacing, the sampler EMA, the teacher, the cut), so that every documented command reproduces its row;
#: suffixes switch them back on
PLAIN = ["train.batch_size=256", "estimator.num_proposals=512", "estimator.sampler_proposals=0",
         "estimator.sampler_proposal_spacing=1", "train.ema_decay=0"]
BOOT = ["train.batch_size=128", "estimator.num_proposals=256", "estimator.energy_batch_fraction=0.5",
        "estimator.energy_ema_decay=0.99", "estimator.energy_ema_start=0.0",
        # the bootstrap settings the configs shipped with before the measurements in docs/results.md
        # changed them (so every documented command reproduces its row); "boot_shipped" takes the file as is
        'energy_network={name="mlp", hidden=256, layers=3}', "estimator.delta=0.01",
        "estimator.conditional_targets=false", "estimator.teacher_targets=false", "estimator.bootstrap_t_max=1.0",
        "estimator.sampler_proposals=0", "estimator.sampler_bridges=false"]


#: energy network for "boot_conv*": a periodic CNN with a summed scalar head (8 channels × 2 layers:
#: fewer multiply-adds per proposal than the 256 × 3 MLP, and nearest-neighbour products are local)
CONV_ENERGY = ['energy_network={name="lattice_conv", channels=8, layers=2, pool="sum"}']


def variant_args(beta: str, v: str) -> tuple[str, list[str]]:
    import re

    sd = re.fullmatch(r"(.+)_seed(\d+)", v)
    if sd:  # a repeat with another training seed (train.seed; the ground truth stays the same)
        cfg, sets = variant_args(beta, sd.group(1))
        return cfg, sets + [f"train.seed={sd.group(2)}"]
    sb = re.fullmatch(r"(.+)_sb(\d+)", v)
    if sb:  # bootstrapped rows draw their bridge proposals from the sampler in C rounds
        cfg, sets = variant_args(beta, sb.group(1))
        return cfg, sets + ["estimator.sampler_bridges=true", f"estimator.sampler_bridge_steps={sb.group(2)}"]
    pw = re.fullmatch(r"(.+)_pow([0-9.]+)", v)
    if pw:  # the masked path's schedule κ_t = t^p (more rows with few sites unmasked for p > 1)
        cfg, sets = variant_args(beta, pw.group(1))
        return cfg, sets + [f'path.schedule={{name="poly", power={pw.group(2)}}}']
    sp = re.fullmatch(r"(.+)_sp(\d+)x(\d+)(?:g([0-9.]+))?(?:t([0-9.]+))?", v)
    if sp:  # sampler proposals: K_s completions in C rounds on the r = 1 estimates of rows with t < T
        cfg, sets = variant_args(beta, sp.group(1))
        sets = sets + [f"estimator.sampler_proposals={sp.group(2)}", f"estimator.sampler_proposal_steps={sp.group(3)}"]
        if sp.group(4):
            sets.append(f"estimator.sampler_proposal_spacing={sp.group(4)}")
        if sp.group(5):
            sets.append(f"estimator.sampler_proposal_t_max={sp.group(5)}")
        return cfg, sets
    if v.endswith("_teach"):  # the sampler network as teacher on the bootstrapped rows
        cfg, sets = variant_args(beta, v[:-6])
        return cfg, sets + ["estimator.teacher_targets=true"]
    if v.endswith("_ess"):  # proposals per time bin from the measured ESS (estimator.proposal_allocation)
        cfg, sets = variant_args(beta, v[:-4])
        return cfg, sets + ['estimator.proposal_allocation="ess"']
    if v.endswith("_rb"):  # conditional (Rao–Blackwellized) denoiser targets
        cfg, sets = variant_args(beta, v[:-3])
        return cfg, sets + ["estimator.conditional_targets=true"]
    em = re.fullmatch(r"(.+)_ema(0\.\d+)?", v)
    if em:  # any variant with the sampler EMA (train.ema_decay = 0.999, or the decay given)
        cfg, sets = variant_args(beta, em.group(1))
        return cfg, sets + [f"train.ema_decay={em.group(2) or 0.999}"]
    if v == "plain":
        return f"configs/ising10_{beta}_plain.toml", COMMON + PLAIN
    if v.startswith("plain_"):  # plain_k<K>_b<B>: other proposal and batch sizes
        sets = list(PLAIN)
        for part in v[6:].split("_"):
            key = {"k": "estimator.num_proposals", "b": "train.batch_size"}.get(part[:1])
            if key is None or not part[1:].isdigit():
                raise SystemExit(f"unknown variant part {part!r} in {v!r}")
            sets.append(f"{key}={part[1:]}")
        return f"configs/ising10_{beta}_plain.toml", COMMON + sets
    if v.startswith("boot_shipped"):  # the shipped bootstrap config, CPU batch sizes only
        rest, sets = v[12:], ["train.batch_size=64"]
        for part in [p for p in rest.split("_") if p]:
            key = {"k": "estimator.num_proposals", "b": "train.batch_size"}.get(part[0])
            if key is None:
                raise SystemExit(f"unknown variant part {part!r} in {v!r}")
            sets.append(f"{key}={part[1:]}")
        return f"configs/ising10_{beta}_boot.toml", COMMON + sets
    if v.startswith("boot"):
        rest, sets = v[4:], list(BOOT)
        cv = re.match(r"_conv(?:(\d+)x(\d+))?", rest)
        if cv:  # boot_conv: the 8 × 2 CNN energy network; boot_conv<C>x<L>: C channels, L layers
            size = [] if cv.group(1) is None else [
                f'energy_network={{name="lattice_conv", channels={cv.group(1)}, layers={cv.group(2)}, pool="sum"}}']
            rest, sets = rest[cv.end():], sets + (size or CONV_ENERGY)
        for part in [p for p in rest.split("_") if p]:
            key = {"d": "estimator.delta", "k": "estimator.num_proposals", "b": "train.batch_size",
                   "t": "estimator.energy_t_min", "e": "estimator.energy_num_proposals",
                   "f": "estimator.final_num_proposals", "c": "estimator.bootstrap_t_max"}.get(part[0])
            if key is None:
                raise SystemExit(f"unknown variant part {part!r} in {v!r}")
            sets.append(f"{key}={part[1:]}")
        else:
            return f"configs/ising10_{beta}_boot.toml", COMMON + sets
    raise SystemExit(f"unknown variant {v!r}; use plain or boot[_conv][_d<delta>][_k<K>][_b<batch>]")


def summarize(run: Path) -> dict:
    ev = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else None
    recs = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
    recs = [r for r in recs if "loss" in r]
    eloss = [r["energy_loss"] for r in recs if "energy_loss" in r]
    out = {"steps": recs[-1]["step"] if recs else 0, "train_s": recs[-1]["time"] if recs else 0,
           "energy_evals": recs[-1].get("energy_evals") if recs else None,
           "energy_loss_max": max(eloss) if eloss else None, "energy_loss_last": eloss[-1] if eloss else None}
    if ev:
        for k in ("E-W1", "M-W1", "|M|-W1", "E-mean"):
            out[k] = ev.get(k)
            out[k + "/floor"] = ev.get(k + "/floor")
    return out


def curve(run: Path) -> list[dict]:
    """The intermediate evaluations of a run made with --eval-every, each with the training seconds and
    true-energy evaluations of the log line at its step, then the final evaluation."""
    recs = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    points, last = [], {}
    for r in recs:
        if "loss" in r:
            last = r
        elif "eval" in r and last:
            points.append({"step": r["step"], "train_s": last["time"], "energy_evals": last.get("energy_evals"),
                           **{k: r["eval"].get(k) for k in ("E-W1", "E-W1/floor", "M-W1", "M-W1/floor")}})
    if (run / "eval.json").exists():
        ev = json.loads((run / "eval.json").read_text())
        points.append({"step": ev.get("step"), "train_s": ev.get("train_seconds"), "energy_evals": ev.get("energy_evals"),
                       **{k: ev.get(k) for k in ("E-W1", "E-W1/floor", "M-W1", "M-W1/floor")}})
    return points


def print_curves(runs: list[Path]) -> None:
    print("| run | step | train s | true-energy evals | E-W1 / floor | M-W1 / floor |\n|---|---|---|---|---|---|")
    for run in runs:
        if not (run / "metrics.jsonl").is_file():  # e.g. a shell glob that caught the .log files
            print(f"(skipped {run}: not a run folder with metrics.jsonl)", file=sys.stderr)
            continue
        for p in curve(run):
            ratio = lambda k: "-" if not p.get(k) or not p.get(k + "/floor") else f"{p[k] / p[k + '/floor']:.2f}"  # noqa: E731
            print(f"| {run.name} | {p['step']} | {p['train_s']:.0f} | {p['energy_evals']:.2g} | {ratio('E-W1')} | "
                  f"{ratio('M-W1')} |")


def print_table(runs: list[Path]) -> None:
    """End points of finished runs with the trained sampler's own importance weights (eval.json's
    exactness: ESS/n, KL(q‖p), log Z with its 95 % interval) beside the exact log Z (transfer matrix)."""
    import tomllib

    from egm_discrete.ground_truth import transfer_matrix_log_partition

    print("| β | run | steps | true-energy evals | sampler evals | E-W1 | M-W1 | \\|M\\|-W1 | E-mean [exact] | ESS/n | "
          "KL_rev | log Z [95 %] (exact) |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        if not (run / "eval.json").is_file():
            print(f"(skipped {run}: no eval.json)", file=sys.stderr)
            continue
        ev = json.loads((run / "eval.json").read_text())
        ex = ev.get("exactness", {})
        recs = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        sp = max((r.get("sampler_proposal_evals", 0) for r in recs if "loss" in r), default=0)
        e = tomllib.loads((run / "config.toml").read_text())["energy"]
        lz = transfer_matrix_log_partition(int(e["L"]), float(e["beta"]), float(e.get("J", 1.0)), float(e.get("h", 0.0)))
        fl = lambda k: f"{ev[k]:.3g} ({ev[k + '/floor']:.2g})"  # noqa: E731
        print(f"| {float(e['beta']):g} | {run.parent.name}/{run.name} | {ev['step']:,} | {ev['energy_evals']:.2g} | {sp:.2g} | {fl('E-W1')} | "
              f"{fl('M-W1')} | {fl('|M|-W1')} | {ev['E-mean']:.1f} [{ev['E-mean/reference']:.1f}] | "
              f"{ex.get('ess_fraction', float('nan')):.3g} | {ex.get('kl_reverse', float('nan')):.3g} | "
              f"{ex.get('log_z', float('nan')):.2f} [{ex.get('log_z_lo', float('nan')):.2f}, "
              f"{ex.get('log_z_hi', float('nan')):.2f}] ({lz:.2f}) |")


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--curves":  # print the curves of finished runs
        print_curves([Path(r) for r in sys.argv[2:]])
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--table":  # end points with importance weights
        print_table([Path(r) for r in sys.argv[2:]])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beta", required=True, choices=["b02", "b03", "b04407"])
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--variants", nargs="+", default=["plain", "boot"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs/ising_hard")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--eval-every", type=int, default=0,
                    help="evaluate every N outer iterations (100 steps) on --eval-samples samples, for a curve "
                         "of the metrics against seconds and energy evaluations (see --curves)")
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--tag", default=None, help="run folders go to OUT/<beta>/<tag>/<variant> (default: a time stamp)")
    a = ap.parse_args(argv)
    tag = a.tag or time.strftime("%Y%m%d-%H%M%S")
    out = a.out / a.beta / tag
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = []
    for v in a.variants:
        cfg, sets = variant_args(a.beta, v)
        cmd = [a.python, "-m", "egm_framework.cli", "train", cfg, "--out", str(out / v),
               "--set", f"train.max_seconds={a.seconds}"]
        if a.eval_every:
            cmd += ["--set", f"train.eval_every={a.eval_every}", "--set", f"train.eval_samples={a.eval_samples}"]
        for s in sets:
            cmd += ["--set", s]
        procs.append((v, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(out / f"{v}.log", "w"),
                                          stderr=subprocess.STDOUT)))
    for _, p in procs:
        p.wait()
    rows = []
    for v, p in procs:
        rows.append({"variant": v, "exit": p.returncode, **summarize(out / v)})
    res_file = out.parent / "results.json"
    old = json.loads(res_file.read_text()) if res_file.exists() else []
    cmd_line = "python benchmarks/ising_boot_vs_plain.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for r in rows:
        r["command"] = cmd_line
        r["folder"] = str(out / r["variant"])
    res_file.write_text(json.dumps(old + rows, indent=2))
    lines = ["| variant | steps | train s | true-energy evals | E-W1 (floor) | M-W1 (floor) | E-mean | max energy loss |",
             "|---|---|---|---|---|---|---|---|"]
    f = lambda x: "-" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))  # noqa: E731
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | {f(r['train_s'])} | {f(r['energy_evals'])} | "
                     f"{f(r.get('E-W1'))} ({f(r.get('E-W1/floor'))}) | {f(r.get('M-W1'))} ({f(r.get('M-W1/floor'))}) | "
                     f"{f(r.get('E-mean'))} | {f(r['energy_loss_max'])} |")
    md = f"Command: `{cmd_line}`\n\n" + "\n".join(lines) + "\n"
    with open(out.parent / "results.md", "a") as fh:
        fh.write(md + "\n")
    print(md)
    return 0 if all(p.returncode == 0 for _, p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
