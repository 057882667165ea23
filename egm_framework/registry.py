"""Names -> factories, filled by the plugin hooks.

``Registry.create(kind, name, **params)`` builds a component; unknown names, duplicate names and
wrong parameters raise errors that say what exists and how to fix the call.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

import attrs

from .errors import ConfigError, DuplicateComponentError, UnknownComponentError, did_you_mean
from .hookspecs import KIND_HOOKS
from .plugins import PluginManager, default_plugin_manager

KINDS = tuple(KIND_HOOKS)
#: how a kind is named in messages ("state space"); derived, so a new kind needs no entry here
KIND_LABEL = {k: k.replace("_", " ") for k in KINDS}
#: positional context the framework passes to a kind's factories before the user's parameters
KIND_CONTEXT: dict[str, tuple[str, ...]] = {"path": ("space",), "network": ("space", "output_shapes"),
                                            "baseline": ("energy", "space")}


#: where the first-party components live, for "install the plugin" hints when one is missing
FIRST_PARTY: dict[str, dict[str, str]] = {
    "state_space": {"categorical": "egm-discrete", "euclidean": "egm-continuous", "product": "egm-mixed"},
    "energy": {"ising": "egm-discrete", "potts": "egm-discrete", "gaussian": "egm-continuous",
               "gmm25": "egm-continuous", "gmm40": "egm-continuous", "dw4": "egm-continuous",
               "gb_rbm": "egm-mixed", "joint_mog": "egm-mixed", "joint_dw4": "egm-mixed"},
    "path": {"masked": "egm-discrete", "uniform": "egm-discrete", "cond_ot": "egm-continuous",
             "ve": "egm-continuous", "affine": "egm-continuous", "product": "egm-mixed"},
    "generator": {"jump": "egm-discrete", "flow": "egm-continuous", "diffusion": "egm-continuous",
                  "product": "egm-mixed"},
    "network": {"lattice_conv": "egm-discrete", "egnn": "egm-continuous"},
    "baseline": {"gibbs": "egm-discrete", "swendsen_wang": "egm-discrete", "mala": "egm-continuous",
                 "mwg": "egm-mixed"},
}


@attrs.frozen(kw_only=True)
class ComponentInfo:
    kind: str
    name: str
    factory: Callable = attrs.field(repr=False)
    plugin: str
    distribution: str | None = None
    summary: str = ""
    aliases: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "plugin": self.plugin, "distribution": self.distribution,
                "summary": self.summary, "aliases": list(self.aliases), "params": self.params()}

    def params(self) -> list[dict]:
        """The parameters a user may set, read from the factory's signature: ``{"name", "required",
        "default"}`` each (defaults as JSON values, else their repr). The kind's positional context
        (:data:`KIND_CONTEXT`) and ``registry`` are not user parameters; ``**kwargs`` shows as ``"**name"``."""
        return factory_params(self.factory, len(KIND_CONTEXT.get(self.kind, ())))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return items if all(not isinstance(i, str) or not i.startswith("<") for i in items) else repr(value)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    return repr(value)


def factory_params(factory: Callable, n_context: int = 0) -> list[dict]:
    """User parameters of ``factory`` (after ``n_context`` positional context arguments)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    out = []
    positional = 0
    for p in sig.parameters.values():
        if p.name in ("self", "registry") or p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) \
                and positional < n_context:
            positional += 1
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            out.append({"name": f"**{p.name}", "required": False, "default": None})
            continue
        required = p.default is inspect.Parameter.empty
        out.append({"name": p.name, "required": required, "default": None if required else _jsonable(p.default)})
    return out


def _summary_of(factory: Callable, summary: str | None) -> str:
    if summary:
        return summary.strip().splitlines()[0]
    # the factory's own docstring: inspect.getdoc would borrow a base class's (e.g. Energy's)
    doc = inspect.cleandoc(getattr(factory, "__doc__", None) or "")
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """All components contributed by the plugins of one :class:`PluginManager`."""

    def __init__(self, manager: PluginManager):
        self.manager = manager
        self._entries: dict[str, dict[str, ComponentInfo]] = {k: {} for k in KINDS}
        self._aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        broken: set[str] = set()
        for kind, hook_name in KIND_HOOKS.items():
            hook = getattr(manager.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                if plugin_name in broken:
                    continue
                try:
                    impl.function(register=self._registrar(kind, plugin_name))
                except DuplicateComponentError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the plugin is reported as failed, the rest load
                    rec = manager.records.get(plugin_name)
                    manager.record_failure(
                        plugin_name, rec.distribution if rec else None, rec.version if rec else None,
                        rec.module if rec else None, f"{hook_name} raised {type(exc).__name__}: {exc}")
                    broken.add(plugin_name)
        for kind in KINDS:  # drop whatever a broken plugin registered before it failed
            for name in [n for n, i in self._entries[kind].items() if i.plugin in broken]:
                info = self._entries[kind].pop(name)
                for a in info.aliases:
                    self._aliases[kind].pop(a, None)

    def _registrar(self, kind: str, plugin: str) -> Callable:
        record = self.manager.records.get(plugin)
        dist = record.distribution if record else None

        def register(name: str, factory: Callable, *, aliases: Sequence[str] = (), summary: str | None = None) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"registered a {KIND_LABEL[kind]} with an invalid name {name!r} (use a non-empty string)")
            if not callable(factory):
                raise TypeError(f"plugin {plugin!r}: factory for {KIND_LABEL[kind]} {name!r} is not callable")
            for n in (name, *aliases):
                owner = self._owner(kind, n)
                if owner is not None:
                    raise DuplicateComponentError(
                        f"{KIND_LABEL[kind]} {n!r} is registered twice: by plugin {owner.plugin!r} "
                        f"({owner.distribution or 'no distribution'}) and by plugin {plugin!r} "
                        f"({dist or 'no distribution'}); uninstall or disable one of them "
                        f"(EGM_DISABLE_PLUGINS={plugin})"
                    )
            info = ComponentInfo(kind=kind, name=name, factory=factory, plugin=plugin, distribution=dist,
                                 summary=_summary_of(factory, summary), aliases=tuple(aliases))
            self._entries[kind][name] = info
            for a in aliases:
                self._aliases[kind][a] = name

        return register

    def _owner(self, kind: str, name: str) -> ComponentInfo | None:
        if name in self._entries[kind]:
            return self._entries[kind][name]
        if name in self._aliases[kind]:
            return self._entries[kind][self._aliases[kind][name]]
        return None

    # ------------------------------------------------------------------ queries
    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self._entries[kind])

    def components(self, kind: str | None = None) -> list[ComponentInfo]:
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            self._check_kind(k)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def get(self, kind: str, name: str) -> ComponentInfo:
        self._check_kind(kind)
        info = self._owner(kind, name) if isinstance(name, str) else None
        if info is None:
            raise UnknownComponentError(self._unknown_message(kind, name))
        return info

    def _check_kind(self, kind: str) -> None:
        if kind not in self._entries:
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}{did_you_mean(kind, KINDS)}")

    def _unknown_message(self, kind: str, name: Any) -> str:
        label = KIND_LABEL[kind]
        available = sorted(set(self._entries[kind]) | set(self._aliases[kind]))
        msg = f"unknown {label} {name!r}; available: {', '.join(available) if available else '(none)'}"
        msg += did_you_mean(str(name), available) or "."
        failed = self.manager.failed()
        if failed:
            msg += " Plugins that failed to load: " + "; ".join(
                f"{r.name} ({r.distribution or r.module}): {r.error}" for r in failed) + "."
        provider = FIRST_PARTY.get(kind, {}).get(str(name))
        disabled = [r for r in self.manager.records.values() if r.status == "disabled"]
        if disabled:
            msg += (" Disabled by EGM_DISABLE_PLUGINS: " + ", ".join(
                f"{r.name} ({r.distribution or r.module})" for r in disabled) + ".")
        if provider and any(r.distribution == provider for r in disabled):
            msg += f" The {label} {name!r} comes from {provider!r}, which is installed but disabled."
        elif provider:
            msg += (f" The {label} {name!r} is provided by the plugin distribution {provider!r}: install it "
                    f"(`pip install {provider}`, or `pip install -e plugins/{provider}` in a checkout) and check "
                    "`egm plugins`.")
        else:
            msg += (f" If the {label} comes from a plugin, install the distribution that provides it "
                    "and check `egm plugins`.")
        return msg

    # ------------------------------------------------------------------ creation
    def create(self, kind: str, name: str, *args: Any, **params: Any) -> Any:
        """Build component ``name`` of ``kind``; positional args are the kind's context
        (the space for paths; space and output shapes for networks)."""
        info = self.get(kind, name)
        factory = info.factory
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):  # builtins without signature
            sig = None
        if sig is not None:
            if "registry" in sig.parameters:
                params["registry"] = self
            accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
            if not accepts_any:
                allowed = [p for p in sig.parameters if p not in ("self", "registry")][len(args):]
                unknown = [k for k in params if k not in sig.parameters]
                if unknown:
                    raise ConfigError(
                        f"unknown parameter(s) {', '.join(map(repr, unknown))} for {KIND_LABEL[kind]} {info.name!r}; "
                        f"accepted: {', '.join(allowed) or '(none)'}{did_you_mean(unknown[0], allowed)}")
            try:
                sig.bind(*args, **params)
            except TypeError as exc:
                raise ConfigError(f"{KIND_LABEL[kind]} {info.name!r}: {exc}") from None
        try:
            obj = factory(*args, **params)
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{KIND_LABEL[kind]} {info.name!r}: {exc}") from exc
        if hasattr(obj, "__dict__") and not getattr(obj, "name", ""):
            try:
                obj.name = info.name
            except AttributeError:
                pass
        return obj


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (built-ins, entry points, ``EGM_PLUGINS``)."""
    return Registry(default_plugin_manager())


def reset_registry() -> None:
    get_registry.cache_clear()
