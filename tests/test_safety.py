"""Safe paths and nothing vanishing (issue 13, points 4 and 5): names that become folders are
checked identifiers, every run folder stays inside --out, dataset scans never leave the root or
loop, and problems found while indexing are shown, with file and line, at the start of a run."""

from __future__ import annotations

import os
import time
import types
from pathlib import Path

import pytest
from test_fakeavceleb import EXCERPT_ROWS, listed

from avbench import hookimpl
from avbench.datasets.fakeavceleb import FakeAVCelebAdapter
from avbench.datasets.kodf import KoDFAdapter
from avbench.datasets.resolve import ensure_generated, index_line
from avbench.detector import Detector
from avbench.errors import AvbenchError, DataError, ProtocolError, ResultsError
from avbench.paths import check_name, ensure_inside, name_problem, walk_files
from avbench.plugins import get_plugins
from avbench.protocols import load_protocol
from avbench.registry import DatasetInfo
from avbench.results import run_folder
from avbench.testing import run_cli, temporary_plugin

GOOD = ["intra", "cross-manip", "cross-dataset", "RVFA", "FVRA-WL", "FVFA-GAN", "sync-corr",
        "mfcc-logreg", "avprompt-no-cmfm", "synthetic-kodf", "v1.2", "resnet18+lstm", "a_b", "7"]
BAD = ["", "../x", "../../../x", "..", ".", "/abs", "/", "a/b", "a\\b", "C:\\x", "~", ".hidden",
       "-x", "a b", "tab\there", "new\nline", "trailing\n", "nul\x00", "bell\x07", "x..y", "x.",
       "con", "NUL.txt", "a" * 101, "é"]


@pytest.mark.parametrize("name", GOOD)
def test_names_that_are_identifiers_pass(name):
    assert name_problem(name) is None
    assert check_name("protocol", name) == name


@pytest.mark.parametrize("name", BAD)
def test_names_that_are_not_identifiers_are_refused_in_one_line(name):
    assert name_problem(name)
    with pytest.raises(ProtocolError) as e:
        check_name("fold", name, where="p.toml", error=ProtocolError)
    msg = str(e.value)
    assert msg.startswith(f"p.toml: fold name {name!r} ") and "\n" not in msg


def test_non_strings_are_refused():
    assert name_problem(5) and name_problem(None)


def test_every_registered_name_is_an_identifier():
    system = get_plugins()
    assert not system.warnings
    names = [*system.detectors, *system.datasets]
    for src in system.protocol_sources:
        p = load_protocol(src.path)
        names += [p.name, *p.fold_names]
    assert {"cross-manip", "FVRA-WL", "avprompt-no-cmfm"} <= set(names)
    assert [n for n in names if name_problem(n)] == []


# -- protocol files -----------------------------------------------------------------------------


def _protocol(tmp_path: Path, name: str = "ok", fold: str | None = None) -> Path:
    text = load_protocol(Path(__file__).parents[1] / "protocols" / "intra.toml").path.read_text()
    text = text.replace('name = "intra"', f"name = {_toml(name)}")
    if fold is not None:
        text += f"\n[folds.{_toml(fold)}]\ntest.where.type = [\"RealVideo-RealAudio\"]\n"
    f = tmp_path / "p.toml"
    f.write_text(text, encoding="utf-8")
    return f


def _toml(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                         for c in s) + '"'


@pytest.mark.parametrize("name", ["../../../x", "/abs/path", "a/b", "evil\x07", ""])
def test_a_protocol_name_that_is_a_path_is_refused_at_load(tmp_path, name):
    f = _protocol(tmp_path, name)
    with pytest.raises(ProtocolError) as e:
        load_protocol(f)
    assert str(e.value).startswith(f"p.toml: protocol name {name!r} ")


@pytest.mark.parametrize("fold", ["../x", "/abs", "a\\b", ".."])
def test_a_fold_name_that_is_a_path_is_refused_at_load(tmp_path, fold):
    with pytest.raises(ProtocolError, match=r"^p\.toml: fold name "):
        load_protocol(_protocol(tmp_path, fold=fold))


def test_fold_names_differing_only_in_case_are_refused(tmp_path):
    f = _protocol(tmp_path, fold="RVFA")
    f.write_text(f.read_text() + '\n[folds.rvfa]\ntest.where.type = ["RealVideo-RealAudio"]\n')
    with pytest.raises(ProtocolError, match="folds 'RVFA' and 'rvfa' differ only in case"):
        load_protocol(f)


def test_run_with_a_protocol_named_like_a_path_writes_nothing(tmp_path):
    """`name = "../../../x"` used to write results outside --out."""
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    f = _protocol(work, "../../../escaped")
    r = run_cli(["run", "-d", "sync-corr", "-p", str(f), "--data", "fakeavceleb=synthetic",
                 "--out", str(work / "out"), "--quiet"])
    assert r.exit_code == 2, r.output
    (line,) = r.stderr.strip().splitlines()
    assert "protocol name '../../../escaped'" in line and "p.toml" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c", "p.toml"]


# -- plugins --------------------------------------------------------------------------------------


class _Constant(Detector):
    trainable = False

    def predict(self, batch, ctx):  # pragma: no cover - never run
        raise NotImplementedError


def _plugin(detector: str | None = None, protocol_dir: Path | None = None):
    mod = types.ModuleType("badnames")

    @hookimpl
    def avbench_register_detectors(register):
        register(detector, _Constant)

    @hookimpl
    def avbench_register_protocols(register):
        register.directory(protocol_dir)

    if detector is not None:
        mod.avbench_register_detectors = avbench_register_detectors
    if protocol_dir is not None:
        mod.avbench_register_protocols = avbench_register_protocols
    return mod


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "a/b", ""])
def test_a_plugin_registering_a_bad_detector_name_fails_alone(name):
    with temporary_plugin(_plugin(detector=name), "badnames"):
        system = get_plugins()
        (status,) = [s for s in system.statuses if s.name == "badnames"]
        assert not status.ok and f"detector name {name!r}" in status.error
        assert name not in system.detectors and "sync-corr" in system.detectors
        r = run_cli(["detectors"])
        assert r.exit_code == 0 and "sync-corr" in r.stdout, r.output
        assert "badnames" in r.stderr and "detector name" in r.stderr


def test_a_plugin_registering_a_bad_protocol_file_fails_alone(tmp_path):
    _protocol(tmp_path, "../../../x")
    with temporary_plugin(_plugin(protocol_dir=tmp_path), "badnames"):
        system = get_plugins()
        (status,) = [s for s in system.statuses if s.name == "badnames"]
        assert not status.ok and "protocol name '../../../x'" in status.error
        r = run_cli(["protocols"])
        assert r.exit_code == 0 and "cross-manip" in r.stdout, r.output
        assert "badnames" in r.stderr


# -- files written stay inside --out or the cache ----------------------------------------------


def test_run_folder_is_inside_out(tmp_path):
    d = run_folder(tmp_path, "cross-manip", "FVRA-WL", "avprompt-no-cmfm", "20250101-000000-abc")
    assert d == tmp_path / "cross-manip" / "FVRA-WL" / "avprompt-no-cmfm" / "20250101-000000-abc"
    assert run_folder(tmp_path, "intra", None, "sync-corr", "x").parent.parent.name == "all"


@pytest.mark.parametrize("args", [
    ("../../../x", None, "det", "r"), ("/abs", None, "det", "r"), ("p", "../f", "det", "r"),
    ("p", None, "/etc", "r"), ("p", None, "det", "../../r"), ("p", None, "d\x00", "r"),
])
def test_run_folder_refuses_names_that_leave_out(tmp_path, args):
    with pytest.raises(ResultsError):
        run_folder(tmp_path / "out", *args)


def test_run_folder_refuses_a_link_inside_out_that_leads_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "intra").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ResultsError, match="outside"):
        run_folder(tmp_path / "out", "intra", None, "sync-corr", "r")
    # a link *to* out is fine: checked after resolution on both sides
    (tmp_path / "link-to-out").symlink_to(tmp_path / "out")
    assert run_folder(tmp_path / "link-to-out", "x", None, "y", "r").name == "r"


def test_ensure_inside(tmp_path):
    assert ensure_inside(tmp_path, "a/b") == tmp_path / "a" / "b"
    assert ensure_inside(tmp_path, ".") == tmp_path / "."
    for bad in ("..", "../x", "a/../../x", "/etc/passwd"):
        with pytest.raises(AvbenchError, match="outside"):
            ensure_inside(tmp_path, bad)


def test_a_generated_dataset_stays_inside_the_cache(tmp_path):
    info = DatasetInfo("../../evil", generator="avbench.datasets.synthetic:generate_fakeavceleb",
                       reads_as="fakeavceleb")
    with pytest.raises(DataError, match="outside"):
        ensure_generated(info, cache=tmp_path / "cache")
    assert not (tmp_path / "evil-scale1-seed0-v1").exists()
    assert [p.name for p in tmp_path.rglob("*")] == ["cache", "datasets"]


# -- dataset scans never leave the root and never loop -----------------------------------------


def _tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x.mp4").write_bytes(b"12345")
    (root / "top.mp4").write_bytes(b"1")
    return root


def test_walk_files_plain(tmp_path):
    files, problems = walk_files(_tree(tmp_path / "r"))
    assert files == {"a/b/x.mp4": 5, "top.mp4": 1} and problems == []


@pytest.mark.parametrize(("link", "target", "why"), [
    ("a/b/loop", "..", "link loop"),
    ("a/b/self", ".", "link loop"),
    ("a/up", "..", "link loop"),      # to the root itself
    ("up", "..", "outside the dataset root"),
    ("a/root", "/", "outside the dataset root"),
    ("a/abs-loop", None, "link loop"),  # absolute link to the root
])
def test_a_link_loop_or_a_link_out_is_one_problem(tmp_path, link, target, why):
    root = _tree(tmp_path / "r")
    (root / link).symlink_to(target if target is not None else root)
    t = time.perf_counter()
    files, problems = walk_files(root)
    assert time.perf_counter() - t < 5
    assert files == {"a/b/x.mp4": 5, "top.mp4": 1}
    assert [w for w, _ in problems] == [link] and why in problems[0][1]


def test_links_to_folders_inside_are_reported_and_files_inside_followed(tmp_path):
    root = _tree(tmp_path / "r")
    (root / "c").symlink_to("a/b")           # the same videos under a second name: not followed
    (root / "f.mp4").symlink_to("top.mp4")   # a link to a file inside: followed
    files, problems = walk_files(root)
    assert files == {"a/b/x.mp4": 5, "f.mp4": 1, "top.mp4": 1}
    assert problems == [("c", "link to the folder a/b of the dataset; not followed (its files "
                              "are indexed there)")]


def test_chained_loops_and_broken_links(tmp_path):
    root = _tree(tmp_path / "r")
    (root / "p").mkdir()
    (root / "q").mkdir()
    (root / "p" / "to-q").symlink_to("../q")
    (root / "q" / "to-p").symlink_to("../p")   # p -> q -> p
    (root / "q" / "to-q").symlink_to("../q")   # q -> q
    (root / "gone.mp4").symlink_to("nowhere.mp4")
    (tmp_path / "outside.mp4").write_bytes(b"xx")
    (root / "out.mp4").symlink_to(tmp_path / "outside.mp4")
    files, problems = walk_files(root)
    assert files == {"a/b/x.mp4": 5, "top.mp4": 1}
    got = dict(problems)
    assert len(got) == len(problems) == 5  # once each, by the link's own path
    assert set(got) == {"gone.mp4", "out.mp4", "p/to-q", "q/to-p", "q/to-q"}
    assert "broken link" in got["gone.mp4"] and "outside" in got["out.mp4"]
    assert "not followed" in got["p/to-q"] and "loop" in got["q/to-q"]


def test_many_links_stay_fast(tmp_path):
    """Sixteen levels of two links each to the next level: 2**16 paths if every link were
    followed; one visit per folder here."""
    root = tmp_path / "r"
    (root / "l16").mkdir(parents=True)
    (root / "l16" / "v.mp4").write_bytes(b"1")
    for i in range(15, -1, -1):
        (root / f"l{i}").mkdir()
        for k in "xy":
            (root / f"l{i}" / k).symlink_to(f"../l{i + 1}")
    t = time.perf_counter()
    files, problems = walk_files(root)
    assert time.perf_counter() - t < 5
    assert files == {"l16/v.mp4": 1} and len(problems) == 32


def test_kodf_with_a_loop_and_a_link_to_root(tmp_path):
    import numpy as np

    from avbench.datasets.synth.writer import write_av

    root = tmp_path / "kodf"
    for rel in ("original_videos/p/a.mp4", "synthesized_videos/dfl/p/b.mp4"):
        write_av(root / rel, np.zeros((4, 16, 16, 3), np.uint8), np.zeros(3200, np.float32),
                 fps=25, sample_rate=16000)
    (root / "original_videos" / "p" / "loop").symlink_to("..")
    (root / "synthesized_videos" / "root").symlink_to("/")
    idx = KoDFAdapter().index(root)
    assert len(idx.records) == 2
    assert sorted(p.where for p in idx.problems) == ["original_videos/p/loop",
                                                      "synthesized_videos/root"]


# -- nothing vanishes: the run start names its problems ------------------------------------------


def _excerpt_with_a_typo(root: Path) -> Path:
    """The excerpt's tree (empty files do for indexing), one race misspelt on line 3."""
    data = EXCERPT_ROWS.encode()
    for rel in dict.fromkeys(listed(data)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0" * 16)
    lines = EXCERPT_ROWS.split("\r\n")
    assert ",Asian (East)," in lines[2]
    lines[2] = lines[2].replace(",Asian (East),", ",Asian (Eats),")
    (root / "meta_data.csv").write_bytes("\r\n".join(lines).encode())
    return root


def test_index_line_names_the_first_problems_and_the_command(tmp_path):
    idx = FakeAVCelebAdapter().index(_excerpt_with_a_typo(tmp_path / "fav"))
    assert len(idx.problems) == 2
    line = index_line("fakeavceleb", "data/my fav", idx, first=1)
    assert line.startswith("[bold]fakeavceleb[/]: 20 videos indexed, 2 problem(s) noted: "
                           "meta_data.csv:3: race 'Asian (Eats)' is not one of ")
    assert "; and 1 more (all of them: avbench data check --data 'fakeavceleb=data/my fav')" \
        in line
    assert "\n" not in line


def test_run_start_shows_the_problems_and_a_one_class_split_stops_it(tmp_path):
    """The excerpt's test group holds one real video and no fake: an error before training,
    after the index line has said what the problems are."""
    root = _excerpt_with_a_typo(tmp_path / "fav")
    r = run_cli(["run", "-d", "sync-corr", "-p", "intra", "--data", f"fakeavceleb={root}",
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 2, r.output
    (line,) = [ln for ln in r.stdout.splitlines() if "videos indexed" in ln]
    assert "2 problem(s) noted: meta_data.csv:3: race 'Asian (Eats)'" in line
    assert f"avbench data check --data fakeavceleb={root}" in line
    err = r.stderr.strip().splitlines()
    assert err == ["error: protocol intra: split test holds only real videos (1 of "
                   "fakeavceleb); a split needs both real and fake videos"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("run.json"))


def test_data_check_lists_every_problem_with_file_and_line(tmp_path):
    root = _excerpt_with_a_typo(tmp_path / "fav")
    for i in range(60):  # more than a screenful of problems: all are listed
        (root / f"stray{i:02d}.mp4").write_bytes(b"\0")
    r = run_cli(["data", "check", "--no-decode", "--data", f"fakeavceleb={root}"])
    assert r.exit_code == 0, r.output
    assert "meta_data.csv:3: race 'Asian (Eats)' is not one of" in r.stdout
    assert all(f"stray{i:02d}.mp4: not listed" in r.stdout for i in range(60))
    assert "more" not in r.stdout


def test_unreadable_folders_are_problems(tmp_path, monkeypatch):
    root = _tree(tmp_path / "r")
    (root / "a" / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):  # as a folder without read permission (root could read it anyway)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr("avbench.paths.os.scandir", scandir)
    files, problems = walk_files(root)
    assert files == {"a/b/x.mp4": 5, "top.mp4": 1}
    assert problems == [("a/locked", "cannot list the folder (Permission denied); skipped")]
