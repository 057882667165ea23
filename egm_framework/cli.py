"""The ``egm`` command line.

    egm train CONFIG.toml [--set key=value ...] [--out RUN_DIR]   train, checkpoint, evaluate, report
    egm train --resume RUN_DIR [--set train.outer_iterations=N]   continue from the last checkpoint
    egm sample RUN_DIR -n N -o FILE.pt|.npz [--force]             draw samples from a trained run (read-only)
    egm evaluate RUN_DIR [-n N] [--steps S] [--out DIR]           metrics vs ground truth, report
    egm estimate RUN_DIR [-n N] [--observable NAME ...]           log Z, ESS/n, reweighted observables
    egm sample RUN_DIR -n N -o FILE --correct {sir,mh}            bias-corrected samples (importance weights)
    egm demo [--out RUN_DIR] [--force]                            train the embedded default (Ising 5×5)
    egm compare CONFIG [--budget-energy-evals N]                  EGM vs MCMC baselines at a matched budget
    egm plugins                                                   installed plugins (JSON)
    egm components [KIND] [--params] [--json]                     registered components (and their parameters)

Errors print one line and exit with status 2; no traceback. Reading a run (sample, evaluate) never
writes its config, log or checkpoints; see :mod:`egm_framework.runfolder` for the run-folder rules.
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
    def error(self, message):  # usage errors also exit 2: one line with a hint
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
    t.add_argument("--force", action="store_true",
                   help="reuse a non-empty --out: remove the run files egm writes there (other files are kept)")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="run folder")
    s.add_argument("-n", type=int, default=1000, help="number of samples")
    s.add_argument("-o", "--output", required=True, help="output file (.pt or .npz)")
    s.add_argument("--steps", type=int, help="integration steps (default: eval.sample_steps)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")
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
    e.add_argument("--out", help="write eval.json, report.md and figures here instead of into the run folder "
                   "(needed for a read-only run folder)")

    d = sub.add_parser("demo", help="train and evaluate the embedded default (Ising 5×5, β = 0.2) on CPU")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--force", action="store_true",
                   help="reuse a non-empty --out: remove the run files egm writes there (other files are kept)")

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
    m.add_argument("--egm-max-seconds", type=float, metavar="S",
                   help="stop EGM's training after S seconds even if the energy budget is not used up; the baselines "
                   "then match the energy evaluations EGM did use (unlike --budget-seconds, not its seconds)")
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
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"  # name is a plain name (config checks it)


def _int_arg(value: int | None, flag: str, lo: int, hi: int = 2**63 - 1, why: str = "") -> None:
    if value is not None and not lo <= value <= hi:
        rng = f"≥ {lo}" if value < lo else f"in [{lo}, {hi}]"
        raise ConfigError(f"{flag} must be {rng}{why}, got {value}")


def _check_device(device: str | None) -> None:
    if device is not None:
        from .config import check_device_name

        check_device_name(device, "--device")


def _train(args) -> int:
    from .distributed import shutdown

    try:  # under torchrun every rank runs this; rank 0 alone writes and prints (docs/scaling.md)
        return _train_rank(args)
    finally:
        shutdown()


def _train_rank(args) -> int:
    from .config import load_config
    from .distributed import DataParallelTrainer as Trainer
    from .metrics import format_metrics
    from .runfolder import RunFolder

    _check_device(args.device)
    if args.resume:
        if args.config:
            raise ConfigError("pass either CONFIG or --resume RUN_DIR, not both")
        if args.out or args.force:
            raise ConfigError("--resume continues the run in its own folder; drop --out / --force")
        trainer = Trainer.resume(args.resume, device=args.device, overrides=args.overrides)
        if trainer.is_main:
            print(f"resuming {args.resume} at step {trainer.step} (outer iteration {trainer.outer})", file=sys.stderr)
    else:
        if not args.config:
            raise ConfigError("egm train needs a CONFIG.toml (examples in configs/) or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
        folder = RunFolder(_run_dir(cfg.name, args.out))
        trainer = Trainer(cfg, folder, device=args.device)  # builds and checks everything; writes nothing
        if trainer.is_main:  # the other ranks of a data-parallel run never touch the folder
            folder.prepare_new(force=args.force, command=getattr(args, "command_name", "egm train"))
    metrics = trainer.fit(evaluate_at_end=not args.no_eval)
    if not trainer.is_main:
        return 0
    print(f"run folder: {trainer.run_dir}")
    if metrics:
        print(format_metrics(metrics))
        print(f"report: {trainer.run_dir / 'report.md'}")
    return 0


def _load_trainer(run: str, device: str | None):
    """The trained run for reading: nothing in the run folder is written."""
    from .trainer import Trainer

    return Trainer.open(run, device=device)


def _sample(args) -> int:
    import torch

    from .sampling import check_output_path, write_samples
    from .states import to_saveable

    _int_arg(args.n, "-n", 1)
    _int_arg(args.steps, "--steps", 1)
    _int_arg(args.seed, "--seed", 0)
    _check_device(args.device)
    from .runfolder import RunFolder

    RunFolder(args.run).require_run()
    out = check_output_path(Path(args.output), force=args.force)
    trainer = _load_trainer(args.run, args.device)
    g = torch.Generator(device=trainer.device)
    g.manual_seed(args.seed)
    steps = args.steps or trainer.cfg.eval.sample_steps
    if args.correct:
        from .exactness import corrected_samples
        from .sampling import save_samples

        xs, info = corrected_samples(trainer, args.n, steps, g, args.correct, seed=args.seed)
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()),
              file=sys.stderr)
        save_samples(to_saveable(xs), out)
    else:
        write_samples(trainer, args.n, steps, g, out)
    print(f"wrote {args.n} samples to {out}")
    return 0


def _evaluate(args) -> int:
    from .evaluation import evaluate_trainer
    from .metrics import format_metrics
    from .runfolder import RunFolder, RunFolderError

    _int_arg(args.n, "-n", 2, why=" (metrics compare two sets of samples)")
    _int_arg(args.steps, "--steps", 1)
    _check_device(args.device)
    folder = RunFolder(args.run).require_run()
    out = Path(args.out) if args.out else folder.path
    if args.out:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is an existing file; pass a folder for eval.json, report.md and figures")
        if out.resolve() != folder.path.resolve() and (out / "config.toml").exists():
            raise ConfigError(f"--out {out} holds another run (config.toml); pass an empty or new folder")
    elif not folder.writable():
        raise RunFolderError(f"run folder {folder.path} is read-only, so its report cannot be written there; pass "
                             "--out DIR to write eval.json, report.md and figures elsewhere")
    trainer = _load_trainer(args.run, args.device)
    m = evaluate_trainer(trainer, num_samples=args.n, steps=args.steps, out_dir=out)
    print(format_metrics(m))
    print(f"report: {out / 'report.md'}")
    return 0


def _estimate(args) -> int:
    from .exactness import estimate, format_summary

    _int_arg(args.n, "-n", 2)
    _int_arg(args.steps, "--steps", 1)
    _int_arg(args.seed, "--seed", 0)
    _check_device(args.device)
    trainer = _load_trainer(args.run, args.device)
    r = estimate(trainer, args.n, args.steps or trainer.cfg.eval.sample_steps, seed=args.seed,
                 observables=args.observable or None)
    r["step"] = trainer.step
    out = Path(args.run) / "estimate.json"  # this command's own output; no other file of the run is touched
    from .runfolder import atomic_write, describe_os_error, dumps_json

    text = dumps_json(r, indent=2).encode()  # valid JSON: a non-finite value is null plus a note
    print(format_summary(r))
    try:
        atomic_write(out, lambda fh: fh.write(text))
    except OSError as exc:
        raise describe_os_error(exc, str(out), "the summary above is not saved; make the run folder writable"
                                ) from None
    print(f"wrote {out}")
    return 0


def _demo(args) -> int:
    """Never deletes a folder: an existing non-empty --out is refused unless --force, and --force
    removes only the run files egm writes (see RunFolder.prepare_new)."""
    ns = argparse.Namespace(config=str(demo_config_path()), overrides=args.overrides, out=args.out, resume=None,
                            device="cpu", no_eval=False, force=args.force, command_name="egm demo")
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
                               metric=args.metric, points=args.points, baseline_max_seconds=args.baseline_max_seconds,
                               egm_max_seconds=args.egm_max_seconds)
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
    except OSError as exc:  # the environment (permissions, full disk, missing path), not a bug
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"egm: error: {exc.strerror or exc}{where}; check the path, its permissions and the free space",
              file=sys.stderr)
        return 2
    except Exception as exc:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's, without importing it
            print(f"egm: error: out of memory ({type(exc).__name__}); lower train.batch_size, the state size, the "
                  "network size or -n", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("egm: interrupted; the last checkpoint is kept (resume with `egm train --resume RUN_DIR`)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
