"""Plugin loading: built-ins, entry points (group ``avbench``), loose files, env switches.

- Built-in plugins are ordinary plugin modules listed in ``BUILTIN_PLUGINS``.
- Third-party plugins come from entry points of group ``avbench``, loaded one at a time: one
  that fails to import, or whose hook raises, is recorded as failed and reported by
  ``avbench plugins`` and as a warning; the rest keep working.
- ``AVBENCH_DISABLE_PLUGINS=name1,name2`` skips plugins by name (``*`` skips every entry-point
  plugin); ``AVBENCH_LOAD_PLUGINS=name1,name2`` loads only those entry-point plugins (empty:
  none). ``--plugins-dir DIR`` (or ``AVBENCH_PLUGINS_DIR``) loads every ``*.py`` in DIR.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from avbench import hookspecs
from avbench.errors import PluginError
from avbench.registry import (
    DatasetInfo,
    DatasetRegister,
    DetectorInfo,
    DetectorRegister,
    ProtocolRegister,
    ProtocolSource,
)

BUILTIN_PLUGINS = ("avbench.builtin",)
# In-process plugins added by register_plugin (tests, notebooks).
_EXTRA: list[tuple[Any, str]] = []
ENTRY_POINT_GROUP = "avbench"
HOOK_NAMES = tuple(n for n in dir(hookspecs) if n.startswith("avbench_"))


@dataclass
class PluginStatus:
    name: str
    source: str  # builtin | entrypoint | file
    version: str = ""
    distribution: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


class PluginSystem:
    """Loads plugins once and collects their registrations."""

    def __init__(self, plugins_dir: str | Path | None = None, *, entry_points: bool = True):
        self.pm = pluggy.PluginManager("avbench")
        self.pm.add_hookspecs(hookspecs)
        self.statuses: list[PluginStatus] = []
        self.warnings: list[str] = []
        disabled = set(_env_list("AVBENCH_DISABLE_PLUGINS") or [])
        only = _env_list("AVBENCH_LOAD_PLUGINS")

        for modname in BUILTIN_PLUGINS:
            if modname in disabled:
                continue
            status = PluginStatus(name=modname, source="builtin", version=_core_version())
            self._load(status, lambda m=modname: importlib.import_module(m))

        if entry_points and "*" not in disabled:
            for ep in _entry_points():
                dist = getattr(ep, "dist", None)
                dist_name = dist.metadata["Name"] if dist is not None else ""
                if ep.name in disabled or dist_name in disabled:
                    continue
                if only is not None and ep.name not in only and dist_name not in only:
                    continue
                status = PluginStatus(
                    name=ep.name,
                    source="entrypoint",
                    version=dist.version if dist is not None else "",
                    distribution=dist_name,
                )
                self._load(status, ep.load)

        for obj, name in list(_EXTRA):
            status = PluginStatus(name=name, source="inline")
            self._load(status, lambda o=obj: o)

        plugins_dir = plugins_dir or os.environ.get("AVBENCH_PLUGINS_DIR")
        if plugins_dir:
            d = Path(plugins_dir)
            if not d.is_dir():
                raise PluginError(f"--plugins-dir {d}: not a directory")
            for path in sorted(d.glob("*.py")):
                if path.stem in disabled:
                    continue
                status = PluginStatus(name=path.stem, source="file")
                self._load(status, lambda p=path: _import_file(p))

        self.detector_register = DetectorRegister()
        self.dataset_register = DatasetRegister()
        self.protocol_register = ProtocolRegister()
        self._call("avbench_register_detectors", self.detector_register)
        self._call("avbench_register_datasets", self.dataset_register)
        self._call("avbench_register_protocols", self.protocol_register)
        for reg in (self.detector_register, self.dataset_register):
            self.warnings.extend(reg.conflicts)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:  # pragma: no cover - filtered in _load
            self.warnings.append(str(e))

    # -- loading ---------------------------------------------------------------------------
    def _load(self, status: PluginStatus, importer: Any) -> None:
        self.statuses.append(status)
        try:
            module = importer()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            self._fail(status, f"import failed: {type(e).__name__}: {e}")
            return
        unknown = [
            n
            for n in dir(module)
            if n.startswith("avbench_") and callable(getattr(module, n)) and n not in HOOK_NAMES
        ]
        if unknown:
            self._fail(status, f"implements unknown hook(s) {', '.join(unknown)}")
            return
        try:
            self.pm.register(module, name=status.name)
        except (ValueError, pluggy.PluginValidationError) as e:
            self._fail(status, f"cannot register: {e}")
            return
        status.hooks = sorted(
            impl_name for impl_name in HOOK_NAMES if hasattr(module, impl_name)
        )

    def _fail(self, status: PluginStatus, message: str) -> None:
        status.error = message
        status.traceback = traceback.format_exc()
        self.warnings.append(f"plugin {status.name!r} failed to load: {message}")

    def _call(self, hook_name: str, register: Any) -> None:
        """Call a hook plugin by plugin, so that one raising does not hide the others."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            status = self._status(impl.plugin_name)
            if status is not None and status.error:
                continue
            register.current_plugin = impl.plugin_name
            try:
                impl.function(register)
            except Exception as e:
                if status is not None:
                    self._fail(status, f"{hook_name} raised {type(e).__name__}: {e}")
                else:  # pragma: no cover
                    self.warnings.append(f"{impl.plugin_name}: {hook_name} raised {e}")

    def _status(self, name: str) -> PluginStatus | None:
        for s in self.statuses:
            if s.name == name:
                return s
        return None

    # -- queries ---------------------------------------------------------------------------
    def _ok(self, plugin: str) -> bool:
        s = self._status(plugin)
        return s is None or s.ok

    @property
    def detectors(self) -> dict[str, DetectorInfo]:
        return {k: v for k, v in self.detector_register.items.items() if self._ok(v.plugin)}

    @property
    def datasets(self) -> dict[str, DatasetInfo]:
        return {k: v for k, v in self.dataset_register.items.items() if self._ok(v.plugin)}

    @property
    def protocol_sources(self) -> list[ProtocolSource]:
        return [s for s in self.protocol_register.sources if self._ok(s.plugin)]

    def detector(self, name: str) -> DetectorInfo:
        dets = self.detectors
        if name not in dets:
            raise PluginError(
                f"unknown detector {name!r}; known: {', '.join(sorted(dets)) or '(none)'}"
                " (see `avbench detectors`)"
            )
        return dets[name]

    def dataset(self, name: str) -> DatasetInfo:
        sets = self.datasets
        if name not in sets:
            raise PluginError(f"unknown dataset {name!r}; known: {', '.join(sorted(sets))}")
        return sets[name]

    def add_commands(self, app: Any) -> None:
        for impl in self.pm.hook.avbench_register_commands.get_hookimpls():
            status = self._status(impl.plugin_name)
            if status is not None and status.error:
                continue
            try:
                impl.function(app)
            except Exception as e:
                if status is not None:
                    self._fail(status, f"avbench_register_commands raised {e}")


def _core_version() -> str:
    from avbench import __version__

    return __version__


def _entry_points() -> Iterable[Any]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _import_file(path: Path) -> Any:
    name = f"avbench_plugins_dir.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_SYSTEM: PluginSystem | None = None
_SYSTEM_KEY: Any = None


_PLUGINS_DIR: str | Path | None = None


def set_plugins_dir(plugins_dir: str | Path | None) -> None:
    """The loose-files folder every later ``get_plugins()`` uses (the CLI's --plugins-dir)."""
    global _PLUGINS_DIR
    _PLUGINS_DIR = plugins_dir


def get_plugins(plugins_dir: str | Path | None = None) -> PluginSystem:
    """The process-wide plugin system (rebuilt when the plugins dir or env switches change)."""
    global _SYSTEM, _SYSTEM_KEY
    plugins_dir = plugins_dir or _PLUGINS_DIR
    key = (
        str(plugins_dir or os.environ.get("AVBENCH_PLUGINS_DIR") or ""),
        os.environ.get("AVBENCH_DISABLE_PLUGINS"),
        os.environ.get("AVBENCH_LOAD_PLUGINS"),
    )
    if _SYSTEM is None or key != _SYSTEM_KEY:
        _SYSTEM = PluginSystem(plugins_dir)
        _SYSTEM_KEY = key
    return _SYSTEM


def reset_plugins() -> None:
    """Forget the cached plugin system (tests, and after installing a plugin)."""
    global _SYSTEM, _SYSTEM_KEY
    _SYSTEM = None
    _SYSTEM_KEY = None


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Add an in-process plugin (a module or an object with hook functions); returns its name.

    Used by ``avbench.testing.temporary_plugin``; undo with :func:`unregister_plugin`.
    """
    name = name or getattr(plugin, "__name__", None) or f"inline-{id(plugin)}"
    _EXTRA.append((plugin, name))
    reset_plugins()
    return name


def unregister_plugin(name: str) -> None:
    _EXTRA[:] = [(o, n) for o, n in _EXTRA if n != name]
    reset_plugins()
