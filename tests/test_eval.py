"""`avbench eval`: a trained run's saved detector scored on another protocol's test split,
recorded as an evaluation-only run that tables verify; refused on overlap with the source
run's training or validation videos, and for sources that cannot be scored again."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

from avbench.engine.restore import FIT_VIDEOS, Source, check_no_overlap
from avbench.errors import LeakageError
from avbench.records import VideoRecord
from avbench.testing import run_cli

PLUGINS = Path(__file__).parent / "plugins"
ROOT = Path(__file__).resolve().parents[1]


def _only(out: Path, pattern: str) -> Path:
    found = sorted(p.parent for p in out.glob(f"{pattern}/run.json"))
    assert len(found) == 1, found
    return found[0]


def _data(root: Path, kodf: Path) -> list[str]:
    return ["--data", f"fakeavceleb={root}", "--data", f"kodf={kodf}"]


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> Path:
    """A complete mfcc-logreg run on intra."""
    out = tmp_path_factory.mktemp("source")
    r = run_cli(["run", "-d", "mfcc-logreg", "-p", "intra", "--data", f"fakeavceleb={synthetic_root}",
                 "--out", str(out), "--quiet", "--seed", "5"])
    assert r.exit_code == 0, r.output
    return _only(out, "intra/all/mfcc-logreg/*")


@pytest.fixture(scope="module")
def trained_rvfa(synthetic_root, tmp_path_factory) -> Path:
    """A complete mfcc-logreg run on cross-manip's RVFA fold (trained without RVFA fakes)."""
    out = tmp_path_factory.mktemp("source_rvfa")
    r = run_cli(["run", "-d", "mfcc-logreg", "-p", "cross-manip", "--fold", "RVFA", "--data",
                 f"fakeavceleb={synthetic_root}", "--out", str(out), "--quiet", "--seed", "5"])
    assert r.exit_code == 0, r.output
    return _only(out, "cross-manip/RVFA/mfcc-logreg/*")


def _split_hashes(run_dir: Path) -> dict[str, str]:
    info = json.loads((run_dir / "run.json").read_text())
    return {k: v["hash"] for k, v in info["splits"].items()}


def _eval(source: Path, out: Path, protocol: str, data: list[str], *extra: str):
    return run_cli(["eval", "--from", str(source), "-p", protocol, *data, "--out", str(out),
                    "--quiet", *extra])


def _error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.slow
def test_eval_on_cross_dataset_is_a_verified_evaluation_only_run(trained, synthetic_root,
                                                                  synthetic_kodf_root, tmp_path):
    from avbench.plugins import get_plugins
    from avbench.protocols import all_protocols
    from avbench.tables.verify import verify_folder

    out = tmp_path / "results"
    r = _eval(trained, out, "cross-dataset", _data(synthetic_root, synthetic_kodf_root))
    assert r.exit_code == 0, r.output
    new = _only(out, "cross-dataset/all/mfcc-logreg/*")
    info = json.loads((new / "run.json").read_text())
    src = json.loads((trained / "run.json").read_text())
    assert info["status"] == "complete" and info["evaluation_only"] is True
    block = info["source_run"]
    assert block["run_id"] == trained.name and block["identity"] == src["identity"]
    assert block["folder"] == f"intra/all/mfcc-logreg/{trained.name}"
    assert {k: v["hash"] for k, v in block["splits"].items()} == {
        k: src["splits"][k]["hash"] for k in ("train", "val")}
    assert block["state"]["file"] == "state.npz" and len(block["state"]["sha256"]) == 64
    # the detector as trained: its config, its seed, its checkpoint; only the test split
    assert info["detector"]["config_hash"] == src["detector"]["config_hash"]
    assert info["seed"] == 5 and info["checkpoint"] == src["checkpoint"]
    assert set(info["splits"]) == {"test"} and info["splits"]["test"]["dataset"] == "kodf"
    assert info["n_test_videos"] == info["splits"]["test"]["n"] > 0
    assert "<path>" in info["command"] and str(trained) not in json.dumps(info)
    assert not (new / "state.npz").exists() and not (new / "checkpoints").exists()
    # tables check it as any run, and show it
    checked, reason = verify_folder(new, all_protocols(get_plugins()))
    assert reason is None and checked is not None
    table = run_cli(["table", "--protocol", "cross-dataset", "--results", str(out),
                     "--format", "csv", "--no-published"])
    assert table.exit_code == 0, table.output
    assert "mfcc-logreg" in table.stdout
    # its cell says what the scores are of: a model trained under another protocol
    md = run_cli(["table", "--protocol", "cross-dataset", "--results", str(out),
                  "--format", "markdown", "--no-published"])
    assert "scored by avbench eval from a run trained under intra/all" in md.stdout


@pytest.mark.slow
def test_eval_on_the_runs_own_protocol_gives_its_scores(trained, synthetic_root, tmp_path):
    """The state restored from state.npz scores exactly as the model the run had in memory."""
    r = _eval(trained, tmp_path, "intra", ["--data", f"fakeavceleb={synthetic_root}"])
    assert r.exit_code == 0, r.output
    new = _only(tmp_path, "intra/all/mfcc-logreg/*")
    assert (new / "scores.csv").read_bytes() == (trained / "scores.csv").read_bytes()


@pytest.mark.slow
def test_a_torch_runs_state_pt_is_restored(synthetic_root, tmp_path):
    args = ["--plugins-dir", str(PLUGINS)]
    r = run_cli([*args, "run", "-d", "tinydet", "-p", "intra", "--data",
                 f"fakeavceleb={synthetic_root}", "--set", "epochs=2", "--out",
                 str(tmp_path / "a"), "--quiet"])
    assert r.exit_code == 0, r.output
    source = _only(tmp_path / "a", "intra/all/tinydet/*")
    assert (source / "state.pt").exists()
    r = run_cli([*args, "eval", "--from", str(source), "-p", "intra", "--data",
                 f"fakeavceleb={synthetic_root}", "--out", str(tmp_path / "b"), "--quiet"])
    assert r.exit_code == 0, r.output
    new = _only(tmp_path / "b", "intra/all/tinydet/*")
    assert (new / "scores.csv").read_bytes() == (source / "scores.csv").read_bytes()


def _flipped_protocol(tmp_path: Path) -> Path:
    """intra with the source's validation group (African) as its test group."""
    text = (ROOT / "protocols" / "intra.toml").read_text(encoding="utf-8")
    text = text.replace('name = "intra"', 'name = "flipped"').replace("table = 1\n", "")
    text = text.replace('where = { group = ["African"] }', 'where = { group = ["X"] }')
    text = text.replace('where = { group = ["Caucasian (European)"] }',
                        'where = { group = ["African"] }')
    text = text.replace('where = { group = ["X"] }',
                        'where = { group = ["Caucasian (European)"] }')
    path = tmp_path / "flipped.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_test_videos_the_source_was_selected_on_are_refused(trained, synthetic_root, tmp_path):
    protocol = _flipped_protocol(tmp_path)
    r = _eval(trained, tmp_path / "out", str(protocol), ["--data", f"fakeavceleb={synthetic_root}"])
    line = _error_line(r)
    assert "test video(s) of flipped were in the val split of the source run" in line, line
    assert "(e.g. fakeavceleb:" in line and "/African/" in line, line
    assert not (tmp_path / "out").exists()  # nothing written


def _copy(trained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy" / Path(*trained.parts[-4:])
    shutil.copytree(trained, dst)
    return dst


@pytest.mark.slow
def test_a_source_without_state_is_refused(trained, synthetic_root, tmp_path):
    source = _copy(trained, tmp_path)
    (source / "state.npz").unlink()
    line = _error_line(_eval(source, tmp_path / "out", "intra",
                             ["--data", f"fakeavceleb={synthetic_root}"]))
    assert line == f"error: --from {source}: no state.pt or state.npz (it cannot be restored)"


@pytest.mark.slow
def test_an_incomplete_source_is_refused(trained, synthetic_root, tmp_path):
    source = _copy(trained, tmp_path)
    info = json.loads((source / "run.json").read_text())
    info.update(status="failed", error="TrainingError: non-finite loss")
    (source / "run.json").write_text(json.dumps(info))
    line = _error_line(_eval(source, tmp_path / "out", "intra",
                             ["--data", f"fakeavceleb={synthetic_root}"]))
    assert line == (f"error: --from {source}: the run is failed (TrainingError: non-finite "
                    f"loss); only a complete run can be scored again")


@pytest.mark.slow
def test_an_edited_or_missing_list_of_fit_videos_is_refused(trained, synthetic_root, tmp_path):
    source = _copy(trained, tmp_path)
    listed = source / FIT_VIDEOS
    doc = json.loads(listed.read_text())
    assert sorted(doc) == ["train", "val"] and doc["val"]["dataset"] == "fakeavceleb"
    doc["val"]["ids"] = doc["val"]["ids"][1:]  # a video dropped from the list: no longer checkable
    listed.write_text(json.dumps(doc))
    data = ["--data", f"fakeavceleb={synthetic_root}"]
    line = _error_line(_eval(source, tmp_path / "out", "intra", data))
    assert line.startswith(f"error: {listed}: the ids of split 'val' hash to "), line
    listed.unlink()
    line = _error_line(_eval(source, tmp_path / "out", "intra", data))
    assert line.startswith(f"error: {listed}: missing"), line


@pytest.mark.slow
def test_a_set_that_changes_the_trained_detector_is_refused(trained, synthetic_root, tmp_path):
    line = _error_line(_eval(trained, tmp_path / "out", "intra",
                             ["--data", f"fakeavceleb={synthetic_root}"], "--set", "n_mfcc=13"))
    assert line.startswith("error: --set n_mfcc changes n_mfcc of the run's detector"), line


def test_an_evaluation_only_run_is_not_a_source(tmp_path):
    from avbench.engine.restore import load_source
    from avbench.errors import ResultsError
    from avbench.results import RunRecord

    rec = RunRecord(status="complete", detector_info={"name": "d"},
                    protocol_info={"name": "intra", "version": "1.1"},
                    extra={"evaluation_only": True, "source_run": {"folder": "intra/all/d/r1"}})
    rec.write(tmp_path)
    with pytest.raises(ResultsError, match=r"an evaluation-only run holds no trained state; "
                                           r"give the run it scored \(intra/all/d/r1\)"):
        load_source(tmp_path)


def _split(*keys: tuple[str, str]) -> types.SimpleNamespace:
    return types.SimpleNamespace(records=[VideoRecord(id=i, dataset=d, label=0, label_v=0,
                                                      label_a=0) for d, i in keys])


def test_overlap_is_the_same_dataset_and_id():
    source = Source(record=types.SimpleNamespace(run_id="r1"), state_file=Path("state.pt"),
                    fit_videos={"train": ("fakeavceleb", {"a/1.mp4", "a/2.mp4"}),
                                "val": ("fakeavceleb", {"b/1.mp4"})})
    check_no_overlap(source, _split(("kodf", "a/1.mp4"), ("fakeavceleb", "c/1.mp4")), "P")
    with pytest.raises(LeakageError, match=r"^1 test video\(s\) of P were in the val split of "
                                           r"the source run r1 \(e.g. fakeavceleb:b/1.mp4\)"):
        check_no_overlap(source, _split(("kodf", "b/1.mp4"), ("fakeavceleb", "b/1.mp4")), "P")
    with pytest.raises(LeakageError, match=r"^2 test video\(s\) of P were in the train split"):
        check_no_overlap(source, _split(("fakeavceleb", "a/2.mp4"), ("fakeavceleb", "a/1.mp4")),
                         "P")


def _recorded(config: dict) -> Source:
    from avbench.config import config_hash

    rec = types.SimpleNamespace(detector_info={"config": config}, config_hash=config_hash(config),
                                path=Path("intra/all/mfcc-logreg/r1"))
    return Source(record=rec, state_file=Path("state.npz"), fit_videos={})


def test_the_config_is_rebuilt_from_the_record_or_refused():
    from avbench.config import config_hash, config_to_dict
    from avbench.engine.restore import source_config
    from avbench.errors import ConfigError, ResultsError
    from avbench.plugins import get_plugins

    info = get_plugins().detector("mfcc-logreg")
    as_written = json.loads(json.dumps(config_to_dict(info.make_config({"n_mfcc": "13"}))))
    rebuilt = source_config(_recorded(as_written), info, {})  # tuples come back from lists
    assert rebuilt.n_mfcc == 13 and rebuilt.c_grid == (0.001, 0.01, 0.1, 1.0, 10.0)
    assert config_hash(rebuilt) == config_hash(as_written)
    with pytest.raises(ConfigError, match=r"^--set n_mfcc changes n_mfcc of the run's detector "
                                          r"\(13 -> 20;"):
        source_config(_recorded(as_written), info, {"n_mfcc": "20"})
    older = {k: v for k, v in as_written.items() if k != "n_mels"}
    with pytest.raises(ConfigError, match=r"now has config key 'n_mels' \(40\), which the run's "
                                          r"record lacks"):
        source_config(_recorded(older), info, {})
    with pytest.raises(ResultsError, match=r"has no config key 'gone' now"):
        source_config(_recorded({**as_written, "gone": 1}), info, {})


def _refusal(line: str, source: Path, trained_under: str, target: str, command: str) -> str:
    """The refusal's one line, checked but for the target's hash, which it returns."""
    prefix = (f"error: --from {source}: the run was trained on {trained_under}'s train split "
              f"(hash {_split_hashes(source)['train']}); {target} trains on another (hash ")
    suffix = (f"), so its scores would not be that protocol's: train under it with "
              f"`{command}`")
    assert line.startswith(prefix) and line.endswith(suffix), line
    found = line[len(prefix):-len(suffix)]
    assert len(found) == 16 and found != _split_hashes(source)["train"], line
    return found


@pytest.mark.slow
def test_an_intra_model_is_not_scored_as_a_held_out_manipulation(trained, synthetic_root,
                                                                 trained_rvfa, tmp_path):
    """The intra model saw RVFA fakes in training: its scores on RVFA's test split are not
    cross-manip's RVFA experiment, so eval refuses them (and writes nothing)."""
    out = tmp_path / "out"
    line = _error_line(_eval(trained, out, "cross-manip", ["--data", f"fakeavceleb={synthetic_root}"],
                             "--fold", "RVFA"))
    found = _refusal(line, trained, "intra/all", "cross-manip/RVFA",
                     "avbench run -d mfcc-logreg -p cross-manip --fold RVFA")
    assert found == _split_hashes(trained_rvfa)["train"]  # the hash a run under it records
    assert not out.exists()


@pytest.mark.slow
def test_a_cross_manip_model_is_not_scored_as_intra(trained_rvfa, trained, synthetic_root,
                                                    tmp_path):
    """The RVFA fold's model never saw RVFA fakes: not the intra experiment either, nor any
    other fold's (every fold is checked before anything is written)."""
    data = ["--data", f"fakeavceleb={synthetic_root}"]
    line = _error_line(_eval(trained_rvfa, tmp_path / "a", "intra", data))
    found = _refusal(line, trained_rvfa, "cross-manip/RVFA", "intra/all",
                     "avbench run -d mfcc-logreg -p intra")
    assert found == _split_hashes(trained)["train"]
    line = _error_line(_eval(trained_rvfa, tmp_path / "b", "cross-manip", data))
    _refusal(line, trained_rvfa, "cross-manip/RVFA", "cross-manip/FVRA-WL",
             "avbench run -d mfcc-logreg -p cross-manip --fold FVRA-WL")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_validation_split_must_be_the_sources_too():
    """Same train split, another val split (model selection on other videos): refused too;
    the comparison is of hashes, whichever dataset root the source was run on."""
    from avbench.engine.restore import check_same_training
    from avbench.errors import ProtocolError

    rec = types.SimpleNamespace(run_id="r1", path=Path("intra/all/d/r1"), protocol="intra",
                                fold="all", detector="d",
                                splits={"train": {"hash": "aaaa"}, "val": {"hash": "bbbb"},
                                        "test": {"hash": "cccc"}},
                                detector_info={"config_changes": {"n_mfcc": 20, "cmvn": True,
                                                                  "name": "a b"}})
    source = Source(record=rec, state_file=Path("state.npz"), fit_videos={})
    same = {"train": types.SimpleNamespace(hash="aaaa"), "val": types.SimpleNamespace(hash="bbbb"),
            "test": types.SimpleNamespace(hash="dddd")}
    check_same_training(source, same, "cross-dataset/all", "-p cross-dataset")  # test may differ
    other_val = {**same, "val": types.SimpleNamespace(hash="eeee")}
    with pytest.raises(ProtocolError, match=(
            r"^--from intra/all/d/r1: the run was validated on intra/all's val split \(hash "
            r"bbbb\); P/all validates on another \(hash eeee\), so its scores would not be "
            r"that protocol's: train under it with `avbench run -d d -p P --set cmvn=true "
            r"--set n_mfcc=20 --set 'name=a b'`$")):
        check_same_training(source, other_val, "P/all", "-p P")
