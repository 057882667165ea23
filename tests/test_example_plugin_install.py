"""End to end: pip-install the documented example plugin (docs/plugins/example) into a temporary
folder, then ask the real ``egm`` CLI, in a fresh process with that folder on PYTHONPATH, what it sees.

This is what a third party does; it checks the entry point, the distribution metadata and the
CLI's JSON listing together. Nothing is installed into the environment (``make test`` leaves
``.venv`` as it was). Takes ~10 s; part of the default run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: tests/ is not on sys.path
from pip_target import clean_env, egm_cli, on_sys_path, pip_install_to  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "plugins" / "example"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    target = tmp_path_factory.mktemp("example") / "site"
    pip_install_to(EXAMPLE, target)
    return target


def _egm(target: Path, *args: str) -> subprocess.CompletedProcess:
    return egm_cli(*args, target=target, timeout=120)


def test_the_environment_does_not_hold_the_example():
    """Nothing installed it into the environment (an earlier ``make test`` used to)."""
    from egm_framework.plugins import metadata

    assert not [d for d in metadata.distributions() if d.metadata["Name"] == "egm-example-energies"]


def test_installed_example_is_listed_by_the_cli(installed_example):
    proc = _egm(installed_example, "components", "energy", "--json")
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
    proc = _egm(installed_example, "plugins")
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
        env={**clean_env(installed_example), "EGM_DISABLE_PLUGINS": "egm-example-energies"},
    )
    assert env_proc.returncode == 0, env_proc.stderr
    assert json.loads(env_proc.stdout)["status"] == "disabled"


def test_installed_example_creates_through_a_fresh_manager(installed_example):
    from egm_framework.plugins import PluginManager, metadata
    from egm_framework.registry import Registry

    with on_sys_path(installed_example, "egm_example_energies"):
        _create_through_a_fresh_manager(PluginManager, Registry, metadata)


def _create_through_a_fresh_manager(PluginManager, Registry, metadata):
    eps = [ep for ep in metadata.entry_points(group="egm_framework") if ep.name == "example"]
    assert eps and eps[0].dist.name == "egm-example-energies"
    manager = PluginManager()
    manager.load_entry_points(eps)
    assert manager.records["example"].status == "loaded", manager.records["example"].error
    energy = Registry(manager).create("energy", "curie_weiss", n_spins=5)
    assert energy.space_spec == ("categorical", {"shape": [5], "vocab": 2})
