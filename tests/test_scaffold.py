"""`avbench plugin new` makes a package that installs with pip, is found through its entry
point, runs under `avbench run`, and passes its own test; a broken installed plugin is
listed as failed while everything else works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avbench.testing import run_cli

pytestmark = pytest.mark.slow


def _pip_install(pkg: Path, target: Path) -> None:
    # a real install (wheel build through the package's own build backend, metadata and
    # entry points written by pip) into a folder that a child interpreter puts on its path
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(pkg)],
                   check=True, capture_output=True, text=True)


def _avbench(args, target: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "avbench", *args], env=full,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("scaffold")
    r = run_cli(["plugin", "new", "mydet", "--dir", str(base / "avbench-mydet")])
    assert r.exit_code == 0, r.output
    target = base / "site"
    _pip_install(base / "avbench-mydet", target)
    return base, target


def test_installed_plugin_is_listed_and_runs(installed, synthetic_root, avbench_cache):
    base, target = installed
    r = _avbench(["plugins"], target)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "mydet" in x)
    assert "entrypoint" in line and "0.1.0" in line and "ok" in line
    r = _avbench(["run", "--detector", "mydet", "--protocol", "intra", "--data",
                  f"fakeavceleb={synthetic_root}", "--out", str(base / "results"),
                  "--set", "epochs=1", "--quiet"], target,
                 env={"AVBENCH_CACHE": str(avbench_cache)})
    assert r.returncode == 0, r.stderr[-2000:]
    (run_json,) = (base / "results").rglob("run.json")
    info = json.loads(run_json.read_text())
    assert info["status"] == "complete" and info["detector"]["plugin"] == "mydet"
    assert info["versions"]["plugin"] == {"name": "mydet", "version": "0.1.0"}


def test_scaffolded_package_passes_its_own_test(installed, synthetic_root, avbench_cache):
    base, target = installed
    env = {**os.environ, "PYTHONPATH": str(target), "AVBENCH_CACHE": str(avbench_cache)}
    # its test uses avbench.testing's tiny_benchmark fixture
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(base / "avbench-mydet" / "tests")], env=env, capture_output=True,
                       text=True, timeout=900, cwd=base)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]


def test_a_broken_installed_plugin_is_reported_and_harmless(tmp_path):
    pkg = tmp_path / "avbench-broken"
    assert run_cli(["plugin", "new", "broken", "--dir", str(pkg)]).exit_code == 0
    (pkg / "avbench_broken" / "plugin.py").write_text("raise ImportError('missing weights lib')\n")
    target = tmp_path / "site"
    _pip_install(pkg, target)
    r = _avbench(["plugins"], target)
    assert r.returncode == 0
    line = next(x for x in r.stdout.splitlines() if "broken" in x)
    assert "failed" in line and "missing weights lib" in r.stdout
    for args in (["detectors"], ["protocols"], ["--help"]):
        r = _avbench(args, target)
        assert r.returncode == 0, r.stderr
        assert "failed to load" in r.stderr or args == ["--help"]
    r = _avbench(["detectors"], target, env={"AVBENCH_DISABLE_PLUGINS": "broken"})
    assert "failed" not in r.stderr


def test_bad_plugin_names_are_refused(tmp_path):
    r = run_cli(["plugin", "new", "My_Det", "--dir", str(tmp_path / "x")])
    assert r.exit_code == 2 and "lowercase letters" in r.stderr


@pytest.mark.parametrize("name", ["avprompt", "sync-corr"])
def test_names_of_registered_or_installed_plugins_are_refused(tmp_path, name):
    """`plugin new avprompt` would write a package named like the reference plugin's
    distribution (installing it replaces that plugin); a built-in detector's name would
    shadow it. Both are refused and nothing is written."""
    r = run_cli(["plugin", "new", name, "--dir", str(tmp_path / "x")])
    assert r.exit_code == 2 and "choose another name" in r.stderr
    assert "registered detector" in r.stderr or "installed" in r.stderr
    assert not (tmp_path / "x").exists()
