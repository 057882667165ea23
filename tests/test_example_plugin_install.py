"""End to end: pip-install the documented example plugin (docs/plugins/example) into the running
environment, then ask the real ``egm`` CLI, in a fresh process, what it sees.

This is what a third party does; it checks the entry point, the distribution metadata and the
CLI's JSON listing together. The install is idempotent (a reinstall of the same version), so the
package is simply left installed. Takes ~10 s; part of the default run."""

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

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "plugins" / "example"

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EGM_PLUGINS", "EGM_DISABLE_PLUGINS")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _egm(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("egm")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "egm_framework.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=_clean_env(), timeout=120)


@pytest.fixture(scope="module")
def installed_example():
    # find_spec, not import: importing setuptools here would fight over distutils with pytest
    for needed in ("pip", "setuptools"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed in this environment")
    # A regular (non-editable) install: the files land in site-packages, which is already on
    # sys.path, so the package is importable in this process as well as in subprocesses.
    # --no-build-isolation/--no-deps/--no-index: no network, the environment's setuptools builds it.
    with_build = EXAMPLE / "build"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--force-reinstall", str(EXAMPLE)],
        capture_output=True, text=True, env=_clean_env(), timeout=300,
    )
    # setuptools builds in the source tree; leave it as it was
    shutil.rmtree(with_build, ignore_errors=True)
    shutil.rmtree(EXAMPLE / "egm_example_energies.egg-info", ignore_errors=True)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    importlib.invalidate_caches()
    return EXAMPLE


def test_installed_example_is_listed_by_the_cli(installed_example):
    proc = _egm("components", "energy", "--json")
    assert proc.returncode == 0, f"egm components failed (exit {proc.returncode}):\n{proc.stderr}"
    comps = json.loads(proc.stdout)
    assert all(c["kind"] == "energy" for c in comps)
    mine = [c for c in comps if c["name"] == "curie_weiss"]
    assert len(mine) == 1, comps
    c = mine[0]
    assert c["plugin"] == "example"
    assert c["distribution"] == "egm-example-energies"
    assert c["aliases"] == ["mean_field_ising"]
    assert "Curie-Weiss" in c["summary"]


def test_installed_example_shows_in_egm_plugins(installed_example):
    proc = _egm("plugins")
    assert proc.returncode == 0, proc.stderr
    records = {r["name"]: r for r in json.loads(proc.stdout)}
    rec = records["example"]
    assert rec["status"] == "loaded", rec
    assert (rec["distribution"], rec["version"], rec["module"]) == (
        "egm-example-energies", "0.1.0", "egm_example_energies.plugin")
    assert rec["hooks"] == ["register_energies"]


def test_disabling_the_installed_example(installed_example):
    env_proc = subprocess.run(
        [sys.executable, "-c",
         "import json; from egm_framework.plugins import default_plugin_manager as d;"
         "m = d(); print(json.dumps(m.records['example'].to_json()))"],
        capture_output=True, text=True, timeout=120,
        env={**_clean_env(), "EGM_DISABLE_PLUGINS": "egm-example-energies"},
    )
    assert env_proc.returncode == 0, env_proc.stderr
    assert json.loads(env_proc.stdout)["status"] == "disabled"


def test_installed_example_creates_through_a_fresh_manager(installed_example):
    from egm_framework.plugins import PluginManager, metadata
    from egm_framework.registry import Registry

    eps = [ep for ep in metadata.entry_points(group="egm_framework") if ep.name == "example"]
    assert eps and eps[0].dist.name == "egm-example-energies"
    manager = PluginManager()
    manager.load_entry_points(eps)
    assert manager.records["example"].status == "loaded", manager.records["example"].error
    energy = Registry(manager).create("energy", "curie_weiss", n_spins=5)
    assert energy.space_spec == ("categorical", {"shape": [5], "vocab": 2})
