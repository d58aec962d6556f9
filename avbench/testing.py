"""Helpers for testing avbench plugins (and avbench itself).

- ``synthetic_benchmark``: a pytest fixture (import it into your conftest.py or test module)
  that returns the root of the embedded synthetic benchmark at its smallest scale (real,
  decodable videos in FakeAVCeleb's layout, generated once into the avbench cache, as
  ``--data fakeavceleb=synthetic`` does), for ``--data fakeavceleb=<root>``;
- ``temporary_plugin(obj)``: register an in-process plugin (a module or an object with hook
  functions) for the duration of a ``with`` block;
- ``run_cli(args)``: run the ``avbench`` CLI in-process (with the commands plugins add, as the
  ``avbench`` program has them) and capture its exit code and output.

Example::

    from avbench.testing import run_cli, synthetic_benchmark  # noqa: F401

    def test_my_detector(synthetic_benchmark, tmp_path):
        r = run_cli(["run", "--detector", "mydet", "--protocol", "intra",
                     "--data", f"fakeavceleb={synthetic_benchmark}", "--out", str(tmp_path)])
        assert r.exit_code == 0, r.stderr
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import pytest
except ImportError:  # pragma: no cover - the fixture needs pytest, the rest does not
    pytest = None

def synthetic_benchmark_root(scale: int = 1, seed: int = 0) -> Path:
    """Root of the embedded synthetic benchmark (generated into the avbench cache once)."""
    from avbench.datasets.resolve import ensure_generated
    from avbench.plugins import get_plugins

    return ensure_generated(get_plugins().dataset("synthetic"), scale=scale, seed=seed)


if pytest is not None:

    @pytest.fixture(scope="session")
    def synthetic_benchmark() -> Path:
        """Root of the synthetic FakeAVCeleb-shaped benchmark (smallest scale, seed 0)."""
        return synthetic_benchmark_root()


@contextlib.contextmanager
def temporary_plugin(plugin: Any, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` while the block runs; yields the name it is registered under."""
    from avbench.plugins import register_plugin, unregister_plugin

    reg = register_plugin(plugin, name)
    try:
        yield reg
    finally:
        unregister_plugin(reg)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(args: list[str], env: Mapping[str, str] | None = None) -> CliResult:
    """Run ``avbench ARGS`` in this process; errors end as one line on stderr, as in a shell."""
    from avbench.cli import run_cli as _run

    env = {"COLUMNS": os.environ.get("COLUMNS", "200"), **(env or {})}
    old = {k: os.environ.get(k) for k in env}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _run(list(args))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(code, out.getvalue(), err.getvalue())
