"""Plugin loading: built-ins, entry points (group ``avbench``), loose files, env switches.

- Built-in plugins are ordinary plugin modules listed in ``BUILTIN_PLUGINS``.
- Third-party plugins come from entry points of group ``avbench``, loaded one at a time: one
  that fails to import, or whose hook raises, is recorded as failed and reported by
  ``avbench plugins`` and as a warning; the rest keep working.
- ``AVBENCH_DISABLE_PLUGINS=name1,name2`` skips plugins by name (``*`` skips every entry-point
  plugin); ``AVBENCH_LOAD_PLUGINS=name1,name2`` loads only those entry-point plugins (empty:
  none). ``--plugins-dir DIR`` (or ``AVBENCH_PLUGINS_DIR``) loads every ``*.py`` in DIR.
- ``AVBENCH_TRACE_PLUGINS=1`` writes pluggy's trace of every hook call (and its result) to
  stderr.

Hooks are called through the plugin manager, one plugin at a time (a subset hook caller that
leaves out the other plugins' plain implementations), so hook wrappers and tracing see every
call while one plugin that raises cannot hide the others' registrations.

No module state is mutated: the CLI builds one :class:`PluginSystem` per invocation and
makes it current (:func:`using`) while the command runs, so library code calling
:func:`get_plugins` sees that system; outside an invocation ``get_plugins`` builds a fresh
one. In-process plugins (:func:`register_plugin`) live in a context variable.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
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
# In-process plugins added by register_plugin (tests, notebooks): an immutable tuple per context.
_INLINE: contextvars.ContextVar[tuple[tuple[Any, str], ...]] = contextvars.ContextVar(
    "avbench_inline_plugins", default=())
# The plugin system of the CLI invocation now running, if any (see ``using``).
_CURRENT: contextvars.ContextVar[PluginSystem | None] = contextvars.ContextVar(
    "avbench_current_plugins", default=None)
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

    def __init__(self, plugins_dir: str | Path | None = None, *, entry_points: bool = True,
                 inline: Iterable[tuple[Any, str]] | None = None):
        self.pm = pluggy.PluginManager("avbench")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("AVBENCH_TRACE_PLUGINS") == "1":
            # looked up at write time, so a redirected stderr receives the trace
            self.pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
            self.pm.enable_tracing()
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

        for obj, name in list(_INLINE.get() if inline is None else inline):
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
        self._call("avbench_register_detectors", "register", self.detector_register)
        self._call("avbench_register_datasets", "register", self.dataset_register)
        self._call("avbench_register_protocols", "register", self.protocol_register)
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
        """Mark ``status`` failed; the traceback is kept only while an exception is handled."""
        status.error = message
        status.traceback = traceback.format_exc() if sys.exc_info()[0] is not None else None
        self.warnings.append(f"plugin {status.name!r} failed to load: {message}")

    def _call(self, hook_name: str, arg_name: str, value: Any) -> None:
        """Call a hook through the manager once per plugin, so one raising hides no other.

        Each call goes through the manager's hook executor with one plugin's plain implementation
        plus every wrapper, so wrappers and tracing see it; an exception (from the plugin or
        a wrapper around its call) marks that plugin failed."""
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()  # registration order: built-ins first
        plain = [i for i in impls if not (i.hookwrapper or i.wrapper)]
        for impl in plain:
            status = self._status(impl.plugin_name)
            if status is not None and status.error:
                continue
            failed = {s.name for s in self.statuses if s.error}
            # pluggy's subset_hook_caller needs hashable plugins (a SimpleNamespace is not),
            # so the one-plugin subset goes through the manager's (traced) hook executor
            subset = [i for i in impls if i is impl or (
                (i.hookwrapper or i.wrapper) and i.plugin_name not in failed)]
            if hasattr(value, "current_plugin"):
                value.current_plugin = impl.plugin_name
            try:
                self.pm._hookexec(hook_name, subset, {arg_name: value}, False)
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
        """Let every working plugin add commands to the Typer ``app``."""
        self._call("avbench_register_commands", "app", app)


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


@contextlib.contextmanager
def using(system: PluginSystem) -> Iterator[PluginSystem]:
    """Make ``system`` what :func:`get_plugins` returns while the block runs."""
    token = _CURRENT.set(system)
    try:
        yield system
    finally:
        _CURRENT.reset(token)


def get_plugins(plugins_dir: str | Path | None = None) -> PluginSystem:
    """The current invocation's plugin system (see :func:`using`), else a freshly loaded one.

    With ``plugins_dir`` a fresh system loading that folder is always built."""
    current = _CURRENT.get()
    if current is not None and plugins_dir is None:
        return current
    return PluginSystem(plugins_dir)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Add an in-process plugin (a module or an object with hook functions); returns its name.

    It takes part in every plugin system built afterwards in this context (thread or task).
    Used by ``avbench.testing.temporary_plugin``; undo with :func:`unregister_plugin`.
    """
    name = name or getattr(plugin, "__name__", None) or f"inline-{id(plugin)}"
    _INLINE.set((*_INLINE.get(), (plugin, name)))
    return name


def unregister_plugin(name: str) -> None:
    _INLINE.set(tuple((o, n) for o, n in _INLINE.get() if n != name))
