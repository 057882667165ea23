"""Plugin discovery and the plugin manager.

Sources of plugins, in order:

1. the core's built-in components (``egm_framework.builtin``), registered through the same hooks;
2. every entry point of the group ``egm_framework`` (one per installed plugin distribution);
3. modules named in ``EGM_PLUGINS`` (comma-separated import paths) — for unpackaged plugins.

``EGM_DISABLE_PLUGINS`` (comma-separated plugin or distribution names) skips plugins. A plugin
that fails to import is recorded (see :class:`PluginRecord`) instead of breaking the others.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import PluginLoadError

try:  # Python ≥ 3.10 has the selectable API in the stdlib; the backport is a declared dependency.
    import importlib_metadata as metadata
except ImportError:  # pragma: no cover
    from importlib import metadata  # type: ignore[no-redef]

ENTRY_POINT_GROUP = "egm_framework"
ENV_DISABLE = "EGM_DISABLE_PLUGINS"
ENV_EXTRA = "EGM_PLUGINS"


@attrs.frozen(kw_only=True)
class PluginRecord:
    """What is known of one plugin, loaded or not."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: tuple[str, ...] = ()
    status: str = "loaded"  # loaded | failed | disabled
    error: str | None = None

    def to_json(self) -> dict:
        return attrs.asdict(self)


class PluginManager:
    """A pluggy manager plus bookkeeping of where each plugin came from."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}

    # ------------------------------------------------------------------ registration
    def register(self, plugin: ModuleType | object, name: str, *, distribution: str | None = None,
                 version: str | None = None) -> None:
        """Register a plugin object/module under ``name``; misspelled hooks fail loudly."""
        if name in self.records and self.records[name].status == "loaded":
            other = self.records[name]
            raise PluginLoadError(
                f"two plugins are named {name!r}: {other.module} ({other.distribution or 'no distribution'}) "
                f"and {getattr(plugin, '__name__', plugin)!r} ({distribution or 'no distribution'}); "
                "rename one entry point"
            )
        existing = next((n for n, p in self.pm.list_name_plugin() if p is plugin), None)
        if existing is not None:  # pluggy would raise a bare ValueError
            raise PluginLoadError(
                f"plugin {name!r}: module {getattr(plugin, '__name__', plugin)!r} is already registered "
                f"as plugin {existing!r}; load it once (drop it from EGM_PLUGINS or uninstall one copy)"
            )
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            known = ", ".join(hookspecs.KIND_HOOKS.values())
            raise PluginLoadError(
                f"plugin {name!r} ({distribution or 'no distribution'}) implements an unknown or invalid hook: "
                f"{exc}; the hooks are: {known}"
            ) from None
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
        self.records[name] = PluginRecord(
            name=name, distribution=distribution, version=version,
            module=getattr(plugin, "__name__", type(plugin).__name__), hooks=hooks,
        )

    def record_failure(self, name: str, distribution: str | None, version: str | None, module: str | None,
                       error: BaseException | str) -> None:
        msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.records[name] = PluginRecord(name=name, distribution=distribution, version=version, module=module,
                                          status="failed", error=msg)

    def load_entry_points(self, entry_points: Iterable | None = None, disabled: Iterable[str] = ()) -> None:
        """Load every entry point of the ``egm_framework`` group (or the ones given)."""
        disabled = set(disabled)
        eps = entry_points if entry_points is not None else metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) if dist is not None else None
            version = getattr(dist, "version", None) if dist is not None else None
            if ep.name in disabled or (dist_name and dist_name in disabled):
                self.records[ep.name] = PluginRecord(name=ep.name, distribution=dist_name, version=version,
                                                     module=ep.value, status="disabled")
                continue
            if ep.name in self.records:
                seen = self.records[ep.name]
                if seen.distribution == dist_name and seen.module == ep.value:
                    continue  # the same plugin seen twice (e.g. two metadata paths)
                self.record_failure(
                    f"{ep.name} ({dist_name})", dist_name, version, ep.value,
                    f"entry point name {ep.name!r} is already used by {seen.module} "
                    f"({seen.distribution or 'no distribution'}); rename one of them")
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import failure (even sys.exit) is reported
                self.record_failure(ep.name, dist_name, version, ep.value, exc)
                continue
            try:
                self.register(plugin, ep.name, distribution=dist_name, version=version)
            except PluginLoadError as exc:
                self.record_failure(ep.name, dist_name, version, ep.value, str(exc))

    def load_modules(self, modules: Iterable[str], disabled: Iterable[str] = ()) -> None:
        disabled = set(disabled)
        for mod in modules:
            mod = mod.strip()
            if not mod or mod in disabled:
                continue
            try:
                plugin = importlib.import_module(mod)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - even sys.exit() on import is reported
                self.record_failure(mod, None, None, mod, exc)
                continue
            try:
                self.register(plugin, mod)
            except PluginLoadError as exc:
                self.record_failure(mod, None, None, mod, str(exc))

    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "failed"]

    def plugin_of(self, plugin_obj: object) -> str:
        return self.pm.get_name(plugin_obj) or "?"


def _split_env(value: str | None) -> list[str]:
    """Comma-separated names, blanks and repeats dropped (``EGM_PLUGINS=m,m`` loads ``m`` once)."""
    return list(dict.fromkeys(v.strip() for v in (value or "").split(",") if v.strip()))


def default_plugin_manager(environ: dict | None = None) -> PluginManager:
    """Built-ins + entry points + ``EGM_PLUGINS`` modules, minus ``EGM_DISABLE_PLUGINS``."""
    env = os.environ if environ is None else environ
    disabled = _split_env(env.get(ENV_DISABLE))
    manager = PluginManager()
    from . import builtin

    manager.register(builtin, "core", distribution="egm-framework", version=_version())
    manager.load_entry_points(disabled=disabled)
    manager.load_modules(_split_env(env.get(ENV_EXTRA)), disabled=disabled)
    return manager


def _version() -> str:
    from . import __version__

    return __version__
