"""Helpers for testing avbench plugins (and avbench itself).

- ``tiny_benchmark``: a pytest fixture (import it into your conftest.py or test module) that
  generates a tiny FakeAVCeleb-shaped benchmark of real, decodable videos once per session
  and returns its root, for ``--data fakeavceleb=<root>``;
- ``temporary_plugin(obj)``: register an in-process plugin (a module or an object with hook
  functions) for the duration of a ``with`` block;
- ``run_cli(args)``: run the ``avbench`` CLI in-process and capture its exit code and output.

Example::

    from avbench.testing import run_cli, tiny_benchmark  # noqa: F401

    def test_my_detector(tiny_benchmark, tmp_path):
        r = run_cli(["run", "--detector", "mydet", "--protocol", "intra",
                     "--data", f"fakeavceleb={tiny_benchmark}", "--out", str(tmp_path)])
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

def make_tiny_benchmark(out: str | Path, seed: int = 0) -> Path:
    """Write the tiny FakeAVCeleb-shaped benchmark into ``out`` (if not already there)."""
    from avbench.datasets.synthetic import generate_fakeavceleb

    out = Path(out)
    if (out / "meta_data.csv").exists():
        return out
    return generate_fakeavceleb(out, scale=1, seed=seed, tiny=True)


if pytest is not None:

    @pytest.fixture(scope="session")
    def tiny_benchmark(tmp_path_factory: Any) -> Path:
        """Root of a tiny FakeAVCeleb-shaped benchmark, generated once per test session."""
        return make_tiny_benchmark(tmp_path_factory.mktemp("avbench-tiny") / "FakeAVCeleb_v1.2")


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
    from avbench.plugins import reset_plugins

    env = {"COLUMNS": os.environ.get("COLUMNS", "200"), **(env or {})}
    old = {k: os.environ.get(k) for k in env}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env)
        reset_plugins()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _run(list(args))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_plugins()
    return CliResult(code, out.getvalue(), err.getvalue())
