"""The documentation is checked, not trusted.

- ``docs/configuration.md``'s key reference is the one generated from the attrs config classes
  (``make docs`` regenerates it), and every key has a description;
- every Python example in the docs runs: per Markdown file, a block whose first line names a file
  (``# my_energies/plugin.py``) is written to that file — or, when that file exists next to the
  Markdown file, must appear in it verbatim — and the other blocks run in order as one pytest
  module (its ``test_*`` functions run too), with the documented example plugin loaded through
  ``EGM_PLUGINS``;
- every TOML example parses; full run configs validate and assemble, path tables build their path;
- README.md and the docs cite only files that are in the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from egm_framework import config_reference
from egm_framework.assembly import build_components
from egm_framework.config import config_from_dict
from egm_framework.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "plugins").glob("*/README.md"),
               ROOT / "configs" / "README.md"])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(md: Path, lang: str) -> list[str]:
    return [body for lng, body in FENCE.findall(md.read_text()) if lng == lang]


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


# ---------------------------------------------------------------------------- key reference
def test_key_reference_is_generated_from_the_config_classes():
    path = ROOT / "docs" / "configuration.md"
    assert config_reference.splice(path.read_text()) == path.read_text(), (
        "docs/configuration.md's key reference is out of date: run `make docs`")


def test_every_key_is_documented():
    assert config_reference.undocumented_keys() == [], (
        "config keys without a description: add a `#:` comment above the field in egm_framework/config.py")
    text = (ROOT / "docs" / "configuration.md").read_text()
    from egm_framework.config import _SECTION_CLASSES

    import attrs

    for section, cls in _SECTION_CLASSES.items():
        body = text.split(f"### `[{section}]`", 1)[1].split("###", 1)[0]
        for f in attrs.fields(cls):
            assert f"| `{f.name}` |" in body, f"{section}.{f.name} is not in docs/configuration.md"


def test_the_check_command_detects_a_stale_reference(tmp_path):
    stale = tmp_path / "c.md"
    stale.write_text((ROOT / "docs" / "configuration.md").read_text().replace("| `max_seconds` |", "| `x` |"))
    assert config_reference.main(["--check", str(stale)]) == 1
    assert config_reference.main(["--write", str(stale)]) == 0
    assert config_reference.main(["--check", str(stale)]) == 0


# ---------------------------------------------------------------------------- Python examples
FILE_HEADER = re.compile(r"^# ([\w./-]+\.py)\n")


def test_python_examples_run(tmp_path):
    modules = 0
    for md in DOCS:
        code = []
        for body in blocks(md, "python"):
            m = FILE_HEADER.match(body)
            if m is None:
                code.append(body)
                continue
            quoted = md.parent / m.group(1)
            if quoted.exists():  # a quotation of a real file: it must say what the file says
                assert body[m.end():].strip() in quoted.read_text(), f"{_rel(md)}: block differs from {m.group(1)}"
                continue
            target = tmp_path / "pkgs" / m.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.parent / "__init__.py").touch()
            target.write_text(body)
        if code:
            modules += 1
            name = "test_doc_" + re.sub(r"\W", "_", _rel(md)) + ".py"
            (tmp_path / name).write_text("\n\n".join(code))
    assert modules >= 2  # writing-a-plugin.md and the example's README
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", EGM_PLUGINS="egm_example_energies.plugin",
               PYTHONPATH=os.pathsep.join([str(tmp_path / "pkgs"), str(ROOT / "docs" / "plugins" / "example"),
                                           os.environ.get("PYTHONPATH", "")]))
    env.pop("EGM_DISABLE_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                           str(tmp_path / "pytest.ini"), str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"(\d+) passed", proc.stdout) and "error" not in proc.stdout.splitlines()[-1]


# ---------------------------------------------------------------------------- TOML examples
def _toml_blocks():
    return [pytest.param(md, i, body, id=f"{_rel(md)}#{i}") for md in DOCS for i, body in
            enumerate(blocks(md, "toml"))]


@pytest.mark.parametrize("md,i,body", _toml_blocks())
def test_toml_examples_are_valid(md, i, body):
    data = tomllib.loads(body)
    reg = get_registry()
    if "energy" in data:
        build_components(config_from_dict(data), reg)
    elif set(data) == {"path"}:
        spec = dict(data["path"])
        name = spec.pop("name")
        spaces = [reg.create("state_space", "categorical", shape=[3], vocab=2),
                  reg.create("state_space", "euclidean", dim=2)]
        errors = []
        for space in spaces:
            try:
                reg.create("path", name, space, **spec)
                return
            except Exception as exc:  # noqa: BLE001 - the path's modality decides which space fits
                errors.append(exc)
        raise AssertionError(f"{_rel(md)} TOML block {i}: path table builds on no space: {errors}")


# ---------------------------------------------------------------------------- cited files
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PATHLIKE = re.compile(r"`((?:configs|docs|benchmarks|plugins|tests|egm_framework)/[\w./-]*)`"
                      r"|\b((?:configs|benchmarks|docs)/[\w./-]+\.(?:toml|py|sh|md))\b")


@pytest.mark.parametrize("md", DOCS, ids=_rel)
def test_docs_cite_only_files_in_the_repository(md):
    text = md.read_text()
    missing = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (md.parent / target).exists():
            missing.append(target)
    if md.parent == ROOT or md.parent.name == "docs":  # repository-relative paths in backticks or commands
        for a, b in PATHLIKE.findall(text):
            cited = a or b
            if not ((ROOT / cited).exists() or (md.parent / cited).exists()):
                missing.append(cited)
    assert not missing, f"{_rel(md)} cites files that are not in the repository: {sorted(set(missing))}"
