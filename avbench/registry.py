"""Register objects handed to plugin hooks, and what they collect.

Everything here is light: a registration holds names, descriptions and *import strings*;
the factory is imported only when a detector or dataset is actually built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.errors import ConfigError, PluginError
from avbench.paths import check_name

Factory = str | Callable[..., Any]


def resolve_factory(factory: Factory, what: str) -> Any:
    """Import ``"package.module:attr"`` (or return a callable as is)."""
    if not isinstance(factory, str):
        return factory
    module, _, attr = factory.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except ImportError as e:
        raise PluginError(f"{what}: cannot import {factory!r}: {e}") from e
    except AttributeError:
        raise PluginError(f"{what}: {factory!r} names nothing in module {module!r}") from None
    return obj


@dataclass(frozen=True)
class DetectorInfo:
    """A registered detector.

    ``defaults`` are config overrides applied before the user's ``--set`` (this is how the
    ablation variants share one class). ``modality`` is "AV", "V" or "A" (Table 3's column).
    Which table rows a detector fills is said by the table files (``rows``), not here.
    """

    name: str
    factory: Factory
    description: str = ""
    modality: str = "AV"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    plugin: str = ""

    def load(self) -> type:
        from avbench.detector import Detector

        cls = resolve_factory(self.factory, f"detector {self.name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Detector)):
            raise PluginError(f"detector {self.name!r}: {self.factory!r} is not a Detector class")
        return cls

    def make_config(self, overrides: Mapping[str, Any] | None = None) -> Any:
        from avbench.config import apply_overrides

        cls = self.load()
        config = cls.Config()
        config = apply_overrides(config, dict(self.defaults), who=f"detector {self.name!r}")
        return apply_overrides(config, dict(overrides or {}), who=f"detector {self.name!r}")

    def create(self, overrides: Mapping[str, Any] | None = None) -> Any:
        cls = self.load()
        config = self.make_config(overrides)
        try:
            det = cls(config)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"detector {self.name!r}: {e}") from None
        det.name = self.name
        return det

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "factory": self.factory if isinstance(self.factory, str) else repr(self.factory),
            "description": self.description,
            "modality": self.modality,
            "defaults": dict(self.defaults),
            "plugin": self.plugin,
        }


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset adapter, or a generated dataset (``generator`` set).

    A generated dataset (the embedded synthetic benchmark) is written by ``generator`` and read
    with the adapter named by ``reads_as``.
    """

    name: str
    factory: Factory | None = None
    description: str = ""
    generator: Factory | None = None
    reads_as: str | None = None
    plugin: str = ""

    def load(self) -> Any:
        if self.factory is None:
            raise PluginError(f"dataset {self.name!r} has no adapter")
        return resolve_factory(self.factory, f"dataset {self.name!r}")

    def load_generator(self) -> Callable[..., Any]:
        if self.generator is None:
            raise PluginError(f"dataset {self.name!r} cannot be generated")
        return resolve_factory(self.generator, f"dataset {self.name!r}")


class _Register:
    kind = "item"

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.current_plugin = ""
        self.conflicts: list[str] = []

    def _add(self, name: str, item: Any) -> None:
        # a name becomes a folder (results store, cache): raising here fails the plugin
        # that registers it (PluginSystem._call), never the CLI
        check_name(self.kind, name, error=PluginError)
        if name in self.items:
            prev = self.items[name].plugin
            self.conflicts.append(
                f"{self.kind} {name!r} registered by both {prev!r} and {self.current_plugin!r};"
                f" keeping {prev!r}"
            )
            return
        self.items[name] = item


class DetectorRegister(_Register):
    """``register(name, factory, description=..., modality=..., defaults=...)``."""

    kind = "detector"

    def __call__(
        self,
        name: str,
        factory: Factory,
        *,
        description: str = "",
        modality: str = "AV",
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if modality not in ("AV", "A", "V"):
            raise PluginError(f"detector {name!r}: modality must be AV, A or V, not {modality!r}")
        self._add(
            name,
            DetectorInfo(
                name=name,
                factory=factory,
                description=description,
                modality=modality,
                defaults=dict(defaults or {}),
                plugin=self.current_plugin,
            ),
        )


class DatasetRegister(_Register):
    """``register(name, factory, description=...)``; generated sets add ``generator``/``reads_as``."""

    kind = "dataset"

    def __call__(
        self,
        name: str,
        factory: Factory | None = None,
        *,
        description: str = "",
        generator: Factory | None = None,
        reads_as: str | None = None,
    ) -> None:
        if factory is None and generator is None:
            raise PluginError(f"dataset {name!r}: give an adapter factory or a generator")
        self._add(
            name,
            DatasetInfo(
                name=name,
                factory=factory,
                description=description,
                generator=generator,
                reads_as=reads_as,
                plugin=self.current_plugin,
            ),
        )


@dataclass(frozen=True)
class ProtocolSource:
    path: Path
    plugin: str
    #: the file as parsed when it was registered (a :class:`~avbench.protocols.Protocol`)
    protocol: Any = field(default=None, compare=False, repr=False)


class ProtocolRegister:
    """``register.file(path)`` adds one protocol TOML; ``register.directory(path)`` adds all."""

    def __init__(self) -> None:
        self.sources: list[ProtocolSource] = []
        self.current_plugin = ""

    def file(self, path: str | Path) -> None:
        p = Path(path)
        if not p.is_file():
            raise PluginError(f"protocol file not found: {p}")
        self._add(p)

    def directory(self, path: str | Path) -> None:
        d = Path(path)
        if not d.is_dir():
            raise PluginError(f"protocol directory not found: {d}")
        for p in sorted(d.glob("*.toml")):
            self._add(p)

    def _add(self, path: Path) -> None:
        """Parse the file now: a bad one (a name that is no identifier, a malformed split)
        raises here and fails the plugin that registers it, not every later command."""
        from avbench.protocols import load_protocol

        protocol = load_protocol(path, plugin=self.current_plugin)
        self.sources.append(ProtocolSource(path, self.current_plugin, protocol))

    __call__ = file
