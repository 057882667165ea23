"""Cost of one EGM training step against the bare energy evaluations it needs.

For Ising 10×10 (β = 0.4407) with B = 300 training points and K = 1000 proposals, prints:
  * seconds per training step (plain and bootstrapped), median of N timed steps after warm-up;
  * seconds for the B·K energy evaluations alone (the same chunks, states generated beforehand);
  * their ratio (target ≤ 2 for the plain step; the bootstrapped step needs 2·B·K evaluations for
    the direct intermediate-energy target plus the energy network on B·K states);
  * the peak memory of a step above the trainer's own footprint (target ≤ 0.5 GB):
    on CUDA torch.cuda.max_memory_allocated, on CPU the growth of the process's peak RSS.

Usage:  python benchmarks/step_time.py [--device cpu|cuda] [--steps 5] [--L 10] [--K 1000] [--B 300]
All numbers come from one run of this script; copy its output, not hand-edited numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch

from egm_framework.config import config_from_dict
from egm_framework.estimators import chunk_size_for, flatten_proposals
from egm_framework.trainer import Trainer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_trainer(kind: str, L: int, B: int, K: int, device: str, memory_mb: float) -> Trainer:
    cfg = {
        "name": f"bench-{kind}",
        "energy": {"name": "ising", "L": L, "beta": 0.4407},
        "path": {"name": "masked"}, "generator": {"name": "jump"},
        "network": {"name": "mlp", "hidden": 32, "layers": 3, "token_embedding": 8, "time_embedding": 32},
        "estimator": {"kind": kind, "num_proposals": K, "chunk_memory_mb": memory_mb},
        "train": {"batch_size": B, "buffer_size": 2000, "buffer_refresh": 2000, "buffer_sample_steps": 20,
                  "progress": False, "device": device},
    }
    if kind == "bootstrap":
        cfg["energy_network"] = {"name": "mlp", "hidden": 256, "layers": 3}
    import tempfile

    tr = Trainer(config_from_dict(cfg), tempfile.mkdtemp(prefix="egm-bench-"))
    # random lattices in the buffer: a step costs the same whatever x_1 is, and simulating the model
    # here would raise the process's peak memory above what a training step needs
    g = torch.Generator(device=tr.device).manual_seed(0)
    tr.buffer.add(torch.randint(0, 2, (2000, L, L), generator=g, device=tr.device))
    return tr


def time_steps(tr: Trainer, steps: int) -> tuple[float, float]:
    dev = tr.device
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()  # peak RSS so far: setup and buffer, no training step yet
    for _ in range(2):  # warm-up (includes the one-time energy check)
        tr.train_step()
    times = []
    for _ in range(steps):
        _sync(dev)
        t0 = time.perf_counter()
        tr.train_step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if dev.type == "cuda" else _rss_mb() - base
    return statistics.median(times), peak


def time_energy(tr: Trainer, B: int, K: int, repeats: int) -> float:
    """The B·K energy evaluations alone, in the estimator's chunking, on pre-generated proposals."""
    path, energy, dev = tr.comp.path, tr.comp.energy, tr.device
    x1 = tr.buffer.sample(B, tr.gen)
    t = torch.rand(B, generator=tr.gen, device=dev) * 0.999
    x_t = path.sample_xt(x1, t, tr.gen)
    r = torch.ones_like(t)
    k = chunk_size_for(x_t, K, tr.cfg.estimator.chunk_memory_mb)
    chunks = []
    done = 0
    while done < K:
        n = min(k, K - done)
        chunks.append(flatten_proposals(path.propose(x_t, t, r, n, tr.gen)))
        done += n
    def timed(batches):
        times = []
        with torch.no_grad():
            for _ in range(repeats + 1):
                _sync(dev)
                t0 = time.perf_counter()
                for c in batches:
                    energy(c)
                _sync(dev)
                times.append(time.perf_counter() - t0)
        return statistics.median(times[1:])

    chunked = timed(chunks)
    whole = torch.cat(chunks)
    one_shot = timed([whole])
    del whole
    return chunked, one_shot


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--L", type=int, default=10)
    ap.add_argument("--B", type=int, default=300)
    ap.add_argument("--K", type=int, default=1000)
    ap.add_argument("--memory-mb", type=float, default=256.0)
    ap.add_argument("--kinds", default="snis,bootstrap")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--quiet-header", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    results = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "L": args.L, "B": args.B, "K": args.K}
    if not args.quiet_header:
        print(f"Ising {args.L}x{args.L}, B={args.B}, K={args.K}, device={args.device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads", flush=True)
    kinds = args.kinds.split(",")
    if len(kinds) > 1:  # one process per kind: the CPU peak-RSS reading is per process
        import os
        import subprocess
        import tempfile

        for kind in kinds:
            fd, tmp = tempfile.mkstemp(suffix=".json")
            os.close(fd)
            cmd = [sys.executable, __file__, "--kinds", kind, "--json", tmp, "--quiet-header", "--device",
                   args.device, "--steps", str(args.steps), "--L", str(args.L), "--B", str(args.B), "--K",
                   str(args.K), "--memory-mb", str(args.memory_mb)]
            subprocess.run(cmd, check=True)
            with open(tmp) as fh:
                child = json.load(fh)
            results.setdefault("energy_seconds", child["energy_seconds"])
            results.setdefault("energy_one_shot_seconds", child["energy_one_shot_seconds"])
            results[kind] = child[kind]
    else:
        kind = kinds[0]
        tr = make_trainer(kind, args.L, args.B, args.K, args.device, args.memory_mb)
        step, peak = time_steps(tr, args.steps)  # first: the energy timing below allocates B·K states at once
        e_time, e_one_shot = time_energy(tr, args.B, args.K, repeats=args.steps)
        results["energy_seconds"] = e_time
        results["energy_one_shot_seconds"] = e_one_shot
        n_energy = 1 if kind == "snis" else 2  # bootstrap: bridge proposals + direct energy target
        ratio = step / e_time
        print(f"  {kind:9s} step: {step:.4f} s   B*K energy evaluations alone: {e_time:.4f} s in the estimator's "
              f"chunks ({e_one_shot:.4f} s as one batch)   "
              f"ratio = {ratio:.2f} (energy calls per step: {n_energy}*B*K, ratio per B*K = {ratio / n_energy:.2f})"
              f"   peak memory above footprint: {peak:.0f} MiB", flush=True)
        results[kind] = {"step_seconds": step, "energy_seconds": e_time, "energy_one_shot_seconds": e_one_shot,
                         "ratio": ratio,
                         "ratio_per_BK": ratio / n_energy, "peak_mib": peak}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
