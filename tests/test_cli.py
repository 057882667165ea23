"""The `egm` command line through the real entry point: exit codes, error messages, train / sample /
evaluate / resume, and a run killed mid-training and resumed from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

TINY = """
name = "tiny"
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
num_proposals = 16
[train]
batch_size = 16
outer_iterations = {outer}
inner_iterations = {inner}
buffer_size = 64
buffer_refresh = 32
log_every = 2
progress = false
device = "cpu"
[eval]
num_samples = 64
"""


def egm(*args, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "egm_framework.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def write_config(tmp_path: Path, outer: int = 2, inner: int = 3, extra: str = "") -> Path:
    p = tmp_path / "cfg.toml"
    p.write_text(TINY.format(outer=outer, inner=inner) + extra)
    return p


def assert_clean_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("egm: error:") or "egm: error:" in res.stderr, res.stderr
    for f in fragments:
        assert f in res.stderr, (f, res.stderr)


def test_version_and_help():
    res = egm("--version")
    assert res.returncode == 0 and "egm-framework" in res.stdout
    assert egm().returncode == 2  # no command: help and a usage exit


def test_components_lists_all_three_plugins():
    res = egm("components", "--json")
    assert res.returncode == 0, res.stderr
    comps = json.loads(res.stdout)
    plugins = {c["plugin"] for c in comps}
    assert {"core", "discrete", "continuous", "mixed"} <= plugins
    names = {(c["kind"], c["name"]) for c in comps}
    assert {("state_space", "categorical"), ("state_space", "euclidean"), ("state_space", "product")} <= names
    table = egm("components", "energy")
    assert table.returncode == 0 and "ising" in table.stdout and "discrete" in table.stdout


def test_plugins_json():
    res = egm("plugins")
    assert res.returncode == 0
    recs = {r["name"]: r for r in json.loads(res.stdout)}
    assert recs["discrete"]["distribution"] == "egm-discrete" and recs["discrete"]["status"] == "loaded"
    assert "register_energies" in recs["discrete"]["hooks"]


WITHOUT_DISCRETE = """
import sys
import importlib_metadata
from importlib import metadata as std_metadata
real = importlib_metadata.entry_points

def entry_points(**kw):  # the environment as if egm-discrete were not installed
    return [ep for ep in real(**kw) if ep.value.split(".")[0] != "egm_discrete"]

importlib_metadata.entry_points = entry_points
std_metadata.entry_points = entry_points
from egm_framework.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_missing_discrete_plugin_suggests_installing_it(tmp_path):
    """A component living on the categorical space, asked for by name with egm-discrete's entry point
    absent from the environment (as after `pip uninstall egm-discrete`)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.format(outer=1, inner=1).replace('name = "ising"', 'name = "nan_energy"')
                   .replace("beta = 0.3\n", ""))
    env = dict(os.environ, EGM_PLUGINS="egm_bad_energies", PYTHONPATH=str(FIXTURES))
    res = subprocess.run([sys.executable, "-c", WITHOUT_DISCRETE, "train", str(cfg), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert_clean_error(res, "unknown state space 'categorical'", "pip install egm-discrete")
    res = subprocess.run([sys.executable, "-c", WITHOUT_DISCRETE, "components", "--json"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0 and "discrete" not in {c["plugin"] for c in json.loads(res.stdout)}


def test_disabled_plugin_is_named_as_disabled(tmp_path):
    cfg = write_config(tmp_path)
    res = egm("train", str(cfg), "--out", str(tmp_path / "run"), env={"EGM_DISABLE_PLUGINS": "egm-discrete"})
    assert_clean_error(res, "unknown energy 'ising'", "Disabled by EGM_DISABLE_PLUGINS: discrete (egm-discrete)",
                       "installed but disabled")
    listed = egm("components", "state_space", "--json", env={"EGM_DISABLE_PLUGINS": "discrete"})
    assert "categorical" not in {c["name"] for c in json.loads(listed.stdout)}


@pytest.mark.parametrize("extra_args,fragments", [
    (["--set", 'energy.name="isng"'], ["unknown energy 'isng'", "did you mean 'ising'"]),
    (["--set", "energy.L=1"], ["energy 'ising'", "L must be"]),
    (["--set", "energy.beta=-0.5"], ["beta"]),
    (["--set", "path.vocab=3"], ["path.vocab = 3 does not match", "vocab = 2"]),
    (["--set", "train.lr=-1"], ["train.lr: must be in (0, inf), got -1"]),
    (["--set", "train.batchsize=3"], ["train.batchsize: unknown key", "did you mean 'batch_size'"]),
    (["--set", 'estimator.kind="bootstrap"'], ["[energy_network]"]),
    (["--set", 'path.name="uniform"', "--set", 'estimator.kind="bootstrap"', "--set",
      'energy_network.name="mlp"'], ["does not support bootstrapped"]),
    (["--set", "nonsense"], ["--set expects KEY=VALUE"]),
    (["--set", 'generator.name="flow"'], ["generator 'flow'"]),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, extra_args, fragments):
    cfg = write_config(tmp_path)
    res = egm("train", str(cfg), "--out", str(tmp_path / "run"), *extra_args)
    assert_clean_error(res, *fragments)


def test_missing_config_file(tmp_path):
    assert_clean_error(egm("train", str(tmp_path / "nope.toml")), "not found")


@pytest.mark.parametrize("energy,fragment", [
    ("wrong_shape", "returned shape"),
    ("nan_energy", "NaN"),
])
def test_broken_energy_is_reported(tmp_path, energy, fragment):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.format(outer=1, inner=2).replace('name = "ising"', f'name = "{energy}"')
                   .replace("beta = 0.3\n", ""))
    res = egm("train", str(cfg), "--out", str(tmp_path / "run"),
              env={"EGM_PLUGINS": "egm_bad_energies", "PYTHONPATH": str(FIXTURES)})
    assert_clean_error(res, f"energy '{energy}'", fragment)


def test_train_sample_evaluate_and_refuse_to_overwrite(tmp_path):
    cfg = write_config(tmp_path)
    run = tmp_path / "run"
    res = egm("train", str(cfg), "--out", str(run))
    assert res.returncode == 0, res.stderr
    for f in ("config.toml", "metrics.jsonl", "checkpoints/last.pt", "eval.json", "report.md",
              "figures/histograms.png", "figures/training.png"):
        assert (run / f).exists(), f
    ev = json.loads((run / "eval.json").read_text())
    assert ev["step"] == 6 and "E-W1" in ev and "E-W1/floor" in ev and "M-W1/floor" in ev
    assert "E-W1" in (run / "report.md").read_text()
    # samples
    out = tmp_path / "s.pt"
    res = egm("sample", str(run), "-n", "10", "-o", str(out))
    assert res.returncode == 0, res.stderr
    x = torch.load(out, weights_only=True)["x"]
    assert x.shape == (10, 3, 3) and x.dtype == torch.long and int(x.min()) >= 0 and int(x.max()) <= 1
    assert egm("sample", str(run), "-n", "5", "-o", str(tmp_path / "s.npz")).returncode == 0
    assert_clean_error(egm("sample", str(run), "-n", "5", "-o", str(tmp_path / "s.txt")), ".pt or .npz")
    assert_clean_error(egm("sample", str(tmp_path / "nothing"), "-n", "5", "-o", str(out)), "not a run folder")
    # evaluate
    res = egm("evaluate", str(run), "-n", "50")
    assert res.returncode == 0 and "E-W1" in res.stdout
    # the same --out again is refused, pointing to --resume
    assert_clean_error(egm("train", str(cfg), "--out", str(run)), "--resume")


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    cfg = write_config(tmp_path, outer=40, inner=5)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "egm_framework.cli", "train", str(cfg), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # wait for the second checkpoint, then kill hard mid-run
            if ckpt.exists() and torch.load(ckpt, weights_only=True)["outer"] >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint written in time")
    except Exception:  # a read racing the atomic rename is retried above; anything else fails
        proc.kill()
        raise
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(ckpt, weights_only=True)  # still a complete checkpoint
    killed_at = state["step"]
    assert 10 <= killed_at < 200
    res = egm("train", "--resume", str(run), "--set", "train.outer_iterations=" + str(state["outer"] + 2))
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    final = torch.load(ckpt, weights_only=True)
    assert final["outer"] == state["outer"] + 2 and final["step"] == killed_at + 10
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps[-1] == killed_at + 10 and steps == sorted(set(steps))  # each logged step once, in order
