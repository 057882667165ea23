"""The ``egm`` command line.

    egm train CONFIG.toml [--set key=value ...] [--out RUN_DIR]   train, checkpoint, evaluate, report
    egm train --resume RUN_DIR [--set train.outer_iterations=N]   continue from the last checkpoint
    egm sample RUN_DIR -n N -o FILE.pt|.npz                       draw samples from a trained run
    egm evaluate RUN_DIR [-n N] [--steps S]                       metrics vs ground truth, report
    egm estimate RUN_DIR [-n N] [--observable NAME ...]           log Z, ESS/n, reweighted observables
    egm sample RUN_DIR -n N -o FILE --correct {sir,mh}            bias-corrected samples (importance weights)
    egm demo [--out RUN_DIR]                                      train the embedded default (Ising 5×5)
    egm compare CONFIG [--budget-energy-evals N]                  EGM vs MCMC baselines at a matched budget
    egm plugins                                                   installed plugins (JSON)
    egm components [KIND] [--params] [--json]                     registered components (and their parameters)

Errors print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import ConfigError, EGMError

from .hookspecs import KIND_HOOKS

#: what `egm components KIND` accepts: each kind, its plural (from the hook name) and "space"
KINDS_CLI = {**{k: k for k in KIND_HOOKS}, **{h.removeprefix("register_"): k for k, h in KIND_HOOKS.items()},
             "space": "state_space"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors also exit 2, with a hint
        self.print_usage(sys.stderr)
        print(f"egm: error: {message} (see `egm {self.prog.split()[-1] if ' ' in self.prog else ''} --help`)".replace(
            "egm  --help", "egm --help"), file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="egm", description="Train neural samplers for Boltzmann densities by Energy-based Generator "
                "Matching.")
    p.add_argument("--version", action="version", version=f"egm-framework {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train a sampler from a TOML config (or resume a run)")
    t.add_argument("config", nargs="?", help="TOML config naming components by registry name")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    t.add_argument("--out", help="run folder (default: runs/<name>-<time>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("--device", help="cpu, cuda or auto (overrides train.device)")
    t.add_argument("--no-eval", action="store_true", help="skip the final evaluation")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="run folder")
    s.add_argument("-n", type=int, default=1000, help="number of samples")
    s.add_argument("-o", "--output", required=True, help="output file (.pt or .npz)")
    s.add_argument("--steps", type=int, help="integration steps (default: eval.sample_steps)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.add_argument("--correct", choices=("sir", "mh"),
                   help="remove the sampler's bias with its own likelihood: sampling-importance-resampling or an "
                        "independence Metropolis-Hastings chain (see docs/exactness.md)")

    x = sub.add_parser("estimate", help="importance-weighted estimates: log Z, ESS/n, raw vs reweighted observables "
                       "(writes RUN_DIR/estimate.json, nothing else)")
    x.add_argument("run", help="run folder")
    x.add_argument("-n", type=int, default=2000, help="number of model samples (default 2000)")
    x.add_argument("--observable", action="append", default=[], metavar="NAME",
                   help="observable of the energy to estimate (repeatable; default: all of them)")
    x.add_argument("--steps", type=int, help="integration steps (default: eval.sample_steps)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--device")

    e = sub.add_parser("evaluate", help="evaluate a trained run against ground truth and write its report")
    e.add_argument("run", help="run folder")
    e.add_argument("-n", type=int, help="number of samples (default: eval.num_samples)")
    e.add_argument("--steps", type=int, help="integration steps (default: eval.sample_steps)")
    e.add_argument("--device")

    d = sub.add_parser("demo", help="train and evaluate the embedded default (Ising 5×5, β = 0.2) on CPU")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    m = sub.add_parser("compare", help="EGM against MCMC baselines at a matched budget, as curves")
    m.add_argument("config", help="TOML config of the EGM run")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    m.add_argument("--out", help="output folder (default: runs/compare-<name>-<time>)")
    m.add_argument("--budget-energy-evals", type=float, metavar="N",
                   help="EGM trains until it has used N energy evaluations (default: the config's training)")
    m.add_argument("--budget-seconds", type=float, metavar="S",
                   help="EGM trains at most S seconds (with an energy budget: whichever ends first); the baselines "
                   "then also run EGM's seconds")
    m.add_argument("--baselines", help="comma-separated baseline names (default: every applicable one; "
                   "see `egm components baseline`)")
    m.add_argument("--chains", type=int, help="MCMC chains = samples per evaluation (default: train.batch_size)")
    m.add_argument("--metric", help="second metric to draw besides E-W1 (default: the task's own metric with a noise floor, "
                   "e.g. a mode-weight error, else an observable's W1)")
    m.add_argument("--points", type=int, default=12, help="evaluations per curve (default 12)")
    m.add_argument("--baseline-max-seconds", type=float, help="stop a baseline after this many seconds "
                   "(default: 2 × EGM's seconds + 60)")
    m.add_argument("--device")

    sub.add_parser("plugins", help="installed plugins as JSON")
    c = sub.add_parser("components", help="registered components")
    c.add_argument("kind", nargs="?", help=" | ".join(KIND_HOOKS))
    c.add_argument("--params", action="store_true",
                   help="list each component's parameters with their defaults (read from its factory)")
    c.add_argument("--json", action="store_true", help="JSON output (always includes the parameters)")
    return p


def demo_config_path() -> Path:
    return Path(str(resources.files("egm_framework") / "configs" / "demo.toml"))


def _run_dir(name: str, out: str | None) -> Path:
    if out:
        return Path(out)
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train(args) -> int:
    from .config import load_config
    from .metrics import format_metrics
    from .trainer import Trainer

    if args.resume:
        if args.config:
            raise ConfigError("pass either CONFIG or --resume RUN_DIR, not both")
        trainer = Trainer.resume(args.resume, device=args.device, overrides=args.overrides)
        print(f"resuming {args.resume} at step {trainer.step} (outer iteration {trainer.outer})", file=sys.stderr)
    else:
        if not args.config:
            raise ConfigError("egm train needs a CONFIG.toml (examples in configs/) or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
        run_dir = _run_dir(cfg.name, args.out)
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(f"{run_dir} already holds a trained run; use `egm train --resume {run_dir}` or "
                              "choose another --out")
        trainer = Trainer(cfg, run_dir, device=args.device)
    metrics = trainer.fit(evaluate_at_end=not args.no_eval)
    print(f"run folder: {trainer.run_dir}")
    if metrics:
        print(format_metrics(metrics))
        print(f"report: {trainer.run_dir / 'report.md'}")
    return 0


def _load_trainer(run: str, device: str | None):
    from .trainer import Trainer

    return Trainer.resume(run, device=device)


def _sample(args) -> int:
    import numpy as np
    import torch

    from .states import to_saveable

    if args.n < 1:
        raise ConfigError(f"-n must be ≥ 1, got {args.n}")
    out = Path(args.output)
    if out.suffix not in (".pt", ".npz"):
        raise ConfigError(f"-o {out}: use a .pt or .npz file name")
    trainer = _load_trainer(args.run, args.device)
    g = torch.Generator(device=trainer.device)
    g.manual_seed(args.seed)
    steps = args.steps or trainer.cfg.eval.sample_steps
    if args.correct:
        from .exactness import corrected_samples

        xs, info = corrected_samples(trainer, args.n, steps, g, args.correct, seed=args.seed)
        x = to_saveable(xs)
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()),
              file=sys.stderr)
    else:
        x = to_saveable(trainer.sample(args.n, steps, generator=g))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, **{k: v.numpy() for k, v in x.items()})
    else:
        torch.save(x, out)
    print(f"wrote {args.n} samples to {out}")
    return 0


def _evaluate(args) -> int:
    from .evaluation import evaluate_trainer
    from .metrics import format_metrics

    trainer = _load_trainer(args.run, args.device)
    m = evaluate_trainer(trainer, num_samples=args.n, steps=args.steps)
    print(format_metrics(m))
    print(f"report: {Path(args.run) / 'report.md'}")
    return 0


def _estimate(args) -> int:
    from .exactness import estimate, format_summary

    if args.n < 2:
        raise ConfigError(f"-n must be ≥ 2, got {args.n}")
    trainer = _load_trainer(args.run, args.device)
    r = estimate(trainer, args.n, args.steps or trainer.cfg.eval.sample_steps, seed=args.seed,
                 observables=args.observable or None)
    r["step"] = trainer.step
    out = Path(args.run) / "estimate.json"  # this command's own output; no other file of the run is touched
    tmp = out.with_name(".estimate.json.tmp")
    tmp.write_text(json.dumps(r, indent=2))
    tmp.replace(out)
    print(format_summary(r))
    print(f"wrote {out}")
    return 0


def _demo(args) -> int:
    ns = argparse.Namespace(config=str(demo_config_path()), overrides=args.overrides, out=args.out, resume=None,
                            device="cpu", no_eval=False)
    run_dir = Path(args.out)
    if (run_dir / "checkpoints" / "last.pt").exists():
        import shutil

        shutil.rmtree(run_dir)
    return _train(ns)


def _compare(args) -> int:
    from .compare import CompareSettings, run_compare
    from .config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.chains is not None and args.chains < 2:
        raise ConfigError(f"--chains must be ≥ 2, got {args.chains}")
    if args.points < 2:
        raise ConfigError(f"--points must be ≥ 2, got {args.points}")
    budget = args.budget_energy_evals
    if budget is not None and not (budget >= 1 and budget < 1e18):
        raise ConfigError(f"--budget-energy-evals must be a number ≥ 1, got {budget}")
    names = None
    if args.baselines is not None:
        names = tuple(n.strip() for n in args.baselines.split(",") if n.strip())
        if not names:
            raise ConfigError("--baselines needs at least one name (see `egm components baseline`)")
    settings = CompareSettings(budget_energy_evals=int(budget) if budget is not None else None,
                               budget_seconds=args.budget_seconds, baselines=names, chains=args.chains,
                               metric=args.metric, points=args.points, baseline_max_seconds=args.baseline_max_seconds)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_compare(cfg, out, settings, device=args.device)
    print((out / "compare.md").read_text())
    print(f"table: {out / 'compare.md'}  figure: {out / 'compare.png'}  EGM run: {out / 'egm'}")
    return 0


def _plugins(args) -> int:
    from .plugins import default_plugin_manager

    manager = default_plugin_manager()  # no registry: works even when components clash
    print(json.dumps([r.to_json() for r in manager.records.values()], indent=2))
    return 0


def _components(args) -> int:
    from .registry import get_registry

    reg = get_registry()
    kind = None
    if args.kind:
        kind = KINDS_CLI.get(args.kind)
        if kind is None:
            from .errors import did_you_mean

            raise ConfigError(f"unknown component kind {args.kind!r}; kinds are: {', '.join(KIND_HOOKS)}"
                              f"{did_you_mean(args.kind, list(KINDS_CLI))}")
    comps = reg.components(kind)
    if args.json:
        print(json.dumps([c.to_json() for c in comps], indent=2))
        return 0
    rows = [(c.kind, c.name + (f" ({', '.join(c.aliases)})" if c.aliases else ""), c.plugin, c.summary) for c in comps]
    widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(("KIND", "NAME", "PLUGIN"))]
    print(f"{'KIND':<{widths[0]}}  {'NAME':<{widths[1]}}  {'PLUGIN':<{widths[2]}}  SUMMARY")
    for c, r in zip(comps, rows):
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
        if args.params:
            print(f"{'':<{widths[0]}}  params: {_format_params(c.params()) or '(none)'}")
    failed = reg.manager.failed()
    for f in failed:
        print(f"warning: plugin {f.name!r} ({f.distribution or f.module}) failed to load: {f.error}", file=sys.stderr)
    return 0


def _format_params(params: list[dict]) -> str:
    return ", ".join(p["name"] if p["name"].startswith("**") else
                     f"{p['name']} (required)" if p["required"] else f"{p['name']}={json.dumps(p['default'])}"
                     for p in params)


COMMANDS = {"train": _train, "sample": _sample, "evaluate": _evaluate, "estimate": _estimate, "demo": _demo,
            "plugins": _plugins, "components": _components, "compare": _compare}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except EGMError as exc:
        print(f"egm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("egm: interrupted; the last checkpoint is kept (resume with `egm train --resume RUN_DIR`)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
