"""The fault suite: every kind of bad input, broken plugin, damaged run folder and hostile
environment we know of, thrown at the `egm` command line.

Each fault is declared once in FAULTS (what is wrong, the command, what the user must see) and run
by ``test_fault``, which asserts:

* the exit status (2 for an error, 0 where the fault is handled correctly);
* for an error: exactly one line ``egm: error: ...`` on stderr that contains the fragments naming
  the problem and the fix, and no traceback;
* that no file of the run folder changed, except the ones the fault declares (``changes``).

``docs/reliability.md`` holds the table generated from FAULTS; ``test_reliability_doc_is_current``
fails when it is stale (regenerate: ``EGM_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/faults -k doc``).

Speed: commands run through ``runner.py``, a fork server that imports torch and egm once and runs
each command in a forked child through ``egm_framework.cli:main`` (the ``egm`` console script's
entry point) with its own folder and environment. The faults that need a real process of their own
(a second writer running at the same time) start ``python -m egm_framework.cli``; read-only folders
and a full disk are set up by the runner in the child before ``egm`` starts. A
trained tiny run is shared by all faults (each gets a fresh copy).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import attrs
import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = HERE.parent / "fixtures"
DOC = ROOT / "docs" / "reliability.md"
BAD_PLUGINS = {"EGM_PLUGINS": "egm_bad_energies", "PYTHONPATH": str(FIXTURES)}

TINY = """name = "tiny"
[energy]
name = "ising"
L = 3
beta = 0.3
[path]
name = "masked"
[generator]
name = "jump"
[network]
name = "mlp"
hidden = 16
layers = 2
[estimator]
num_proposals = 8
[train]
batch_size = 8
outer_iterations = 2
inner_iterations = 2
buffer_size = 32
buffer_refresh = 16
log_every = 1
progress = false
device = "cpu"
[eval]
num_samples = 32
figures = false
"""


# ------------------------------------------------------------------------------------ machinery
class Runner:
    """Client of runner.py (one per session)."""

    def __init__(self, workdir: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "runner.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=workdir)
        self.workdir = workdir
        self.count = 0

    def run(self, argv: list[str], cwd: Path, env: dict | None = None, **hostile) -> subprocess.CompletedProcess:
        """``hostile``: readonly=[DIR], readonly_after=[FILE, DIR], fsize_limit=N (see runner.py)."""
        self.count += 1
        out, err = self.workdir / f"out-{self.count}", self.workdir / f"err-{self.count}"
        req = {"argv": [str(a) for a in argv], "cwd": str(cwd), "env": env or {}, "stdout": str(out),
               "stderr": str(err), **{k: v if isinstance(v, int) else [str(e) for e in v] for k, v in hostile.items()}}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        rc = json.loads(self.proc.stdout.readline())["rc"]
        return subprocess.CompletedProcess(argv, rc, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def snapshot(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def changed_files(before: dict, after: dict) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


@attrs.define
class Ctx:
    tmp: Path
    run: Path          # a fresh copy of the trained fixture run
    cfg: Path          # the tiny config
    fixture: Path      # the trained fixture run itself (never modified)
    runner: Runner
    data: dict = attrs.field(factory=dict)

    def write_cfg(self, text: str, name: str = "c.toml") -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p

    def egm(self, *argv, env=None) -> subprocess.CompletedProcess:
        return self.runner.run(list(argv), self.tmp, env)


@attrs.frozen
class Fault:
    kind: str                      # short id, unique
    area: str                      # group in the doc table
    what: str                      # the fault, in words
    argv: Callable[[Ctx], list]    # the egm command (after setup)
    says: tuple[str, ...] = ()     # fragments of the message naming the problem
    fix: str = ""                  # fragment naming the fix (required for errors)
    rc: int = 2
    setup: Callable[[Ctx], None] | None = None
    env: dict | None = None
    changes: tuple[str, ...] = ()  # run files allowed to change (fnmatch patterns)
    check: Callable[[Ctx, subprocess.CompletedProcess], None] | None = None
    process: Callable[[Ctx], subprocess.CompletedProcess] | None = None  # runs the fault itself
    outcome: str = ""              # for rc 0: what happens, for the doc
    started: bool = False          # the error comes after training started (the run folder exists)


def cfg_replace(old: str, new: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        assert old in TINY
        ctx.write_cfg(TINY.replace(old, new))
    return setup


def cfg_append(extra: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.write_cfg(TINY + extra)


def train_cmd(*extra) -> Callable[[Ctx], list]:
    return lambda ctx: ["train", ctx.tmp / "c.toml", "--out", ctx.tmp / "new", *extra]


def with_cfg(setup: Callable[[Ctx], None], *extra) -> dict:
    return {"setup": setup, "argv": train_cmd(*extra)}


def bad_energy(name: str) -> dict:
    return {"setup": cfg_replace('name = "ising"\nL = 3\nbeta = 0.3', f'name = "{name}"'), "argv": train_cmd(),
            "env": BAD_PLUGINS, "started": True}


def edit_checkpoint(fn: Callable[[dict], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        p = ctx.run / "checkpoints" / "last.pt"
        d = torch.load(p, weights_only=True)
        fn(d)
        torch.save(d, p)
        ctx.data["before"] = snapshot(ctx.run)
    return setup


def edit_text(rel: str, fn: Callable[[str], str]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        p = ctx.run / rel
        p.write_text(fn(p.read_text()))
        ctx.data["before"] = snapshot(ctx.run)
    return setup


def readonly_process(ctx: Ctx, argv: list) -> subprocess.CompletedProcess:
    """`egm ARGV` with the run folder read-only (for root: a read-only bind mount, see runner.py)."""
    try:
        return ctx.runner.run(argv, ctx.tmp, readonly=[ctx.run])
    finally:
        if os.geteuid() != 0:
            for p in [ctx.run, *ctx.run.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)


# ------------------------------------------------------------------------------------ extra checks
def _json_strict(path: Path) -> dict:
    def no_constants(c):
        raise AssertionError(f"{path} holds the non-JSON constant {c}")
    return json.loads(path.read_text(), parse_constant=no_constants)


def _check_sample_file(n: int, name: str = "s.pt"):
    def check(ctx: Ctx, res) -> None:
        x = torch.load(ctx.tmp / name, weights_only=True)["x"]
        assert x.shape == (n, 3, 3) and x.dtype == torch.long
    return check


def _check_demo_force(ctx: Ctx, res) -> None:
    out = ctx.tmp / "demo"
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoints" / "mine.txt").read_text() == "mine too"
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 1


def _setup_demo_folder(ctx: Ctx) -> None:
    out = ctx.tmp / "demo"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"an old checkpoint")
    (out / "checkpoints" / "mine.txt").write_text("mine too")
    (out / "notes.txt").write_text("mine")


DEMO_FAST = ["--set", "train.outer_iterations=1", "--set", "train.inner_iterations=1", "--set", "train.batch_size=4",
             "--set", "estimator.num_proposals=4", "--set", "train.buffer_size=8", "--set", "train.buffer_refresh=4",
             "--set", "network.channels=4", "--set", "network.layers=1", "--set", "eval.num_samples=8",
             "--set", "eval.figures=false", "--set", "train.progress=false"]


def _check_demo_refused(ctx: Ctx, res) -> None:
    assert snapshot(ctx.tmp / "demo") == ctx.data["demo"]


def _snap_demo(ctx: Ctx) -> None:
    _setup_demo_folder(ctx)
    ctx.data["demo"] = snapshot(ctx.tmp / "demo")


def _append_metrics_after_checkpoint(ctx: Ctx) -> None:
    with open(ctx.run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 999, "outer": 99, "loss": 0.5}) + "\n")
    ctx.data["before"] = snapshot(ctx.run)


def _checkpoint_from_older_version(ctx: Ctx) -> None:
    """The checkpoint's stored config as a version without estimator.sampler_proposal_spacing wrote it."""
    import torch

    ck = ctx.run / "checkpoints" / "last.pt"
    state = torch.load(ck, weights_only=True)
    cfg = json.loads(state["config"])
    assert cfg["estimator"].pop("sampler_proposal_spacing") == 1.0
    state["config"] = json.dumps(cfg)
    torch.save(state, ck)
    ctx.data["before"] = snapshot(ctx.run)


def _check_resume_recorded(ctx: Ctx, res) -> None:
    cfg = (ctx.run / "config.toml").read_text()
    assert "outer_iterations = 3" in cfg
    recs = [json.loads(line) for line in (ctx.run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in recs if "loss" in r]
    assert 999 not in steps and steps == sorted(set(steps)) and steps[-1] == 6
    resumes = [json.loads(line) for line in (ctx.run / "resumes.jsonl").read_text().splitlines()]
    assert resumes[-1]["overrides"] == ["train.outer_iterations=3"] and resumes[-1]["step"] == 4
    ck = torch.load(ctx.run / "checkpoints" / "last.pt", weights_only=True)
    assert json.loads(ck["config"])["train"]["outer_iterations"] == 3


def _hold_lock(ctx: Ctx) -> None:
    from egm_framework.runfolder import RunFolder

    folder = RunFolder(ctx.run)
    folder.acquire_lock()
    ctx.data["lock"] = folder
    ctx.data["before"] = snapshot(ctx.run)


def _check_lock_named(ctx: Ctx, res) -> None:
    assert f"pid {os.getpid()}" in res.stderr
    ctx.data.pop("lock").release_lock()


def _stale_lock(ctx: Ctx) -> None:
    (ctx.run / ".egm.lock").write_text("999999999 elsewhere 2026-01-01T00:00:00\n")


def _two_trainings(ctx: Ctx) -> subprocess.CompletedProcess:
    cfg = ctx.write_cfg(TINY.replace("outer_iterations = 2", "outer_iterations = 2000"))
    out = ctx.tmp / "both"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "egm_framework.cli", "train", str(cfg), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists():  # the first is training (it holds the lock)
            assert first.poll() is None and time.time() < deadline, "first training did not start"
            time.sleep(0.05)
        ctx.data["first_pid"] = first.pid
        before = snapshot(out)
        res = ctx.egm("train", cfg, "--out", out, "--force")
        ctx.data["second_changed"] = {f for f in changed_files(before, snapshot(out))
                                      if not f.startswith(("metrics.jsonl", "checkpoints/"))}
        return res
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def _check_two_trainings(ctx: Ctx, res) -> None:
    assert f"pid {ctx.data['first_pid']}" in res.stderr
    assert not ctx.data["second_changed"], ctx.data["second_changed"]


def _garbage_metrics(partial: bool) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        with open(ctx.run / "metrics.jsonl", "a") as fh:
            fh.write('{"step": 4, "outer": 2, "lo' if partial else "\x00\x07garbage]]\n")
        ctx.data["before"] = snapshot(ctx.run)
    return setup


def _check_resumed_clean(ctx: Ctx, res) -> None:
    lines = (ctx.run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) is not None for line in lines)


def _malicious_checkpoint(ctx: Ctx) -> None:
    marker = ctx.tmp / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(ctx.run / "checkpoints" / "last.pt", "wb") as fh:
        pickle.dump({"model": Payload()}, fh)
    ctx.data["before"] = snapshot(ctx.run)


def _check_not_executed(ctx: Ctx, res) -> None:
    assert not (ctx.tmp / "pwned").exists(), "the checkpoint's payload ran"


def _shape_changed_old_checkpoint(ctx: Ctx) -> None:
    p = ctx.run / "checkpoints" / "last.pt"
    d = torch.load(p, weights_only=True)
    del d["config"]  # as written before checkpoints held their config
    torch.save(d, p)
    cfg = ctx.run / "config.toml"
    cfg.write_text(cfg.read_text().replace("hidden = 16", "hidden = 8"))
    ctx.data["before"] = snapshot(ctx.run)


def _alter_ground_truth(ctx: Ctx) -> None:
    res = ctx.egm("evaluate", ctx.run, env={"EGM_CACHE_DIR": ""})
    assert res.returncode == 0, res.stderr
    ctx.data["eval1"] = json.loads((ctx.run / "eval.json").read_text())
    gt = ctx.run / "ground_truth.pt"
    d = torch.load(gt, weights_only=True)
    d["a"]["x"] = d["b"]["x"].clone()  # altered samples: the floors would become 0
    torch.save(d, gt)
    ctx.data["before"] = snapshot(ctx.run)


def _check_ground_truth_recomputed(ctx: Ctx, res) -> None:
    ev = json.loads((ctx.run / "eval.json").read_text())
    for k in ("E-W1/floor", "M-W1/floor"):
        assert ev[k] == ctx.data["eval1"][k] and ev[k] > 0


def _check_eval_json_valid(ctx: Ctx, res) -> None:
    ev = _json_strict(ctx.tmp / "new" / "eval.json")
    assert ev["energy-mean"] is None and any("energy-mean" in n for n in ev["non_finite"])


def _check_plugin_once(ctx: Ctx, res) -> None:
    recs = {r["name"]: r for r in json.loads(res.stdout)}
    assert recs["egm_bad_energies"]["status"] == "loaded"


def _check_plugin_failed(ctx: Ctx, res) -> None:
    recs = {r["name"]: r for r in json.loads(res.stdout)}
    rec = recs["egm_exit_on_import"]
    assert rec["status"] == "failed" and "SystemExit" in rec["error"]
    assert recs["discrete"]["status"] == "loaded"


def _check_streamed(ctx: Ctx, res) -> None:
    import numpy as np

    a = torch.load(ctx.tmp / "big.pt", weights_only=True)["x"]
    b = np.load(ctx.tmp / "big.npz")["x"]
    assert a.shape == (12001, 3, 3) and (a.numpy() == b).all()
    assert not list(ctx.tmp.glob(".big*"))  # no temporary part left


def _readonly_sample(ctx: Ctx) -> subprocess.CompletedProcess:
    return readonly_process(ctx, ["sample", ctx.run, "-n", "5", "-o", ctx.tmp / "s.pt"])


def _readonly_evaluate(ctx: Ctx) -> subprocess.CompletedProcess:
    return readonly_process(ctx, ["evaluate", ctx.run])


def _readonly_evaluate_out(ctx: Ctx) -> subprocess.CompletedProcess:
    return readonly_process(ctx, ["evaluate", ctx.run, "--out", ctx.tmp / "ev"])


def _readonly_mid_run(ctx: Ctx) -> subprocess.CompletedProcess:
    try:
        return ctx.runner.run(["train", "--resume", ctx.run, "--set", "train.outer_iterations=300", "--no-eval"],
                              ctx.tmp, readonly_after=[ctx.run / "resumes.jsonl", ctx.run])
    finally:
        if os.geteuid() != 0:
            for p in [ctx.run, *ctx.run.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)


def _check_checkpoint_intact(ctx: Ctx, res) -> None:
    d = torch.load(ctx.run / "checkpoints" / "last.pt", weights_only=True)
    assert d["step"] >= 4
    assert not list(ctx.run.rglob(".*.tmp-*"))


def _disk_full(ctx: Ctx) -> subprocess.CompletedProcess:
    limit = (ctx.run / "checkpoints" / "last.pt").stat().st_size // 2
    assert (ctx.run / "metrics.jsonl").stat().st_size * 4 < limit
    return ctx.runner.run(["train", "--resume", ctx.run, "--set", "train.outer_iterations=3", "--no-eval"], ctx.tmp,
                          fsize_limit=limit)


def _check_ev_out(ctx: Ctx, res) -> None:
    assert _json_strict(ctx.tmp / "ev" / "eval.json")["step"] == 4


# ------------------------------------------------------------------------------------ the faults
R = "run files"
C = "config and command line"
S = "sizes and silent results"
P = "plugins and energies"
K = "checkpoints and logs"

FAULTS: list[Fault] = [
    # --- run folders: data loss
    Fault("demo-out-not-empty", R, "`egm demo --out DIR` on a folder holding an old run and the user's own files",
          lambda c: ["demo", "--out", c.tmp / "demo", *DEMO_FAST], ("already exists and is not empty",), "--force",
          setup=_snap_demo, check=_check_demo_refused),
    Fault("demo-force-keeps-foreign", R, "`egm demo --out DIR --force` where DIR holds files egm did not write",
          lambda c: ["demo", "--out", c.tmp / "demo", "--force", *DEMO_FAST], rc=0, setup=_setup_demo_folder,
          check=_check_demo_force, outcome="trains; only egm's run files are replaced, the user's files are kept"),
    Fault("train-out-other-run", R, "`egm train B --out DIR` where DIR holds run A",
          lambda c: ["train", c.cfg, "--out", c.run], ("already exists and is not empty",), "--resume"),
    Fault("train-out-is-file", R, "`--out` names an existing file",
          lambda c: ["train", c.cfg, "--out", c.cfg], ("is an existing file",), "choose a folder path"),
    Fault("train-out-user-folder", R, "`egm train --out DIR` where DIR holds only the user's files",
          lambda c: ["train", c.cfg, "--out", c.tmp], ("already exists and is not empty",), "choose another --out"),
    Fault("sample-while-training", R, "`egm sample` on a run whose log runs past its checkpoint (still training)",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], rc=0, setup=_append_metrics_after_checkpoint,
          check=_check_sample_file(5), outcome="samples; metrics.jsonl and every other run file untouched"),
    Fault("evaluate-while-training", R, "`egm evaluate` on a run whose log runs past its checkpoint",
          lambda c: ["evaluate", c.run, "-n", "16"], rc=0, setup=_append_metrics_after_checkpoint,
          changes=("eval.json", "report.md", "samples.pt", "ground_truth.pt"),
          outcome="writes only its own outputs (eval.json, report.md, samples.pt, ground_truth.pt)"),
    Fault("sample-read-only-run", R, "`egm sample` on a read-only run folder", lambda c: [], rc=0,
          process=_readonly_sample, check=_check_sample_file(5), outcome="samples (reading never writes)"),
    Fault("evaluate-read-only-run", R, "`egm evaluate` on a read-only run folder", lambda c: [],
          ("is read-only",), "--out DIR", process=_readonly_evaluate),
    Fault("evaluate-read-only-out", R, "`egm evaluate RUN --out DIR` on a read-only run folder", lambda c: [], rc=0,
          process=_readonly_evaluate_out, check=_check_ev_out, outcome="the report goes to DIR"),
    Fault("resume-changes-target", R, "`--resume RUN --set energy.beta=0.4` (another target)",
          lambda c: ["train", "--resume", c.run, "--set", "energy.beta=0.4"], ("energy.beta is 0.3 in the checkpoint",),
          "start a new run"),
    Fault("resume-changes-space", R, "`--resume RUN --set energy.L=4` (another state space)",
          lambda c: ["train", "--resume", c.run, "--set", "energy.L=4"], ("energy.L is 3",), "start a new run"),
    Fault("resume-changes-network", R, "`--resume RUN --set network.hidden=8` (other network shapes)",
          lambda c: ["train", "--resume", c.run, "--set", "network.hidden=8"], ("network.hidden is 16",),
          "start a new run"),
    Fault("resume-changes-estimator", R, "`--resume RUN` switching to the bootstrap estimator",
          lambda c: ["train", "--resume", c.run, "--set", 'estimator.kind="bootstrap"', "--set",
                     'energy_network.name="mlp"'], ("in the checkpoint",), "start a new run"),
    Fault("resume-harmless-override", R, "`--resume RUN --set train.outer_iterations=3` after a killed run's log "
          "ran past the checkpoint", lambda c: ["train", "--resume", c.run, "--set", "train.outer_iterations=3",
                                                "--no-eval"],
          rc=0, setup=_append_metrics_after_checkpoint,
          changes=("config.toml", "metrics.jsonl", "checkpoints/last.pt", "resumes.jsonl"), check=_check_resume_recorded,
          outcome="trains on; config.toml, the checkpoint and resumes.jsonl record the override; log lines after the "
                  "checkpoint are dropped"),
    Fault("config-edited-after-training", R, "config.toml edited (energy.beta) after training, then `egm evaluate`",
          lambda c: ["evaluate", c.run], ("does not describe its checkpoint", "energy.beta"), "restore config.toml",
          setup=edit_text("config.toml", lambda t: t.replace("beta = 0.3", "beta = 0.4"))),
    Fault("run-from-older-version", R, "`egm sample` on a run whose checkpoint predates a config key (kept at its "
          "default)", lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], rc=0,
          setup=_checkpoint_from_older_version, check=_check_sample_file(5),
          outcome="samples: a key the checkpoint lacks counts as its default, the behaviour of the older version"),
    Fault("second-writer", R, "`egm train --resume RUN` while another process holds the run's lock",
          lambda c: ["train", "--resume", c.run], ("being written by another egm process",), "wait for it to finish",
          setup=_hold_lock, check=_check_lock_named),
    Fault("two-trainings-same-out", R, "two `egm train --out DIR` at once (the second with --force)", lambda c: [],
          ("being written by another egm process",), "wait for it to finish", process=_two_trainings,
          check=_check_two_trainings),
    Fault("stale-lock", R, "a lock file left by a killed run (its pid is gone)",
          lambda c: ["train", "--resume", c.run, "--set", "train.outer_iterations=3", "--no-eval"], rc=0,
          setup=_stale_lock, changes=("*",), outcome="the stale lock is taken over; training resumes"),
    Fault("stale-temporary", R, "a `.last.pt.tmp-PID` left by a writer killed while the disk was full",
          lambda c: ["train", "--resume", c.run, "--set", "train.outer_iterations=3", "--no-eval"], rc=0,
          setup=lambda c: (c.run / "checkpoints" / ".last.pt.tmp-999999999").write_bytes(b"half a checkpoint"),
          changes=("*",), check=lambda c, r: not list(c.run.rglob(".*.tmp-*")) or pytest.fail("temporary left"),
          outcome="removed when the next writer takes the lock; training resumes"),
    Fault("sample-output-exists", R, "`egm sample -o FILE` where FILE exists",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.npz"], ("already exists",), "--force",
          setup=lambda c: (c.tmp / "s.npz").write_bytes(b"precious"),
          check=lambda c, r: (c.tmp / "s.npz").read_bytes() == b"precious" or pytest.fail("overwritten")),
    Fault("sample-output-force", R, "`egm sample -o FILE --force` where FILE exists",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt", "--force"], rc=0,
          setup=lambda c: (c.tmp / "s.pt").write_bytes(b"old"), check=_check_sample_file(5),
          outcome="FILE is replaced (atomically)"),
    Fault("sample-output-is-folder", R, "`egm sample -o DIR.pt` where that is a folder",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "d.pt"], ("is a folder",), "pass a file name",
          setup=lambda c: (c.tmp / "d.pt").mkdir()),
    Fault("sample-output-under-file", R, "`egm sample -o FILE/x.pt` (the parent is a file)",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.cfg / "x.pt"], ("is a file, not a folder",),
          "choose another output path"),
    Fault("sample-output-unwritable", R, "`egm sample -o /proc/x.pt` (a folder nobody can write)",
          lambda c: ["sample", c.run, "-n", "5", "-o", "/proc/egm-samples.pt"], ("/proc",), "-o"),
    Fault("sample-output-suffix", R, "`egm sample -o samples.txt`",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.txt"], ("-o",), "use a .pt or .npz file name"),
    Fault("evaluate-out-is-file", R, "`egm evaluate RUN --out FILE`",
          lambda c: ["evaluate", c.run, "--out", c.cfg], ("is an existing file",), "pass a folder"),
    Fault("evaluate-out-other-run", R, "`egm evaluate RUN --out OTHER_RUN`",
          lambda c: ["evaluate", c.run, "--out", c.fixture], ("holds another run",), "pass an empty or new folder"),
    Fault("resume-with-out", R, "`egm train --resume RUN --out DIR`",
          lambda c: ["train", "--resume", c.run, "--out", c.tmp / "x"], ("continues the run in its own folder",),
          "drop --out"),
    Fault("read-only-mid-run", R, "the run folder becomes read-only while training", lambda c: [],
          ("read-only",), "egm train --resume", process=_readonly_mid_run, changes=("*",),
          check=_check_checkpoint_intact),
    Fault("disk-full", R, "the disk fills up while a checkpoint is written", lambda c: [],
          ("no space left while writing checkpoint",), "the previous checkpoint is kept", process=_disk_full,
          changes=("config.toml", "metrics.jsonl", "resumes.jsonl"), check=_check_checkpoint_intact),
    # --- checkpoints and logs
    Fault("metrics-partial-line-sample", K, "metrics.jsonl ends in a half-written line; `egm sample`",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], rc=0, setup=_garbage_metrics(True),
          check=_check_sample_file(5), outcome="samples (the log is not needed)"),
    Fault("metrics-garbage-line-evaluate", K, "a garbage line in metrics.jsonl; `egm evaluate` with figures",
          lambda c: ["evaluate", c.run, "-n", "16"], rc=0, setup=lambda c: ((c.run / "config.toml").write_text(
              (c.run / "config.toml").read_text().replace("figures = false", "figures = true")),
              _garbage_metrics(False)(c)),
          changes=("eval.json", "report.md", "samples.pt", "ground_truth.pt", "figures/*"),
          outcome="evaluates; the training curves skip the unreadable line"),
    Fault("metrics-garbage-line-resume", K, "a partial line in metrics.jsonl; `egm train --resume`",
          lambda c: ["train", "--resume", c.run, "--set", "train.outer_iterations=3", "--no-eval"], rc=0,
          setup=_garbage_metrics(True), changes=("*",), check=_check_resumed_clean,
          outcome="resumes; the unreadable line is dropped with the lines after the checkpoint"),
    Fault("checkpoint-missing", K, "the run folder has no checkpoint",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], ("no checkpoint at",), "train first",
          setup=lambda c: (c.run / "checkpoints" / "last.pt").unlink()),
    Fault("checkpoint-garbage", K, "the checkpoint is not a checkpoint (garbage bytes)",
          lambda c: ["evaluate", c.run], ("cannot read checkpoint",), "restore it from a copy",
          setup=lambda c: (c.run / "checkpoints" / "last.pt").write_bytes(b"\x00garbage" * 10)),
    Fault("checkpoint-malicious", K, "a checkpoint whose pickle would run a command when loaded",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], ("cannot read checkpoint",),
          "restore it from a copy", setup=_malicious_checkpoint, check=_check_not_executed),
    Fault("checkpoint-missing-keys", K, "a checkpoint without its optimizer state",
          lambda c: ["train", "--resume", c.run], ("lacks the entry 'optimizer'",), "train a new run",
          setup=edit_checkpoint(lambda d: d.pop("optimizer"))),
    Fault("checkpoint-shape-mismatch", K, "an older checkpoint (no stored config) under a config.toml whose network "
          "changed", lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], ("does not fit",),
          "restore the run's config.toml", setup=_shape_changed_old_checkpoint),
    Fault("checkpoint-not-a-dict", K, "a checkpoint holding a bare tensor",
          lambda c: ["sample", c.run, "-n", "5", "-o", c.tmp / "s.pt"], ("not an egm checkpoint",), "train again",
          setup=lambda c: torch.save(torch.zeros(3), c.run / "checkpoints" / "last.pt")),
    Fault("run-not-a-run", K, "`egm sample DIR` where DIR is not a run folder",
          lambda c: ["sample", c.tmp, "-n", "5", "-o", c.tmp / "s.pt"], ("not a run folder",),
          "pass the folder `egm train` created"),
    Fault("run-missing", K, "`egm evaluate runs/typo` (no such folder)",
          lambda c: ["evaluate", c.tmp / "typo"], ("no such folder",), "pass the folder"),
    Fault("run-is-file", K, "`egm train --resume FILE`", lambda c: ["train", "--resume", c.cfg],
          ("is a file, not a run folder",), "pass the folder"),
    Fault("ground-truth-cache-altered", K, "a ground-truth cache entry whose samples were altered",
          lambda c: ["evaluate", c.run], rc=0, setup=_alter_ground_truth, env={"EGM_CACHE_DIR": ""},
          changes=("eval.json", "report.md", "samples.pt", "ground_truth.pt"), check=_check_ground_truth_recomputed,
          outcome="the content hash does not match: a warning, and the set is recomputed (same noise floors)"),
    # --- config and command line
    Fault("config-is-folder", C, "the config path is a folder", lambda c: ["train", c.tmp], ("is a folder",),
          "pass the TOML file"),
    Fault("config-missing", C, "the config file does not exist", lambda c: ["train", c.tmp / "nope.toml"],
          ("not found",), "pass a TOML file"),
    Fault("config-not-utf8", C, "the config is not UTF-8 (Latin-1 bytes)", lambda c: ["train", c.tmp / "c.toml"],
          ("not UTF-8",), "save it as UTF-8",
          setup=lambda c: (c.tmp / "c.toml").write_bytes(TINY.replace('"tiny"', '"t\xe9"').encode("latin-1"))),
    Fault("config-bom", C, "the config starts with a UTF-8 byte-order mark",
          lambda c: ["train", c.tmp / "c.toml", "--out", c.tmp / "new", "--no-eval"], rc=0,
          setup=lambda c: (c.tmp / "c.toml").write_bytes(b"\xef\xbb\xbf" + TINY.encode()),
          outcome="accepted (the mark is skipped)"),
    Fault("config-invalid-toml", C, "a TOML syntax error", **with_cfg(cfg_append("[train\n")),
          says=("invalid TOML",), fix="fix that line"),
    Fault("config-unknown-section", C, "an unknown section [trian]", **with_cfg(cfg_append("[trian]\nlr = 1\n")),
          says=("unknown section [trian]",), fix="did you mean 'train'"),
    Fault("config-unknown-key", C, "an unknown key (train.batchsize)", lambda c: ["train", c.cfg, "--out", c.tmp / "n",
                                                                              "--set", "train.batchsize=3"],
          ("train.batchsize: unknown key",), "did you mean 'batch_size'"),
    Fault("config-missing-section", C, "no [network] section",
          **with_cfg(cfg_replace('[network]\nname = "mlp"\nhidden = 16\nlayers = 2\n', "")),
          says=("missing section [network]",), fix="egm components"),
    Fault("config-energy-network-unused", C, "an [energy_network] section under estimator.kind = \"snis\"",
          **with_cfg(cfg_append('[energy_network]\nname = "mlp"\n')), says=("used only by estimator.kind",),
          fix="remove the [energy_network] section"),
    Fault("config-bootstrap-no-energy-network", C, "estimator.kind = \"bootstrap\" without [energy_network]",
          lambda c: ["train", c.cfg, "--set", 'estimator.kind="bootstrap"'], ("needs an [energy_network]",),
          'name = "mlp"'),
    Fault("config-progress-string", C, "progress = \"no\" (a string, not a boolean)",
          **with_cfg(cfg_replace("progress = false", 'progress = "no"')), says=("train.progress: must be true or false",),
          fix="unquoted"),
    Fault("config-figures-string", C, "figures = \"no\"", **with_cfg(cfg_replace("figures = false", 'figures = "no"')),
          says=("eval.figures: must be true or false",), fix="unquoted"),
    Fault("config-name-escapes", C, "name = \"../../x\" (the run folder would leave runs/)",
          lambda c: ["train", c.tmp / "c.toml"], ("a run name must be a plain name",), "--out DIR",
          setup=cfg_replace('name = "tiny"', 'name = "../../x"')),
    Fault("config-name-absolute", C, "an absolute name = \"/tmp/x\"", lambda c: ["train", c.tmp / "c.toml"],
          ("a run name must be a plain name",), "--out DIR", setup=cfg_replace('name = "tiny"', 'name = "/tmp/x"')),
    Fault("config-device-typo", C, "train.device = \"cudaXYZ\"", **with_cfg(cfg_replace('device = "cpu"',
                                                                                      'device = "cudaXYZ"')),
          says=("train.device: must be",), fix="'cuda:N'"),
    Fault("device-tpu", C, "`--device tpu`", lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--device", "tpu"],
          ("--device: must be",), "'cpu'"),
    Fault("device-meta", C, "`--device meta`", lambda c: ["sample", c.run, "-o", c.tmp / "s.pt", "--device", "meta"],
          ("--device: must be",), "'cpu'"),
    Fault("device-missing-cuda", C, "`--device cuda:99` (no such GPU here)",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--device", "cuda:99"], ("cuda:99",), '"auto"'),
    Fault("set-no-equals", C, "`--set nonsense`", lambda c: ["train", c.cfg, "--set", "nonsense"],
          ("--set expects KEY=VALUE",), "train.lr=3e-4"),
    Fault("set-negative-lr", C, "`--set train.lr=-1`", lambda c: ["train", c.cfg, "--set", "train.lr=-1"],
          ("train.lr: must be in (0, inf), got -1",), "must be in"),
    Fault("set-float-batch", C, "batch_size = 1e12 (a float)", lambda c: ["train", c.cfg, "--set", "train.batch_size=1e12"],
          ("train.batch_size: must be an integer",), "integer"),
    Fault("set-string-number", C, "batch_size = \"big\"", lambda c: ["train", c.cfg, "--set", 'train.batch_size="big"'],
          ("train.batch_size: must be an integer",), "integer"),
    Fault("set-seed-too-large", C, "train.seed = 2^63", lambda c: ["train", c.cfg, "--set",
                                                                  "train.seed=9223372036854775808"],
          ("train.seed: must be in [0, 9223372036854775807]",), "must be in"),
    Fault("set-zero-max-seconds", C, "train.max_seconds = 0", lambda c: ["train", c.cfg, "--set", "train.max_seconds=0"],
          ("train.max_seconds: must be in (0",), "must be in"),
    Fault("set-eval-one-sample", C, "eval.num_samples = 1", lambda c: ["train", c.cfg, "--set", "eval.num_samples=1"],
          ("eval.num_samples: must be in [2",), "must be in"),
    Fault("set-unknown-energy", C, "a misspelt energy name", lambda c: ["train", c.cfg, "--set", 'energy.name="isng"'],
          ("unknown energy 'isng'",), "did you mean 'ising'"),
    Fault("set-bad-energy-param", C, "energy.L = 1", lambda c: ["train", c.cfg, "--set", "energy.L=1"],
          ("energy 'ising'", "L must be"), "L must be"),
    Fault("set-path-space-mismatch", C, "path.vocab = 3 on a 2-state Ising model",
          lambda c: ["train", c.cfg, "--set", "path.vocab=3"], ("path.vocab = 3 does not match",),
          "remove path.vocab"),
    Fault("set-wrong-modality", C, "a flow generator on a categorical path",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set", 'generator.name="flow"'], ("generator 'flow'",),
          "egm components"),
    Fault("train-config-and-resume", C, "`egm train CONFIG --resume RUN`",
          lambda c: ["train", c.cfg, "--resume", c.run], ("not both",), "pass either CONFIG or --resume"),
    Fault("train-nothing", C, "`egm train` with neither config nor --resume", lambda c: ["train"],
          ("needs a CONFIG.toml",), "--resume RUN_DIR"),
    Fault("sample-n-zero", C, "`egm sample -n 0`", lambda c: ["sample", c.run, "-n", "0", "-o", c.tmp / "s.pt"],
          ("-n must be ≥ 1, got 0",), "≥ 1"),
    Fault("sample-steps-zero", C, "`egm sample --steps 0`",
          lambda c: ["sample", c.run, "--steps", "0", "-o", c.tmp / "s.pt"], ("--steps must be ≥ 1, got 0",), "≥ 1"),
    Fault("sample-steps-negative", C, "`egm sample --steps -3` (discrete or continuous run alike)",
          lambda c: ["sample", c.run, "--steps", "-3", "-o", c.tmp / "s.pt"], ("--steps must be ≥ 1, got -3",), "≥ 1"),
    Fault("sample-seed-too-large", C, "`egm sample --seed 2^63`",
          lambda c: ["sample", c.run, "--seed", "9223372036854775808", "-o", c.tmp / "s.pt"], ("--seed must be in",),
          "9223372036854775807"),
    Fault("sample-n-not-a-number", C, "`egm sample -n lots`", lambda c: ["sample", c.run, "-n", "lots", "-o", "s.pt"],
          ("invalid int value: 'lots'",), "egm sample --help"),
    Fault("evaluate-n-one", C, "`egm evaluate -n 1` (metrics need two samples)", lambda c: ["evaluate", c.run, "-n", "1"],
          ("-n must be ≥ 2",), "two sets of samples"),
    Fault("evaluate-n-negative", C, "`egm evaluate -n -5`", lambda c: ["evaluate", c.run, "-n", "-5"],
          ("-n must be ≥ 2",), "two sets of samples"),
    Fault("evaluate-steps-zero", C, "`egm evaluate --steps 0`", lambda c: ["evaluate", c.run, "--steps", "0"],
          ("--steps must be ≥ 1",), "≥ 1"),
    Fault("estimate-n-one", C, "`egm estimate -n 1`", lambda c: ["estimate", c.run, "-n", "1"], ("-n must be ≥ 2",),
          "got 1"),
    Fault("estimate-read-only-run", R, "`egm estimate` on a read-only run folder (its estimate.json cannot be written)",
          lambda c: [], ("estimate.json", "read-only"), "make the run folder writable",
          process=lambda c: readonly_process(c, ["estimate", c.run, "-n", "16"])),
    Fault("unknown-command", C, "`egm trian`", lambda c: ["trian"], ("invalid choice: 'trian'",), "egm --help"),
    Fault("components-unknown-kind", C, "`egm components energys`", lambda c: ["components", "energys"],
          ("unknown component kind 'energys'",), "did you mean 'energy'"),
    # --- sizes and silent wrong results
    Fault("huge-lattice", S, "energy.L = 100000 (a 10^10-site state)",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set", "energy.L=100000"], ("this run needs at least",),
          "make the state smaller (e.g. energy.L)"),
    Fault("huge-lattice-conv", S, "energy.L = 100000 with the lattice_conv network",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set", "energy.L=100000", "--set",
                     'network={name="lattice_conv", channels=8, layers=2}'], ("this run needs at least",),
          "make the state smaller (e.g. energy.L)"),
    Fault("huge-batch", S, "train.batch_size = 10^12", lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set",
                                                                   "train.batch_size=1000000000000"],
          ("this run needs at least", "train.batch_size"), "lower train.buffer_size, train.batch_size"),
    Fault("huge-buffer", S, "train.buffer_size = 10^12", lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set",
                                                                     "train.buffer_size=1000000000000"],
          ("this run needs at least", "replay buffer"), "lower train.buffer_size"),
    Fault("huge-network", S, "network.hidden = 10^6 (a 10^12-parameter MLP)",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set", "network.hidden=1000000"],
          ("network 'mlp' does not fit in memory",), "make it smaller"),
    Fault("sample-n-huge", S, "`egm sample -n 10^11` (more than the disk holds)",
          lambda c: ["sample", c.run, "-n", "100000000000", "-o", c.tmp / "s.npz"], ("on disk",), "lower -n",
          check=lambda c, r: not (c.tmp / "s.npz").exists() or pytest.fail("output written")),
    Fault("sample-n-streamed", S, "`egm sample -n 12001` (more than one chunk): streamed to disk, .pt and .npz",
          lambda c: ["sample", c.run, "-n", "12001", "-o", c.tmp / "big.npz"], rc=0,
          setup=lambda c: c.data.update(pt=c.egm("sample", c.run, "-n", "12001", "-o", c.tmp / "big.pt")),
          check=_check_streamed, outcome="written chunk by chunk; .pt and .npz hold the same samples"),
    Fault("energy-inf-everywhere", S, "an energy that is +inf on every proposal", **bad_energy("inf_energy"),
          says=("no proposal of a whole training batch had a finite weight",), fix="make the energy finite"),
    Fault("energy-nan", S, "an energy that returns NaN", **bad_energy("nan_energy"), says=("returned NaN",),
          fix="energies must be finite"),
    Fault("metric-non-finite", S, "an energy that is +inf on half the states: a non-finite metric in eval.json",
          **bad_energy("half_inf_energy"), rc=0, check=_check_eval_json_valid,
          outcome="eval.json stays valid JSON: null plus a `non_finite` note"),
    # --- plugins and energies
    Fault("energy-raises", P, "an energy that raises inside __call__", **bad_energy("raising_energy"),
          says=("energy 'raising_energy' raised RuntimeError",), fix="fix the energy"),
    Fault("energy-complex", P, "an energy that returns complex numbers", **bad_energy("complex_energy"),
          says=("returned dtype torch.complex64",), fix="return a float tensor"),
    Fault("energy-wrong-shape", P, "an energy that returns shape (B, 1)", **bad_energy("wrong_shape"),
          says=("returned shape",), fix="Reduce over the event dimensions"),
    Fault("ground-truth-raises", P, "an energy whose ground_truth sampler raises", **bad_energy("bad_ground_truth"),
          says=("raised ValueError in ground_truth",), fix="fix the energy", changes=("*",)),
    Fault("plugin-exits-on-import", P, "a plugin that calls sys.exit() on import (EGM_PLUGINS)",
          lambda c: ["plugins"], rc=0, env={"EGM_PLUGINS": "egm_exit_on_import", "PYTHONPATH": str(FIXTURES)},
          check=_check_plugin_failed, outcome="reported as failed (SystemExit); the other plugins load"),
    Fault("plugin-listed-twice", P, "EGM_PLUGINS=m,m", lambda c: ["plugins"], rc=0,
          env={"EGM_PLUGINS": "egm_bad_energies,egm_bad_energies", "PYTHONPATH": str(FIXTURES)},
          check=_check_plugin_once, outcome="loaded once, status loaded"),
    Fault("plugin-missing-module", P, "EGM_PLUGINS names a module that does not exist",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n", "--set", 'energy.name="nope"'], ("unknown energy 'nope'",),
          "egm plugins", env={"EGM_PLUGINS": "no_such_plugin_module"}),
    Fault("plugin-disabled", P, "the component's plugin is disabled (EGM_DISABLE_PLUGINS)",
          lambda c: ["train", c.cfg, "--out", c.tmp / "n"], ("Disabled by EGM_DISABLE_PLUGINS",), "installed but disabled",
          env={"EGM_DISABLE_PLUGINS": "egm-discrete"}),
]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def runner(tmp_path_factory):
    r = Runner(tmp_path_factory.mktemp("runner"))
    yield r
    r.close()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, runner):
    base = tmp_path_factory.mktemp("fixture")
    cfg = base / "c.toml"
    cfg.write_text(TINY)
    res = runner.run(["train", cfg, "--out", base / "run"], base)
    assert res.returncode == 0, res.stderr
    return base / "run"


@pytest.fixture
def ctx(tmp_path, trained_run, runner):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    return Ctx(tmp=tmp_path, run=run, cfg=cfg, fixture=trained_run, runner=runner)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("egm: error:")]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.kind for f in FAULTS])
def test_fault(fault: Fault, ctx: Ctx):
    if fault.setup is not None:
        fault.setup(ctx)
    before = ctx.data.get("before") or snapshot(ctx.run)
    fixture_before = snapshot(ctx.fixture)
    if fault.process is not None:
        res = fault.process(ctx)
    else:
        res = ctx.egm(*fault.argv(ctx), env=fault.env)
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode == fault.rc, (res.returncode, res.stdout, res.stderr)
    if fault.rc == 2:
        errors = _error_lines(res.stderr)
        assert len(errors) == 1, res.stderr
        others = [line for line in res.stderr.splitlines()
                  if line.strip() and not line.startswith(("egm: error:", "egm: warning:", "resuming "))]
        assert not others, res.stderr
        for frag in (*fault.says, fault.fix):
            assert frag and frag in errors[0], (frag, errors[0])
        if not fault.started:
            for fresh in ("n", "new"):  # a refused `egm train --out` creates no folder
                assert not (ctx.tmp / fresh).exists(), fresh
    else:
        assert not _error_lines(res.stderr), res.stderr
        for frag in fault.says:
            assert frag in out, (frag, out)
    changed = changed_files(before, snapshot(ctx.run))
    unexpected = {f for f in changed if not any(fnmatch.fnmatch(f, p) for p in fault.changes)}
    assert not unexpected, f"run files changed: {sorted(unexpected)}"
    assert snapshot(ctx.fixture) == fixture_before
    if fault.check is not None:
        fault.check(ctx, res)


def test_fault_kinds_are_unique_and_many():
    kinds = [f.kind for f in FAULTS]
    assert len(kinds) == len(set(kinds))
    assert len(kinds) >= 75
    for f in FAULTS:
        assert (f.rc == 2 and f.fix) or (f.rc == 0 and f.outcome), f.kind


def test_preflight_costs_a_constant_number_of_network_calls():
    """energy.L = 300 (90,000 sites; the exact masked sampler calls the network once per site): the
    trial simulation stops after PREFLIGHT_CALLS calls."""
    from egm_framework.assembly import PREFLIGHT_CALLS, build_components, preflight
    from egm_framework.config import config_from_dict
    import tomllib

    data = tomllib.loads(TINY)
    data["energy"]["L"] = 300
    cfg = config_from_dict(data)
    comp = build_components(cfg)
    calls = []
    forward = comp.network.forward
    comp.network.forward = lambda *a, **k: (calls.append(1), forward(*a, **k))[1]
    t0 = time.perf_counter()
    preflight(comp, cfg, torch.device("cpu"))
    assert 1 <= len(calls) <= PREFLIGHT_CALLS
    assert time.perf_counter() - t0 < 30


# ------------------------------------------------------------------------------------ the doc
DOC_START, DOC_END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"


def render_table() -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = [DOC_START, "", f"{len(FAULTS)} kinds of fault, each a case of `tests/faults/test_faults.py`.", ""]
    for area in dict.fromkeys(f.area for f in FAULTS):
        lines += [f"### {area[0].upper()}{area[1:]}", "", "| kind | fault | exit | what the user sees |", "|---|---|---|---|"]
        for f in (f for f in FAULTS if f.area == area):
            if f.rc == 2:
                seen = "`egm: error:` … " + " … ".join(f"`{cell(s)}`" for s in (*f.says, f.fix))
            else:
                seen = cell(f.outcome)
            lines.append(f"| `{f.kind}` | {cell(f.what)} | {f.rc} | {seen} |")
        lines.append("")
    lines.append(DOC_END)
    return "\n".join(lines)


def test_reliability_doc_is_current():
    text = DOC.read_text() if DOC.exists() else ""
    table = render_table()
    if os.environ.get("EGM_UPDATE_DOCS"):
        head, _, rest = text.partition(DOC_START)
        _, _, tail = rest.partition(DOC_END)
        DOC.write_text(head + table + tail if DOC_START in text else text + "\n" + table + "\n")
        text = DOC.read_text()
    assert DOC_START in text and DOC_END in text, "docs/reliability.md lacks the generated fault table"
    current = DOC_START + text.split(DOC_START, 1)[1].split(DOC_END, 1)[0] + DOC_END
    assert current == table, ("docs/reliability.md is stale; regenerate it with "
                              "`EGM_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/faults -k doc`")
