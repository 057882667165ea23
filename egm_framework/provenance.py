"""Where a run's components came from, and its configuration with every default written out.

A run folder holds

- ``config.toml``: the configuration with each component's parameters **resolved** — the ones given
  plus the factory's defaults for the others (read from its signature; defaults TOML cannot hold,
  such as ``None``, stay implicit);
- ``components.json``: for each component section (and the path's schedule), its registry name, the
  plugin that registered it, and that plugin's distribution name and version.

Reading a run back (``egm sample``, ``egm evaluate``, ``egm train --resume``) first checks that every
recorded component is still registered; if one is not, the error names the distribution to install.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config import COMPONENT_SECTIONS, RunConfig
from .errors import ConfigError, UnknownComponentError

#: config section -> component kind
SECTION_KIND = {"energy": "energy", "path": "path", "generator": "generator", "network": "network",
                "energy_network": "network"}
PROVENANCE_FILE = "components.json"


def _toml_safe(value: Any) -> bool:
    if isinstance(value, bool) or isinstance(value, str) or isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_toml_safe(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _toml_safe(v) for k, v in value.items())
    return False


def resolved_config(cfg: RunConfig, registry) -> dict:
    """``cfg.to_dict()`` with each component's unset parameters filled in from its factory's defaults."""
    out = cfg.to_dict()
    for section in COMPONENT_SECTIONS:
        comp = getattr(cfg, section)
        if comp is None:
            continue
        info = registry.get(SECTION_KIND[section], comp.name)
        given = out[section]
        for p in info.params():
            if p["required"] or p["name"].startswith("**") or p["name"] in given:
                continue
            if _toml_safe(p["default"]):
                given[p["name"]] = p["default"]
    return out


def _record(registry, kind: str, name: str) -> dict:
    info = registry.get(kind, name)
    rec = registry.manager.records.get(info.plugin)
    return {"kind": kind, "name": info.name, "plugin": info.plugin, "distribution": info.distribution,
            "version": rec.version if rec else None}


def component_provenance(cfg: RunConfig, registry, path_obj: Any = None) -> dict:
    """section -> {kind, name, plugin, distribution, version}; ``path.schedule`` when the path has one."""
    out = {}
    for section in COMPONENT_SECTIONS:
        comp = getattr(cfg, section)
        if comp is not None:
            out[section] = _record(registry, SECTION_KIND[section], comp.name)
    schedule = getattr(path_obj, "schedule", None)
    sname = getattr(schedule, "name", "")
    if sname:
        try:
            out["path.schedule"] = _record(registry, "schedule", sname)
        except UnknownComponentError:  # an object passed directly, not a registered schedule
            pass
    return out


def check_recorded_components(run_dir: Path, registry) -> None:
    """Raise a :class:`ConfigError` naming the distribution of the first recorded component that is no
    longer registered (uninstalled or disabled plugin). Runs without a record pass."""
    p = Path(run_dir) / PROVENANCE_FILE
    if not p.exists():
        return
    try:
        records = json.loads(p.read_text())
    except (OSError, ValueError):
        return
    for section, rec in records.items():
        try:
            registry.get(rec["kind"], rec["name"])
        except UnknownComponentError:
            dist = rec.get("distribution")
            where = (f"plugin {rec['plugin']!r} of the distribution {dist!r}"
                     + (f" {rec['version']}" if rec.get("version") else "")) if dist else f"plugin {rec['plugin']!r}"
            fix = (f"install it (`pip install {dist}" + (f"=={rec['version']}" if rec.get("version") else "")
                   + "`) or enable it, and check `egm plugins`") if dist else \
                f"make the module {rec['plugin']!r} importable again (EGM_PLUGINS)"
            raise ConfigError(f"{run_dir}: the run's {section} {rec['kind'].replace('_', ' ')} {rec['name']!r} came "
                              f"from {where}, which is not loaded now; {fix}") from None
