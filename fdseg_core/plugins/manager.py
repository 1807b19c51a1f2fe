"""The plugin manager: built lazily, loads the ``fdseg`` entry points, isolates failures.

Nothing happens at import: the manager is created by the first call that needs it.
The built-in backbones (:mod:`fdseg_backbones`) come in through the same ``fdseg``
entry point as any outside plugin (fdseg's own distribution declares it), so the core
never imports a package that plugs into it. Set ``FDSEG_DISABLE_PLUGIN_AUTOLOAD=1`` to
skip the entry points of other distributions (fdseg's own built-ins still load).
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pluggy
from torch import nn

from fdseg_core.errors import InputError
from fdseg_core.plugins import hookspecs
from fdseg_core.plugins.spec import BackboneSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "DISABLE_AUTOLOAD_ENV",
    "FdsegPluginWarning",
    "build_backbone",
    "get_backbone",
    "get_plugin_manager",
    "list_backbones",
    "reset_plugin_manager",
]

ENTRY_POINT_GROUP = "fdseg"
DISABLE_AUTOLOAD_ENV = "FDSEG_DISABLE_PLUGIN_AUTOLOAD"
#: The entry point (and plugin name) of the built-in backbones, and their distribution.
_BUILTIN = "fdseg_backbones"
_DIST = "fdseg"


class FdsegPluginWarning(UserWarning):
    """A plugin could not be loaded or gave something invalid; fdseg goes on without it."""


class _State:
    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
        self.provenance: dict[str, tuple[str, str | None]] = {}
        self.specs: dict[str, BackboneSpec] | None = None
        self.lock = threading.RLock()


_STATE = _State()


def _warn(message: str) -> None:
    warnings.warn(message, FdsegPluginWarning, stacklevel=3)


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.value.split(":")[0].split(".")[0], None
    return dist.metadata["Name"] or dist.name, dist.version


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, origin: str) -> bool:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy.PluginValidationError, duplicate names
        _warn(f"fdseg plugin {name!r} from {origin} could not be registered: {exc}")
        return False
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        _warn(f"fdseg plugin {name!r} from {origin} implements an unknown hook: {exc}")
        return False
    return True


def _origin(dist: str, version: str | None) -> str:
    """Where a plugin comes from, for messages: ``distribution NAME VERSION``."""
    return f"distribution {dist}" + (f" {version}" if version else "")


def _is_builtin(ep: importlib.metadata.EntryPoint) -> bool:
    """The entry point of fdseg's own built-in backbones."""
    return ep.name == _BUILTIN and _dist_of(ep)[0] == _DIST


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use.

    Registers the hook specifications, then the plugins of the ``fdseg`` entry point
    group: fdseg's own built-in backbones first, then every other distribution's
    (unless ``FDSEG_DISABLE_PLUGIN_AUTOLOAD`` is set). A plugin that fails to import or
    register is reported once as a :class:`FdsegPluginWarning` naming its distribution
    and skipped.
    """
    with _STATE.lock:
        if _STATE.pm is not None:
            return _STATE.pm
        pm = pluggy.PluginManager("fdseg")
        pm.add_hookspecs(hookspecs)
        provenance: dict[str, tuple[str, str | None]] = {}
        points = sorted(_entry_points(), key=lambda ep: not _is_builtin(ep))
        if _autoload_disabled():
            points = [ep for ep in points if _is_builtin(ep)]
        for ep in points:
            dist, dist_version = _dist_of(ep)
            origin = _origin(dist, dist_version)
            try:
                plugin = ep.load()
            except Exception as exc:
                _warn(
                    f"fdseg plugin {ep.name!r} from {origin} failed to import: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            if pm.is_registered(plugin):
                continue  # the same module declared twice
            if _register(pm, plugin, ep.name, origin):
                provenance[ep.name] = (dist, dist_version)
        _STATE.pm = pm
        _STATE.provenance = provenance
        return pm


def _registrations(hook: str, returns: str) -> Iterator[tuple[str, str, str | None, Sequence]]:
    """``(where, distribution, version, items)`` of every plugin's implementation of a
    registration ``hook``: built-ins first, then plugins in registration order. An
    implementation that raises, or returns something other than a list (``returns``
    names what the list holds), is skipped with a warning; one returning ``None``,
    silently."""
    impls = getattr(get_plugin_manager().hook, hook).get_hookimpls()
    for impl in sorted(impls, key=lambda i: i.plugin_name != _BUILTIN):
        dist, version = _STATE.provenance.get(impl.plugin_name, (impl.plugin_name, None))
        where = f"fdseg plugin {impl.plugin_name!r} from {_origin(dist, version)}"
        try:
            result = impl.function()
        except Exception as exc:
            _warn(f"{where}: {hook} raised {type(exc).__name__}: {exc}")
            continue
        if result is None:
            continue
        if not isinstance(result, list | tuple):
            _warn(f"{where}: {hook} must return a list of {returns}, got {type(result).__name__}")
            continue
        yield where, dist, version, result


def _collect() -> dict[str, BackboneSpec]:
    specs: dict[str, BackboneSpec] = {}
    # the first to claim a name keeps it
    for where, dist, version, result in _registrations("fdseg_register_backbones", "BackboneSpec"):
        for item in result:
            if not isinstance(item, BackboneSpec):
                _warn(f"{where}: expected a BackboneSpec, got {type(item).__name__}; ignored")
                continue
            try:
                spec = item.validate()
            except ValueError as exc:
                _warn(f"{where}: invalid backbone: {exc}; ignored")
                continue
            if spec.name in specs:
                _warn(
                    f"{where}: backbone {spec.name!r} is already provided by "
                    f"{specs[spec.name].package}; ignored"
                )
                continue
            specs[spec.name] = replace(spec, package=dist, version=version)
    return specs


def plugin_trainers() -> list[Any]:
    """The trainer classes plugins register (``fdseg_register_trainers``), in
    registration order; a plugin whose hook raises or returns no list is skipped with a
    warning. Checked as trainers by :func:`fdseg_core.train.trainer.list_trainers`."""
    found: list[Any] = []
    for _, _, _, result in _registrations("fdseg_register_trainers", "trainer classes"):
        found.extend(result)
    return found


def _specs() -> dict[str, BackboneSpec]:
    with _STATE.lock:
        if _STATE.specs is None:
            _STATE.specs = _collect()
        return _STATE.specs


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, sorted by name."""
    return [s for _, s in sorted(_specs().items())]


def get_backbone(name: str | BackboneSpec) -> BackboneSpec:
    """The spec of a backbone by name (a spec is validated and returned as is).

    Raises:
        ValueError: Unknown name (the message lists the available ones).
    """
    if isinstance(name, BackboneSpec):
        return name.validate()
    specs = _specs()
    if name not in specs:
        raise InputError(f"unknown backbone {name!r}; available: {', '.join(sorted(specs))}")
    return specs[name]


def build_backbone(
    name: str | BackboneSpec,
    in_channels: int,
    out_channels: int,
    spatial_dims: int = 3,
    **options: Any,
) -> nn.Module:
    """Build a registered backbone; see :meth:`BackboneSpec.build`."""
    return get_backbone(name).build(in_channels, out_channels, spatial_dims, **options)


def reset_plugin_manager() -> None:
    """Forget the manager and the collected specs (the next call rebuilds them)."""
    with _STATE.lock:
        _STATE.pm = None
        _STATE.provenance = {}
        _STATE.specs = None
