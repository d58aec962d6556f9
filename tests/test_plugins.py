"""The plugin system: built-ins, inline plugins, loose files, env switches, failures."""

import types

import pytest

from avbench import hookimpl
from avbench.detector import Detector
from avbench.errors import PluginError
from avbench.plugins import PluginSystem, get_plugins
from avbench.testing import run_cli, temporary_plugin


class ConstantDetector(Detector):
    trainable = False

    def predict(self, batch, ctx):
        import numpy as np

        return {"score": np.full(len(batch), 0.5)}


def _detector_plugin(name):
    mod = types.ModuleType(f"plug_{name}")

    @hookimpl
    def avbench_register_detectors(register):
        register(name, ConstantDetector, description="always 0.5", modality="V")

    mod.avbench_register_detectors = avbench_register_detectors
    return mod


def test_builtins_register_through_the_hooks():
    system = PluginSystem(entry_points=False)
    assert {"sync-corr", "mfcc-logreg"} <= set(system.detectors)
    assert {"fakeavceleb", "kodf", "synthetic", "synthetic-kodf"} <= set(system.datasets)
    assert {s.path.name for s in system.protocol_sources} >= {
        "intra.toml", "cross-manip.toml", "cross-dataset.toml"}
    builtin = [s for s in system.statuses if s.source == "builtin"]
    assert builtin and all(s.ok for s in builtin)
    assert "avbench_register_detectors" in builtin[0].hooks


def test_temporary_plugin_adds_and_removes_a_detector():
    with temporary_plugin(_detector_plugin("const"), "const-plugin"):
        info = get_plugins().detector("const")
        assert info.plugin == "const-plugin" and info.modality == "V"
        r = run_cli(["detectors"])
        assert r.exit_code == 0 and "const" in r.stdout
    with pytest.raises(PluginError, match="unknown detector 'const'"):
        get_plugins().detector("const")


def test_duplicate_names_keep_the_first_and_warn():
    with temporary_plugin(_detector_plugin("sync-corr"), "impostor"):
        system = get_plugins()
        assert system.detector("sync-corr").plugin == "avbench.builtin"
        assert any("registered by both" in w for w in system.warnings)


def test_broken_plugin_files_are_reported_and_the_rest_works(tmp_path):
    (tmp_path / "good.py").write_text(
        "from avbench import hookimpl\n"
        "from avbench.baselines.sync_corr import SyncCorrDetector\n"
        "@hookimpl\n"
        "def avbench_register_detectors(register):\n"
        "    register('good-det', 'avbench.baselines.sync_corr:SyncCorrDetector')\n"
    )
    (tmp_path / "broken_import.py").write_text("import no_such_module_xyz\n")
    (tmp_path / "broken_hook.py").write_text(
        "from avbench import hookimpl\n"
        "@hookimpl\n"
        "def avbench_register_detectors(register):\n"
        "    raise RuntimeError('boom')\n"
    )
    (tmp_path / "typo_hook.py").write_text(
        "from avbench import hookimpl\n"
        "@hookimpl\n"
        "def avbench_register_detector(register):\n"
        "    pass\n"
    )
    r = run_cli(["--plugins-dir", str(tmp_path), "plugins"])
    assert r.exit_code == 0
    assert "broken_import" in r.stdout and "No module named 'no_such_module_xyz'" in r.stdout
    assert "RuntimeError: boom" in r.stdout
    assert "unknown hook(s) avbench_register_detector" in r.stdout
    assert "3 plugin(s) failed to load" in r.stderr
    r = run_cli(["--plugins-dir", str(tmp_path), "detectors"])
    assert r.exit_code == 0 and "good-det" in r.stdout and "sync-corr" in r.stdout
    assert "warning" in r.stderr


def test_disable_and_load_switches(tmp_path):
    (tmp_path / "extra.py").write_text(
        "from avbench import hookimpl\n"
        "@hookimpl\n"
        "def avbench_register_detectors(register):\n"
        "    register('extra-det', 'avbench.baselines.sync_corr:SyncCorrDetector')\n"
    )
    r = run_cli(["--plugins-dir", str(tmp_path), "detectors"])
    assert "extra-det" in r.stdout
    r = run_cli(["--plugins-dir", str(tmp_path), "detectors"],
                env={"AVBENCH_DISABLE_PLUGINS": "extra"})
    assert "extra-det" not in r.stdout
    r = run_cli(["detectors"], env={"AVBENCH_DISABLE_PLUGINS": "avbench.builtin"})
    assert "sync-corr" not in r.stdout
    # AVBENCH_LOAD_PLUGINS="" loads no entry-point plugin; built-ins stay
    r = run_cli(["plugins"], env={"AVBENCH_LOAD_PLUGINS": ""})
    assert "entrypoint" not in r.stdout and "avbench.builtin" in r.stdout


def test_plugins_dir_must_exist(tmp_path):
    r = run_cli(["--plugins-dir", str(tmp_path / "nope"), "detectors"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"error: --plugins-dir {tmp_path / 'nope'}: not a directory"]


def _command_plugin():
    mod = types.ModuleType("plug_cmd")

    @hookimpl
    def avbench_register_commands(app):
        @app.command("hello")
        def hello(who: str = "world") -> None:
            """Say hello."""
            print(f"hello {who}")

    mod.avbench_register_commands = avbench_register_commands
    return mod


def test_a_plugin_command_runs_through_run_cli():
    with temporary_plugin(_command_plugin(), "cmd-plugin"):
        r = run_cli(["hello", "--who", "tests"])
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == "hello tests"
    assert run_cli(["hello"]).exit_code == 2  # gone with the plugin


def test_trace_switch_writes_hook_calls_to_stderr():
    r = run_cli(["detectors"], env={"AVBENCH_TRACE_PLUGINS": "1"})
    assert r.exit_code == 0
    assert "avbench_register_detectors" in r.stderr
    assert "avbench_register_detectors" not in run_cli(["detectors"]).stderr


def test_a_raising_hook_keeps_its_traceback_and_a_bad_module_none(tmp_path):
    (tmp_path / "boom.py").write_text(
        "from avbench import hookimpl\n"
        "@hookimpl\n"
        "def avbench_register_detectors(register):\n"
        "    raise RuntimeError('boom')\n"
    )
    (tmp_path / "typo.py").write_text("def avbench_nope():\n    pass\n")
    system = PluginSystem(tmp_path, entry_points=False)
    by_name = {s.name: s for s in system.statuses}
    assert "RuntimeError: boom" in by_name["boom"].traceback
    assert by_name["typo"].traceback is None
