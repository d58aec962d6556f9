"""The KoDF adapter on tiny trees: the English layout alone and with the Korean CSVs."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from avbench.datasets.kodf import KoDFAdapter, normalise_gender
from avbench.datasets.synth.writer import write_av
from avbench.errors import DataError

VIDEOS = [
    "original_videos/aaa111/aaa111_000.mp4",
    "original_videos/bbb222/clips/bbb222_001.mp4",  # deeper folders vary
    "synthesized_videos/audio-driven/atfhp/aaa111/aaa111_aaa111_7_000.mp4",
    "synthesized_videos/audio-driven/bbb222_bbb222_7_001.mp4",
    "synthesized_videos/fsgan/aaa111/aaa111_bbb222_3_000.mp4",
    "synthesized_videos/dfl/x/y/bbb222_aaa111_1_000.mp4",
]

ORIGINAL_CSV = "원본영상_validation_메타데이터.csv"
FAKE_CSV = "변조영상_validation_메타데이터.csv"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kodf-template")
    rng = np.random.default_rng(1)
    for rel in VIDEOS:
        frames = rng.integers(0, 255, (8, 16, 24, 3), dtype=np.uint8)
        write_av(root / rel, frames, np.zeros(6000, np.float32), fps=30, sample_rate=16000)
    (root / "original_videos/aaa111/readme.txt").write_text("not a video")
    return root


@pytest.fixture
def tree(template, tmp_path) -> Path:
    root = tmp_path / "kodf"
    shutil.copytree(template, root)
    return root


def _write_csvs(root: Path, *, encoding="utf-8", folder: str = "", nfd: bool = False) -> None:
    orig = ("영상ID,UUID,인물성별,촬영장소,촬영시작,스크립트파일,시나리오번호\r\n"
            "aaa111_000.mp4,aaa111,남,실내,2020-09-01,s1.txt,1\r\n"
            "bbb222_001.mp4,bbb222,여성,실내,2020-09-02,s2.txt,2\r\n")
    fake = ("영상ID,타겟영상,타겟UUID,소스UUID,변조모델,촬영시작,인물성별\r\n"
            "aaa111_aaa111_7_000.mp4,aaa111_000.mp4,aaa111,aaa111,audio-driven,2020-09-01,남\r\n"
            "aaa111_bbb222_3_000.mp4,aaa111_000.mp4,aaa111,bbb222,fsgan,2020-09-01,남\r\n"
            # listed without the extension: still found
            "bbb222_aaa111_1_000,bbb222_001.mp4,bbb222,aaa111,dfl,2020-09-02,여\r\n")
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    for name, text in ((ORIGINAL_CSV, orig), (FAKE_CSV, fake)):
        if nfd:
            name = unicodedata.normalize("NFD", name)
        (d / name).write_bytes(text.encode(encoding))


def test_folders_alone(tree):
    idx = KoDFAdapter().index(tree)
    by_id = idx.by_id()
    assert sorted(by_id) == sorted(VIDEOS)
    assert idx.face_crop and idx.name == "kodf" and idx.problems == []
    for rel, r in by_id.items():
        assert r.group == "" and r.identity == "" and r.gender == ""
        if rel.startswith("original_videos/"):
            assert (r.label, r.label_v, r.label_a) == (0, 0, 0)
            assert (r.type, r.method, r.category) == ("original", "real", "real")
        else:
            assert (r.label, r.label_v, r.label_a) == (1, 1, 0)  # KoDF's fakes keep real audio
            method = rel.split("/")[1]
            assert (r.type, r.method, r.category) == ("synthesized", method, method)
    assert {r.method for r in idx.records} == {"real", "audio-driven", "fsgan", "dfl"}


def test_vocabulary_covers_the_records(tree):
    adapter = KoDFAdapter()
    _write_csvs(tree)
    idx = adapter.index(tree)
    for field, values in adapter.vocabulary.items():
        assert {getattr(r, field) for r in idx.records} <= set(values), field


@pytest.mark.parametrize(("encoding", "folder", "nfd"), [
    ("utf-8", "", False),
    ("utf-8-sig", "validate_meta_data", False),
    ("cp949", "meta", False),
    ("utf-8", "라벨링데이터/validate_meta_data", True),
])
def test_korean_csvs_fill_identity_gender_targets(tree, encoding, folder, nfd):
    plain = KoDFAdapter().index(tree)
    _write_csvs(tree, encoding=encoding, folder=folder, nfd=nfd)
    idx = KoDFAdapter().index(tree)
    by_id = idx.by_id()
    r = by_id["original_videos/aaa111/aaa111_000.mp4"]
    assert (r.identity, r.gender, r.targets) == ("aaa111", "men", ())
    r = by_id["original_videos/bbb222/clips/bbb222_001.mp4"]
    assert (r.identity, r.gender) == ("bbb222", "women")
    r = by_id["synthesized_videos/fsgan/aaa111/aaa111_bbb222_3_000.mp4"]
    assert (r.identity, r.targets, r.gender) == ("aaa111", ("bbb222",), "men")
    assert dict(r.extra)["변조모델"] == "fsgan"
    r = by_id["synthesized_videos/audio-driven/atfhp/aaa111/aaa111_aaa111_7_000.mp4"]
    assert (r.identity, r.targets) == ("aaa111", ())  # its own voice: no other person
    r = by_id["synthesized_videos/dfl/x/y/bbb222_aaa111_1_000.mp4"]
    assert (r.identity, r.targets, r.gender) == ("bbb222", ("aaa111",), "women")
    # labels never change
    assert [(r.id, r.label, r.label_v, r.label_a, r.method) for r in idx.records] == \
        [(r.id, r.label, r.label_v, r.label_a, r.method) for r in plain.records]
    # one video is not in the CSVs: reported, still indexed
    (p,) = idx.problems
    assert "1 of 6" in p.reason
    assert idx.fingerprint != plain.fingerprint


def test_csv_disagreeing_with_the_folders(tree):
    _write_csvs(tree)
    csv = tree / ORIGINAL_CSV
    csv.write_bytes(csv.read_bytes() + "aaa111_bbb222_3_000.mp4,aaa111,남,x,y,z,1\r\n".encode())
    (tree / FAKE_CSV).write_bytes((tree / FAKE_CSV).read_bytes().replace(
        b"aaa111_bbb222_3_000.mp4", b"renamed.mp4"))
    idx = KoDFAdapter().index(tree)
    r = idx.by_id()["synthesized_videos/fsgan/aaa111/aaa111_bbb222_3_000.mp4"]
    assert (r.label, r.label_v, r.label_a) == (1, 1, 0)  # the folder decides
    assert any("folder decides" in p.reason for p in idx.problems)


def test_unknown_method_folder_is_indexed_and_reported(tree):
    src = tree / VIDEOS[0]
    dst = tree / "synthesized_videos/newgan/p/q.mp4"
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    idx = KoDFAdapter().index(tree)
    r = idx.by_id()["synthesized_videos/newgan/p/q.mp4"]
    assert (r.label, r.method) == (1, "newgan")
    assert any(p.where == "synthesized_videos/newgan" for p in idx.problems)


def test_videos_outside_the_layout_are_ignored(tree):
    shutil.copy(tree / VIDEOS[0], tree / "stray.mp4")
    shutil.copy(tree / VIDEOS[0], tree / "synthesized_videos" / "loose.mp4")
    idx = KoDFAdapter().index(tree)
    assert len(idx.records) == len(VIDEOS)
    assert any("2 .mp4 files outside" in p.reason for p in idx.problems)


def test_nothing_found(tmp_path):
    with pytest.raises(DataError, match="has no original_videos/ folder"):
        KoDFAdapter().index(tmp_path)
    (tmp_path / "original_videos").mkdir()
    (tmp_path / "original_videos" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="has no synthesized_videos/ folder"):
        KoDFAdapter().index(tmp_path)
    (tmp_path / "synthesized_videos").mkdir()
    with pytest.raises(DataError, match=r"no original_videos/\*\*\.mp4 video found"):
        KoDFAdapter().index(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        KoDFAdapter().index(tmp_path / "missing")


@pytest.mark.parametrize("folder", ["original_videos", "synthesized_videos"])
def test_a_missing_class_folder_is_an_error(tree, folder):
    """Without one of the two folders a run would be 'complete' with one class."""
    shutil.rmtree(tree / folder)
    with pytest.raises(DataError) as e:
        KoDFAdapter().index(tree)
    msg = str(e.value)
    assert str(tree) in msg and f"no {folder}/ folder" in msg and "\n" not in msg


def test_a_class_folder_without_videos_is_an_error(tree):
    for p in (tree / "synthesized_videos").rglob("*.mp4"):
        p.unlink()
    with pytest.raises(DataError, match=r"no synthesized_videos/<method>/\*\*\.mp4 video"):
        KoDFAdapter().index(tree)


def test_unknown_gender_in_the_metadata_is_a_problem_with_file_and_line(tree):
    _write_csvs(tree)
    csv = tree / ORIGINAL_CSV
    lines = csv.read_bytes().decode("utf-8-sig").splitlines()
    n = next(i for i, ln in enumerate(lines, 1) if ln.startswith("aaa111_000"))
    lines[n - 1] = lines[n - 1].replace(",남,", ",낭,")
    csv.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    idx = KoDFAdapter().index(tree)
    (p,) = [p for p in idx.problems if "gender" in p.reason]
    assert p.where == f"{ORIGINAL_CSV}:{n}" == f"{ORIGINAL_CSV}:2" and "'낭'" in p.reason


def test_fingerprint_is_stable_across_locations(tree, tmp_path):
    _write_csvs(tree)
    a = KoDFAdapter().index(tree).fingerprint
    moved = tmp_path / "other" / "place"
    shutil.copytree(tree, moved)
    assert KoDFAdapter().index(moved).fingerprint == a


def test_gender_spellings():
    assert normalise_gender("남") == normalise_gender("남성") == normalise_gender("M") == "men"
    assert normalise_gender("여") == normalise_gender("female") == "women"
    assert normalise_gender(unicodedata.normalize("NFD", "여성")) == "women"
    assert normalise_gender("") == ""
