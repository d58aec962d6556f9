"""Protocol semantics (DESIGN.md "Protocols") on the real metadata excerpt and the synthetic set."""

from __future__ import annotations

import hashlib
import json

import pytest
from test_fakeavceleb import EXCERPT_ROWS, listed

from avbench.datasets.fakeavceleb import FakeAVCelebAdapter
from avbench.errors import LeakageError, ProtocolError
from avbench.plugins import get_plugins
from avbench.protocols import (
    SplitSpec,
    build_splits,
    check_vocabulary,
    get_protocol,
    load_protocol,
    select,
)
from avbench.records import VideoRecord
from avbench.testing import run_cli

TRAIN = {"Asian (South)", "Asian (East)", "Caucasian (American)"}
FOLDS = ["RVFA", "FVRA-WL", "FVFA-FS", "FVFA-GAN", "FVFA-WL"]


# The excerpt's test group (Caucasian (European)) holds one real video and no fake, and a
# split of one class is an error; these rows give it one fake of each category.
EUROPEAN_FAKES = "".join(
    f"id00055,-,-,{method},{letter},{type_},Caucasian (European),men,00120_{i}.mp4,"
    f"FakeAVCeleb/{type_}/Caucasian (European)/men/id00055\r\n"
    for i, (method, letter, type_) in enumerate([
        ("rtvc", "B", "RealVideo-FakeAudio"), ("wav2lip", "C", "FakeVideo-RealAudio"),
        ("wav2lip", "D", "FakeVideo-FakeAudio"), ("faceswap-wav2lip", "D", "FakeVideo-FakeAudio"),
        ("fsgan-wav2lip", "D", "FakeVideo-FakeAudio")]))


def _excerpt_tree(root, data: bytes):
    """The tree ``data`` lists (file contents do not matter for splitting), indexed."""
    root.mkdir()
    (root / "meta_data.csv").write_bytes(data)
    for rel in dict.fromkeys(listed(data)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0" * 16)
    return {"fakeavceleb": FakeAVCelebAdapter().index(root)}


@pytest.fixture(scope="module")
def excerpt_index(tmp_path_factory):
    """The excerpt's tree plus :data:`EUROPEAN_FAKES`."""
    root = tmp_path_factory.mktemp("excerpt") / "FakeAVCeleb_v1.2"
    return _excerpt_tree(root, (EXCERPT_ROWS + EUROPEAN_FAKES).encode())


def test_a_split_of_one_class_is_an_error(tmp_path):
    """The excerpt alone: intra's test split would be one real video and no fake."""
    index = _excerpt_tree(tmp_path / "FakeAVCeleb_v1.2", EXCERPT_ROWS.encode())
    with pytest.raises(ProtocolError) as e:
        build_splits(_proto("intra"), None, index)
    assert str(e.value) == ("protocol intra: split test holds only real videos (1 of "
                            "fakeavceleb); a split needs both real and fake videos")
    with pytest.raises(ProtocolError, match=r"^protocol cross-manip \(fold RVFA\): split test "
                                            r"holds only real videos"):
        build_splits(_proto("cross-manip"), "RVFA", index)
    # only fakes: the European real video gone
    rows = [r for r in EXCERPT_ROWS.split("\r\n") if "Caucasian (European)" not in r]
    index = _excerpt_tree(tmp_path / "fakes-only", ("\r\n".join(rows) + EUROPEAN_FAKES).encode())
    with pytest.raises(ProtocolError, match=r"split test holds only fake videos \(5 of"):
        build_splits(_proto("intra"), None, index)


@pytest.fixture(scope="module")
def synthetic_index(synthetic_root):
    return {"fakeavceleb": FakeAVCelebAdapter().index(synthetic_root)}


def _proto(name):
    return get_protocol(name, get_plugins())


def _check_ethnic(splits):
    assert {r.group for r in splits["train"].records} <= TRAIN
    assert {r.group for r in splits["val"].records} == {"African"}
    assert {r.group for r in splits["test"].records} == {"Caucasian (European)"}
    idents = {k: {x for r in s.records for x in (r.identity, *r.targets) if x.startswith("id")}
              for k, s in splits.items()}
    assert not (idents["train"] & idents["val"]) and not (idents["train"] & idents["test"])
    assert not (idents["val"] & idents["test"])


@pytest.mark.parametrize("which", ["excerpt_index", pytest.param("synthetic_index", marks=pytest.mark.slow)])
def test_intra_is_the_ethnic_split_with_every_manipulation(which, request):
    index = request.getfixturevalue(which)
    splits = build_splits(_proto("intra"), None, index)
    _check_ethnic(splits)
    everything = {r.id for r in index["fakeavceleb"].records}
    assert set().union(*({r.id for r in s.records} for s in splits.values())) == everything


@pytest.mark.parametrize("which", ["excerpt_index", pytest.param("synthetic_index", marks=pytest.mark.slow)])
@pytest.mark.parametrize("fold", FOLDS)
def test_cross_manip_folds(which, fold, request):
    index = request.getfixturevalue(which)
    p = _proto("cross-manip")
    check_vocabulary(p, fold, {"fakeavceleb": FakeAVCelebAdapter})
    splits = build_splits(p, fold, index)
    _check_ethnic(splits)
    others = set(FOLDS) - {fold}
    for name in ("train", "val"):
        cats = {r.category for r in splits[name].records}
        assert fold not in cats and cats <= others | {"real"}
    test = splits["test"].records
    assert {r.category for r in test} <= {"real", fold}
    for s in splits.values():  # FVRA-FS and FVRA-GAN belong to no category
        assert not {r.category for r in s.records} & {"FVRA-FS", "FVRA-GAN"}
    # the test group's reals and fakes of X, at most 100 of each (all of them if fewer)
    pool = [r for r in index["fakeavceleb"].records
            if r.group == "Caucasian (European)" and r.category in ("real", fold)]
    for label in (0, 1):
        n = sum(1 for r in pool if r.label == label)
        assert sum(1 for r in test if r.label == label) == min(100, n)


def test_seeded_sample_is_a_pure_function_of_seed_and_ids():
    recs = [VideoRecord(id=f"v{i:03d}.mp4", dataset="d", label=i % 2, label_v=0, label_a=0)
            for i in range(40)]
    spec = SplitSpec(dataset="d", where={}, per_label=3, seed=20250225)
    kept, n = select(list(reversed(recs)), spec)
    assert n == 40
    # recomputed independently: rank each label's ids by sha256("seed:id"), keep the first 3
    want = []
    for label in (0, 1):
        ids = [r.id for r in recs if r.label == label]
        want += sorted(ids, key=lambda i: hashlib.sha256(f"20250225:{i}".encode()).hexdigest())[:3]
    assert [r.id for r in kept] == sorted(want)
    assert select(recs, spec)[0] == kept  # input order does not matter
    other, _ = select(recs, SplitSpec(dataset="d", where={}, per_label=3, seed=1))
    assert other != kept


def test_a_typo_in_a_filter_is_an_error(tmp_path):
    text = (_proto("intra").path.read_text()
            .replace('"Caucasian (European)"', '"Caucasian (Europe)"'))
    f = tmp_path / "typo.toml"
    f.write_text(text)
    p = load_protocol(f)
    with pytest.raises(ProtocolError, match=r"group 'Caucasian \(Europe\)' does not occur"):
        check_vocabulary(p, None, {"fakeavceleb": FakeAVCelebAdapter})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("version = ", "versio = "), "unknown key"),
        (('where = { group = ["African"] }', 'where = { race = ["African"] }'),
         "cannot filter on 'race'"),
        (("[splits.val]", "[splits.validation]"), "exactly train, val and test"),
        (("balance = \"none\"", "balance = \"fair\""), "balance must be one of"),
    ],
)
def test_malformed_protocol_files_are_rejected(tmp_path, edit, message):
    text = _proto("intra").path.read_text().replace(*edit, 1)
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ProtocolError, match=message):
        load_protocol(f)


def test_overlapping_splits_fail_loudly(tmp_path, synthetic_index):
    text = _proto("intra").path.read_text().replace(
        'where = { group = ["African"] }', 'where = { group = ["Caucasian (European)"] }')
    f = tmp_path / "leaky.toml"
    f.write_text(text.replace('name = "intra"', 'name = "leaky"'))
    with pytest.raises(LeakageError, match="is in both val and test"):
        build_splits(load_protocol(f), None, synthetic_index)


def test_protocols_show_counts_every_fold(synthetic_root, tmp_path):
    r = run_cli(["protocols", "show", "cross-manip", "--data", f"fakeavceleb={synthetic_root}",
                 "--write-lists", str(tmp_path)])
    assert r.exit_code == 0, r.output
    for fold in FOLDS:
        assert f"fold {fold}" in r.stdout
    assert len(list(tmp_path.glob("cross-manip-*-test.txt"))) == 5
    r = run_cli(["protocols", "show", "intra"])  # without data: the definition
    assert r.exit_code == 0 and "Caucasian (European)" in r.stdout


@pytest.mark.slow
def test_user_protocol_file_runs_by_path(synthetic_root, tmp_path):
    text = _proto("intra").path.read_text().replace('name = "intra"', 'name = "my-intra"')
    f = tmp_path / "my-intra.toml"
    f.write_text(text)
    r = run_cli(["run", "-d", "sync-corr", "-p", str(f), "--data",
                 f"fakeavceleb={synthetic_root}", "--out", str(tmp_path / "res"), "--quiet"])
    assert r.exit_code == 0, r.output
    (run_json,) = (tmp_path / "res" / "my-intra").rglob("run.json")
    assert json.loads(run_json.read_text())["protocol"]["name"] == "my-intra"


@pytest.mark.slow
def test_cross_manip_runs_every_fold_and_table_2_shows_them(synthetic_root, tmp_path):
    out = tmp_path / "res"
    r = run_cli(["run", "-d", "sync-corr", "-p", "cross-manip", "--data",
                 f"fakeavceleb={synthetic_root}", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    folds = {p.parent.parent.parent.name for p in out.rglob("run.json")}
    assert folds == set(FOLDS)
    for run_json in out.rglob("run.json"):
        info = json.loads(run_json.read_text())
        assert info["status"] == "complete"
        assert info["splits"]["test"]["hash"] and info["protocol"]["version"] == "1.1"
    t = run_cli(["table", "--table", "2", "--results", str(out), "--format", "markdown",
                 "--no-published"])
    assert t.exit_code == 0, t.output
    assert "AVG-FV" in t.stdout and "sync-corr" in t.stdout
