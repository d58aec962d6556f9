"""CLI behaviour a new user meets first: light start-up and one-line errors."""

import subprocess
import sys

import pytest

from avbench.testing import run_cli

PROBE = """
import sys
import avbench.cli as cli
code = cli.run_cli({args!r})
heavy = sorted(m for m in ("torch", "pandas", "av", "sklearn", "cv2", "open_clip", "whisper")
               if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["detectors"], ["protocols"],
                                  ["run", "--help"]])
def test_help_and_listings_do_not_import_torch(args):
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True,
                         text=True, check=True).stdout
    assert "HEAVY=\n" in out, out[-500:]


def _one_line_error(r, code=2):
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


def test_unknown_detector():
    line = _one_line_error(run_cli(["run", "--detector", "nope", "--protocol", "intra"]))
    assert "unknown detector 'nope'" in line and "sync-corr" in line


def test_unknown_protocol():
    line = _one_line_error(run_cli(["run", "--detector", "sync-corr", "--protocol", "nope"]))
    assert "unknown protocol 'nope'" in line and "cross-manip" in line


def test_unknown_fold():
    line = _one_line_error(run_cli(["run", "-d", "sync-corr", "-p", "cross-manip", "--fold", "X"]))
    assert "no fold 'X'" in line and "RVFA" in line


def test_bad_set():
    line = _one_line_error(run_cli(["run", "-d", "sync-corr", "-p", "intra", "--set", "nokey=1"]))
    assert "unknown key 'nokey'" in line
    line = _one_line_error(run_cli(["run", "-d", "sync-corr", "-p", "intra", "--set", "oops"]))
    assert "expected KEY=VALUE" in line


def test_missing_dataset_root(tmp_path):
    line = _one_line_error(run_cli(["run", "-d", "sync-corr", "-p", "intra",
                                    "--data", f"fakeavceleb={tmp_path / 'nowhere'}"]))
    assert "nowhere" in line


def test_a_table_before_any_run_shows_the_paper_and_says_how_to_add_rows(tmp_path):
    r = run_cli(["table", "--table", "1", "--results", str(tmp_path / "none"),
                 "--format", "markdown"])
    assert r.exit_code == 0, r.stderr
    assert "reported" in r.stdout and "computed" not in r.stdout.split("**", 2)[2].split("- ")[0]
    assert "No results folder" in r.stdout and "none yet" in r.stdout
    assert "avbench run --detector" in r.stdout
    # without the paper's rows there is nothing to show: the missing folder is the error
    line = _one_line_error(run_cli(["table", "--table", "1", "--no-published",
                                    "--results", str(tmp_path / "none")]))
    assert "results folder not found" in line


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="unknown detector"):
        run_cli(["--debug", "run", "--detector", "nope", "--protocol", "intra"])


def test_version():
    r = run_cli(["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("avbench ")


def test_flags_show_no_type_placeholder():
    """Typer labels flags <bool> although they take no value; ours show none."""
    helps = {}
    for argv in (["--help"], ["table", "--help"], ["run", "--help"], ["data", "check", "--help"],
                 ["plugins", "--help"]):
        r = run_cli(argv, env={"COLUMNS": "160"})
        assert r.exit_code == 0, r.stderr
        helps[" ".join(argv)] = r.stdout
    assert "--ci" in helps["table --help"] and "--help" in helps["--help"]
    assert "<int" in helps["table --help"]  # options that take a value keep their type
    for argv, text in helps.items():
        assert "<bool>" not in text, argv


def test_detectors_show_lists_the_values_a_literal_allows():
    r = run_cli(["detectors", "show", "sync-corr"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "envelope" in ln and "│" in ln)
    assert "'linear' | 'db'" in line and "Literal" not in r.stdout


@pytest.mark.parametrize("command", ["check", "prepare"])
def test_data_commands_find_datasets_as_run_does(command, tmp_path, monkeypatch):
    """Without --data, `data check` / `data prepare` read AVBENCH_DATA_<NAME> and the [data]
    table of avbench.toml, as `avbench run` does (they asked for --data before)."""
    monkeypatch.chdir(tmp_path)
    for var in [v for v in __import__("os").environ if v.startswith("AVBENCH_DATA_")]:
        monkeypatch.delenv(var)
    line = _one_line_error(run_cli(["data", command]))
    assert "no dataset given" in line and "AVBENCH_DATA_" in line and "avbench.toml" in line
    (tmp_path / "avbench.toml").write_text('[data]\nfakeavceleb = "from-toml"\n')
    line = _one_line_error(run_cli(["data", command]))
    assert "from-toml" in line
    line = _one_line_error(run_cli(["data", command],
                                   env={"AVBENCH_DATA_FAKEAVCELEB": str(tmp_path / "from-env")}))
    assert "from-env" in line and "from-toml" not in line


def test_listings_keep_names_whole_on_a_narrow_terminal():
    """A name in `avbench protocols` / `detectors` is what the user copies: never cut."""
    r = run_cli(["protocols"], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "cross-dataset " in r.stdout, r.stdout
    r = run_cli(["detectors"], env={"COLUMNS": "60"})
    assert r.exit_code == 0 and "avprompt-no-cmfm " in r.stdout, r.stdout
