"""The hooks avbench calls on its plugins.

A plugin is a module (or object) with functions decorated by ``avbench.hookimpl``. Every hook
receives a typed register object; calling its methods is how a plugin contributes detectors,
protocols, datasets or CLI commands. Registration is lazy: a plugin names a factory as an
import string, so listing plugins never imports torch.

Hook signatures only ever grow (new optional arguments); ``AVBENCH_API_VERSION`` is raised
when they do, so a plugin can check what it runs against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:  # pragma: no cover
    import typer

    from avbench.registry import DatasetRegister, DetectorRegister, ProtocolRegister

AVBENCH_API_VERSION = 1

hookspec = HookspecMarker("avbench")
hookimpl = HookimplMarker("avbench")


@hookspec
def avbench_register_detectors(register: DetectorRegister) -> None:
    """Register detectors: ``register(name, factory="pkg.module:Class", description=...)``."""


@hookspec
def avbench_register_protocols(register: ProtocolRegister) -> None:
    """Register protocol files: ``register.file(path)`` or ``register.directory(path)``."""


@hookspec
def avbench_register_datasets(register: DatasetRegister) -> None:
    """Register dataset adapters: ``register(name, factory="pkg.module:Adapter", ...)``."""


@hookspec
def avbench_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``avbench`` Typer application."""
