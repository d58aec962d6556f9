"""What a user reads when something goes wrong: command-line mistakes get Typer's usage message
(exit 2), a plugin's exception names the plugin, the method and the file:line (exit 1), an
OSError names the path and the cause. Never a traceback without --debug."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from avbench import hookimpl
from avbench.failures import describe_failure, describe_os_error
from avbench.results import atomic_write_bytes
from avbench.testing import run_cli, temporary_plugin

# -- command-line mistakes, through the real CLI --------------------------------------------


@pytest.mark.parametrize(("args", "says"), [
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "--protocol", "intra"], "Missing option '--detector'"),
    (["run", "-d", "sync-corr", "-p", "intra", "--seed", "x"], "'--seed'"),
    (["table", "--table", "nine"], "'--table'"),
    (["detectors", "show"], "Missing argument"),
    (["nosuch"], "No such command 'nosuch'"),
    (["--debug", "table", "--table", "nine"], "'--table'"),
    (["--debug", "run", "--bogus"], "No such option"),
])
def test_command_line_mistakes_exit_2_with_the_usage_message(args, says):
    r = subprocess.run([sys.executable, "-m", "avbench", *args], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Usage: avbench" in r.stderr and says in r.stderr, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_command_line_mistakes_in_process():
    r = run_cli(["table", "--table", "nine"])
    assert r.exit_code == 2 and "Usage: avbench table" in r.stderr, r.output
    assert "internal error" not in r.output
    # tables are data: a number no table file declares is named, with the ones that exist
    r = run_cli(["table", "--table", "9"])
    assert r.exit_code == 2 and "no table 9; tables exist: 1, 2, 3, 4, 5" in r.stderr, r.output
    r = run_cli(["--debug", "run", "--seed", "x", "-d", "a", "-p", "b"])  # never raises
    assert r.exit_code == 2 and "'--seed'" in r.stderr, r.output


def test_no_arguments_print_the_help():
    r = run_cli(["data"])
    assert r.exit_code == 2 and "synth" in r.output and "error" not in r.output.lower()


# -- an exception in a plugin's code --------------------------------------------------------


def _line_of(marker: str) -> int:
    src = Path(__file__).read_text().splitlines()
    (line,) = [i for i, text in enumerate(src, 1) if text.rstrip().endswith(marker)]
    return line


def _boom_plugin(where: str):
    import torch
    from torch import nn

    from avbench.detector import InputSpec
    from avbench.torch_detector import TorchConfig, TorchDetector

    class BoomDetector(TorchDetector):
        Config = TorchConfig

        def input_spec(self):
            return InputSpec(frames=4, size=16)

        def build_model(self):
            if where == "build_model":
                return nn.Linear(4, "two")  # raises inside torch # boom-build
            return nn.Linear(4, 2)

        def loss(self, model, batch):
            return self._check(batch), {}

        def _check(self, batch):
            raise RuntimeError("the plugin's loss broke")  # boom-loss

        def scores(self, model, batch):
            return {"score": torch.full((len(batch["label"]),), 0.5)}

    plugin = types.SimpleNamespace()

    @hookimpl
    def avbench_register_detectors(register):
        register("boom", BoomDetector, description="raises")

    plugin.avbench_register_detectors = avbench_register_detectors
    return plugin


@pytest.mark.slow
@pytest.mark.parametrize(("where", "method", "marker"), [
    ("loss", "BoomDetector.loss()", "# boom-loss"),
    ("build_model", "BoomDetector.build_model()", "# boom-build"),
])
def test_a_plugins_exception_names_the_plugin_method_and_line(synthetic_root, tmp_path, where,
                                                              method, marker):
    args = ["run", "-d", "boom", "-p", "cross-manip", "--fold", "RVFA", "--data",
            f"fakeavceleb={synthetic_root}", "--out", str(tmp_path), "--quiet", "--workers", "0"]
    with temporary_plugin(_boom_plugin(where), "boom-plugin"):
        r = run_cli(args)
        assert r.exit_code == 1, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("error: plugin 'boom-plugin' failed in " + method), lines[0]
        assert f"{__file__}:{_line_of(marker)}:" in lines[0], lines[0]
        assert "internal error" not in r.output and "Traceback" not in r.output
        runs = list(tmp_path.rglob("run.json"))
        if where == "build_model":  # the model is built before the run folder is made
            assert not runs
        else:
            (run_json,) = runs
            info = json.loads(run_json.read_text())
            assert info["status"] == "failed" and "the plugin's loss broke" in info["error"]

        with pytest.raises((RuntimeError, TypeError)):  # --debug: the whole traceback
            run_cli(["--debug", *args])


def test_a_loose_plugin_files_exception_names_the_file(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "looseboom.py").write_text(
        "from avbench import hookimpl\n"
        "from avbench.detector import Detector\n"
        "\n"
        "class Loose(Detector):\n"
        "    def predict(self, batch, ctx):\n"
        "        return {}\n"
        "\n"
        "    def input_spec(self):\n"
        "        return self.frames // 0\n"
        "\n"
        "    frames = 16\n"
        "\n"
        "@hookimpl\n"
        "def avbench_register_detectors(register):\n"
        "    register('loose', Loose)\n")
    r = run_cli(["--plugins-dir", str(plugins), "detectors", "show", "loose"])
    assert r.exit_code == 1, r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: plugin 'looseboom' (--plugins-dir file) failed in "
                           "Loose.input_spec()"), line
    assert "looseboom.py:9: ZeroDivisionError: integer division or modulo by zero" in line, line


def test_an_entry_point_plugin_is_named_with_its_distribution():
    pytest.importorskip("avbench_avprompt")
    import inspect

    from avbench_avprompt.detector import AVPromptDetector

    from avbench.plugins import PluginSystem

    system = PluginSystem()
    det = AVPromptDetector()
    with pytest.raises(TypeError) as info:
        det.loss(None, {})  # calls the model, None, in its _forward
    line, code = describe_failure(info.value, system)
    src, first = inspect.getsourcelines(AVPromptDetector._forward)
    (at,) = [first + i for i, text in enumerate(src) if "return model(" in text]
    assert code == 1 and line.startswith(
        "plugin 'avprompt' (distribution avbench-avprompt ") and " failed in " \
        "AVPromptDetector.loss() at " in line, line
    assert f"{inspect.getsourcefile(AVPromptDetector)}:{at}: TypeError: " in line, line


def test_avbenchs_own_failures_stay_internal_errors(monkeypatch, tmp_path):
    import avbench.config
    import avbench.tables

    # a bug in avbench's own code (a call with arguments the callee does not take)
    monkeypatch.setattr(avbench.tables, "build_and_render", avbench.config.parse_set_items)
    r = run_cli(["table", "--results", str(tmp_path)])
    assert r.exit_code == 1, r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: internal error: TypeError: ") and "plugin" not in line, line


def test_a_message_of_many_lines_is_cut_to_one():
    try:
        raise RuntimeError("Caught ValueError in DataLoader worker process 0.\n"
                           "Original Traceback (most recent call last):\n  File ...")
    except RuntimeError as e:
        line, code = describe_failure(e)
    assert line == ("internal error: RuntimeError: Caught ValueError in DataLoader worker "
                    "process 0. [...]") and code == 1


# -- OSErrors -------------------------------------------------------------------------------


def test_os_errors_name_the_path_and_the_cause():
    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "/r/x.csv"),
         "/r/x.csv: disk full (no space left on device)", 1),
        (OSError(errno.EROFS, "Read-only file system", "/r"), "/r: read-only file system", 1),
        (OSError(errno.EACCES, "Permission denied", "/r"), "/r: permission denied", 1),
        (OSError(errno.ENOTDIR, "Not a directory", "/f/sub"),
         "/f/sub: a part of the path is a file, not a folder", 2),
        (OSError(errno.EISDIR, "Is a directory", "/d"), "/d: is a folder, not a file", 2),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"),
         "/a -> /b: cannot move across file systems", 1),
        (OSError(None, "9182208 requested and 3829632 written", "/c/f.npy"),
         "/c/f.npy: disk full? a short write (9182208 requested and 3829632 written)", 1),
    ]
    for exc, line, code in cases:
        assert describe_os_error(exc) == (line, code), exc
    assert describe_failure(cases[0][0])[0] == cases[0][1]


def _full_disk(monkeypatch, error=None):
    """Every file opened for writing through os.fdopen fails on write, like a full disk."""
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            raise error or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def __getattr__(self, name):
            return getattr(self._f, name)

    def fdopen(fd, mode="r", *a, **k):
        f = real_fdopen(fd, mode, *a, **k)
        return FullFile(f) if "w" in mode else f

    monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.parametrize("error", [None, OSError("9182208 requested and 3829632 written")])
def test_atomic_writes_name_their_path_when_the_disk_is_full(monkeypatch, tmp_path, error):
    target = tmp_path / "sub" / "scores.csv"
    _full_disk(monkeypatch, error)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"x" * 100)
    assert info.value.filename == str(target)
    assert not list(target.parent.iterdir())  # no temporary file left behind
    line, code = describe_os_error(info.value)
    assert line.startswith(f"{target}: disk full") and code == 1


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "run.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == mode


def test_a_full_disk_through_the_cli(monkeypatch, synthetic_root, tmp_path):
    lists = tmp_path / "lists"
    _full_disk(monkeypatch)
    r = run_cli(["protocols", "show", "intra", "--data", f"fakeavceleb={synthetic_root}",
                 "--write-lists", str(lists)])
    assert r.exit_code == 1, r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {lists / 'intra-train.txt'}: disk full"), line
    assert "internal error" not in line and "Traceback" not in r.output


def test_a_file_where_a_folder_belongs_is_a_usage_error(synthetic_root, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    r = run_cli(["protocols", "show", "intra", "--data", f"fakeavceleb={synthetic_root}",
                 "--write-lists", str(afile / "lists")])
    assert r.exit_code == 2, r.output
    (line,) = r.stderr.strip().splitlines()
    assert str(afile) in line and "not a folder" in line and "internal error" not in line, line


def test_a_negative_seed_is_refused_before_any_work(tmp_path):
    """A seed numpy cannot take is the user's mistake, said before indexing or training (it
    used to fail in the bootstrap, after training, as an internal error)."""
    r = run_cli(["run", "-d", "sync-corr", "-p", "intra", "--seed", "-1",
                 "--data", "fakeavceleb=/nonexistent", "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "--seed -1: give a whole number >= 0" in r.stderr, r.output
    assert not any(tmp_path.iterdir())
    r = run_cli(["data", "synth", str(tmp_path / "s"), "--seed", "-3"])
    assert r.exit_code == 2 and "'--seed'" in r.stderr, r.output


@pytest.mark.parametrize("command", [
    ["run", "-d", "sync-corr", "-p", "intra"],
    ["protocols", "show", "intra"],
])
def test_a_misspelt_dataset_name_is_named_not_ignored(command, tmp_path):
    r = run_cli([*command, "--data", "fakavceleb=synthetic"])
    assert r.exit_code == 2, r.output
    assert ("--data fakavceleb=...: unknown dataset 'fakavceleb' (did you mean 'fakeavceleb'?)"
            in " ".join(r.stderr.split())), r.output
    assert "intra v" not in r.stdout  # protocols show says nothing before the error


def test_a_missing_dataset_root_is_named_once(tmp_path):
    r = run_cli(["protocols", "show", "intra", "--data", f"fakeavceleb={tmp_path}/nope"])
    assert r.exit_code == 2, r.output
    line = " ".join(r.stderr.split())
    assert f"root {tmp_path}/nope does not exist" in line and line.count("nope") == 1, line
