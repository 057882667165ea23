"""End to end: a third party publishes a continuous energy in its own distribution.

``fixture_pkg/`` is the distribution ``egm-fixture-continuous`` (package ``egm_fixture_continuous``):
one energy, ``banana``, registered through the ``egm_framework`` entry point group and living on
the ``euclidean`` space of this plugin, which it names by registry name. The test pip-installs it
(non-editable, offline, into the running environment) and trains it *by name* through the real
``egm train`` CLI in a fresh process, with no change to the core or to egm-continuous. The fixture
distribution is uninstalled again afterwards. Takes ~15 s.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixture_pkg"
DIST = "egm-fixture-continuous"

pytestmark = pytest.mark.slow

TINY_CONFIG = """\
name = "fixture_banana"

[energy]
name = "banana"
s = 2.0
b = 0.25

[path]
name = "cond_ot"

[generator]
name = "flow"
clip_norm = 20.0

[network]
name = "mlp"
hidden = 32
layers = 2

[estimator]
kind = "snis"
num_proposals = 32

[train]
batch_size = 64
outer_iterations = 2
inner_iterations = 3
buffer_size = 256
buffer_refresh = 128
buffer_sample_steps = 10
device = "cpu"
progress = false

[eval]
num_samples = 100
sample_steps = 10
figures = false
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EGM_PLUGINS", "EGM_DISABLE_PLUGINS")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1")
    return env


def _egm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("egm")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "egm_framework.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=_clean_env(), timeout=120, cwd=cwd)


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          env=_clean_env(), timeout=300)


def _clean_build_dirs() -> None:
    # setuptools builds in the source tree; leave it as it was
    shutil.rmtree(FIXTURE / "build", ignore_errors=True)
    shutil.rmtree(FIXTURE / "egm_fixture_continuous.egg-info", ignore_errors=True)


@pytest.fixture(scope="module")
def installed_fixture():
    # find_spec, not import: importing setuptools here would fight over distutils with pytest
    for needed in ("pip", "setuptools"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed in this environment")
    if importlib.util.find_spec("egm_continuous") is None:
        pytest.skip("egm-continuous is not installed (it provides the euclidean space the fixture names)")
    was_installed = importlib.util.find_spec("egm_fixture_continuous") is not None
    proc = _pip("install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--force-reinstall",
                str(FIXTURE))
    _clean_build_dirs()
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    importlib.invalidate_caches()
    yield FIXTURE
    if not was_installed:  # leave the environment as we found it
        _pip("uninstall", "--yes", "--quiet", DIST)
        importlib.invalidate_caches()


def test_fixture_energy_is_listed_with_its_distribution(installed_fixture, tmp_path):
    proc = _egm("components", "energy", "--json", cwd=tmp_path)
    assert proc.returncode == 0, f"egm components failed (exit {proc.returncode}):\n{proc.stderr}"
    mine = [c for c in json.loads(proc.stdout) if c["name"] == "banana"]
    assert len(mine) == 1, mine
    assert mine[0]["plugin"] == "fixture_continuous"
    assert mine[0]["distribution"] == DIST


def test_fixture_energy_trains_by_name_through_the_cli(installed_fixture, tmp_path):
    cfg = tmp_path / "banana.toml"
    cfg.write_text(TINY_CONFIG)
    out = tmp_path / "run"
    proc = _egm("train", str(cfg), "--set", "train.seed=3", "--set", "energy.b=0.3", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, f"egm train failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    metrics = json.loads((out / "eval.json").read_text())
    assert metrics["step"] == 6
    assert metrics["ground_truth"].startswith("exact")
    for key in ("E-W1", "E-W1/floor", "x2-W1", "x2-W1/floor"):
        assert key in metrics and metrics[key] >= 0, (key, metrics)
    assert (out / "report.md").exists() and "banana" in (out / "report.md").read_text()
