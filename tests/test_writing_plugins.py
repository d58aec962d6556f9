"""docs/writing-plugins.md's complete plugin, written out of the page and run as a user would."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from avbench.testing import run_cli, temporary_plugin

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```\w+\n(.*?)\n```", re.S)


def examples() -> dict[str, str]:
    return {path: code + "\n" for path, code in EXAMPLE.findall(DOC.read_text("utf-8"))}


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    files = examples()
    assert set(files) == {"pyproject.toml", "avbench_mydet/plugin.py",
                          "avbench_mydet/detector.py"}
    for rel, code in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(code, "utf-8")
    (tmp_path / "avbench_mydet" / "__init__.py").write_text("", "utf-8")
    for name in [m for m in sys.modules if m.split(".")[0] == "avbench_mydet"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] == "avbench_mydet"]:
        del sys.modules[name]


def test_the_pyproject_names_the_plugin_module_and_depends_on_avbench(plugin_package):
    meta = tomllib.loads((plugin_package / "pyproject.toml").read_text("utf-8"))["project"]
    assert meta["entry-points"]["avbench"] == {"mydet": "avbench_mydet.plugin"}
    assert any(d.startswith("avbench") for d in meta["dependencies"])


def test_the_plugin_module_registers_without_importing_torch(plugin_package):
    import subprocess

    code = ("import sys; import avbench_mydet.plugin as p; from avbench.registry import "
            "DetectorRegister; r = DetectorRegister(); p.avbench_register_detectors(r); "
            "assert sorted(r.items) == ['mydet', 'mydet-small'], r.items; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=plugin_package)


@pytest.mark.slow
def test_the_complete_plugin_trains_evaluates_and_fills_a_table(plugin_package, synthetic_root,
                                                                tmp_path):
    plugin = importlib.import_module("avbench_mydet.plugin")
    out = tmp_path / "results"
    with temporary_plugin(plugin, "avbench-mydet"):
        shown = run_cli(["detectors", "show", "mydet-small"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.stderr
        assert re.search(r"hidden\s+│\s+16\b", shown.stdout)  # the variant's default
        assert re.search(r"epochs\s+│\s+5\b", shown.stdout)  # the detector's own default
        r = run_cli(["run", "--detector", "mydet", "--protocol", "intra", "--data",
                     f"fakeavceleb={synthetic_root}", "--out", str(out), "--set", "epochs=1",
                     "--quiet"])
        assert r.exit_code == 0, r.stdout + r.stderr
        run_dir = next(out.glob("intra/all/mydet/*"))
        assert (run_dir / "state.pt").exists()
        t = run_cli(["table", "--table", "1", "--results", str(out), "--format", "csv",
                     "--no-published"])
    assert t.exit_code == 0, t.stderr
    # labelled by what --set changed from the detector's default
    row = next(line for line in t.stdout.splitlines() if line.startswith("mydet [epochs=1],"))
    assert ",computed," in row
