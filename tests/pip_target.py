"""Install a test package into a temporary folder (``pip install --target``), never into the
environment: ``make test`` leaves the environment as it found it. Used by the tests that install
the documented example plugin and the third-party test package."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest


def clean_env(extra_path: Path | None = None) -> dict[str, str]:
    """The environment of a child process: no plugin controls inherited, the target folder on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("EGM_PLUGINS", "EGM_DISABLE_PLUGINS")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), *filter(None, [env.get("PYTHONPATH")])])
    return env


def pip_install_to(source: Path, target: Path) -> None:
    """Build ``source`` from a copy (setuptools writes build files next to the sources) and install it
    into ``target``. No network, no dependencies: the environment's setuptools builds it."""
    for needed in ("pip", "setuptools"):
        if importlib.util.find_spec(needed) is None:  # find_spec, not import: setuptools fights pytest over distutils
            pytest.skip(f"{needed} is not installed in this environment")
    copy = target.parent / f"src-{source.name}"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(copy)],
        capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0, f"pip install --target failed:\n{proc.stdout}\n{proc.stderr}"


@contextmanager
def on_sys_path(folder: Path, *packages: str):
    """``folder`` importable (and its entry points visible) in this process for the duration."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[name]
        importlib.invalidate_caches()


def egm_cli(*args: str, target: Path | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run the real ``egm`` entry point in a fresh process."""
    script = Path(sys.executable).with_name("egm")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "egm_framework.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=clean_env(target), timeout=timeout,
                          cwd=cwd)
