"""The FakeAVCeleb adapter on a tree of tiny real videos built from real metadata rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from avbench.datasets.fakeavceleb import CATEGORIES, FakeAVCelebAdapter
from avbench.datasets.synth.writer import write_av
from avbench.errors import DataError
from avbench.records import FILTER_FIELDS

# the project's reference folder, beside the checkout where it exists
EXCERPT = (Path(__file__).resolve().parents[2] / "shared" / "reference"
           / "fakeavceleb_meta_data.excerpt.csv")

# The excerpt's rows as the official file has them (CRLF, nine-name header ending with a
# comma, ten values per row); kept here too so the tests run where the reference is absent.
EXCERPT_ROWS = """\
source,target1,target2,method,category,type,race,gender,path,
id00076,10,-,faceswap-wav2lip,D,FakeVideo-FakeAudio,African,men,00109_10_id00476_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076
id00056,id07102,faceswap,faceswap-wav2lip,D,FakeVideo-FakeAudio,Asian (East),men,00028_id07102_4gKPlwvjpsI_faceswap_id00740_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/Asian (East)/men/id00056
id00076,id00173,id00475,fsgan-wav2lip,D,FakeVideo-FakeAudio,African,men,00109_id00173_UHoMXLSjlDo_id00475_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076
id00056,id01683,id04884,fsgan-wav2lip,D,FakeVideo-FakeAudio,Asian (East),men,00028_id01683_HJYEPsPyfAw_id04884_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/Asian (East)/men/id00056
id00076,id00391,-,wav2lip,D,FakeVideo-FakeAudio,African,men,00109_id00391_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076
id00056,id02332,-,wav2lip,D,FakeVideo-FakeAudio,Asian (East),men,00028_id02332_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/Asian (East)/men/id00056
id00076,1.mp4,-,faceswap,C,FakeVideo-RealAudio,African,men,00109_1.mp4,FakeAVCeleb/FakeVideo-RealAudio/African/men/id00076
id00056,id07102,-,faceswap,C,FakeVideo-RealAudio,Asian (East),men,00028_id07102_4gKPlwvjpsI_faceswap.mp4,FakeAVCeleb/FakeVideo-RealAudio/Asian (East)/men/id00056
id00076,id00173,-,fsgan,C,FakeVideo-RealAudio,African,men,00109_id00173_UHoMXLSjlDo.mp4,FakeAVCeleb/FakeVideo-RealAudio/African/men/id00076
id00056,id01683,-,fsgan,C,FakeVideo-RealAudio,Asian (East),men,00028_id01683_HJYEPsPyfAw.mp4,FakeAVCeleb/FakeVideo-RealAudio/Asian (East)/men/id00056
id00076,id00166,-,wav2lip,C,FakeVideo-RealAudio,African,men,00109_id00166_wavtolip.mp4,FakeAVCeleb/FakeVideo-RealAudio/African/men/id00076
id00056,id00597,-,wav2lip,C,FakeVideo-RealAudio,Asian (East),men,00028_id00597_wavtolip.mp4,FakeAVCeleb/FakeVideo-RealAudio/Asian (East)/men/id00056
id00076,fake.mp4,-,rtvc,B,RealVideo-FakeAudio,African,men,00109_fake.mp4,FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076
id00056,fake.mp4,-,rtvc,B,RealVideo-FakeAudio,Asian (East),men,00028_fake.mp4,FakeAVCeleb/RealVideo-FakeAudio/Asian (East)/men/id00056
id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076
id00056,-,-,real,A,RealVideo-RealAudio,Asian (East),men,00028.mp4,FakeAVCeleb/RealVideo-RealAudio/Asian (East)/men/id00056
id00032,-,-,real,A,RealVideo-RealAudio,Asian (South),men,00028.mp4,FakeAVCeleb/RealVideo-RealAudio/Asian (South)/men/id00032
id00018,-,-,real,A,RealVideo-RealAudio,Caucasian (American),men,00181.mp4,FakeAVCeleb/RealVideo-RealAudio/Caucasian (American)/men/id00018
id00055,-,-,real,A,RealVideo-RealAudio,Caucasian (European),men,00120.mp4,FakeAVCeleb/RealVideo-RealAudio/Caucasian (European)/men/id00055
id00220,id03658,-,faceswap-wav2lip,D,FakeVideo-FakeAudio,African,women,00027_id03658_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/women/id00220
id00220,id03658,-,wav2lip,D,FakeVideo-FakeAudio,African,women,00027_id03658_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/women/id00220
""".replace("\n", "\r\n")

DUP = "FakeVideo-FakeAudio/African/women/id00220/00027_id03658_wavtolip.mp4"


def excerpt_bytes() -> bytes:
    """The reference excerpt when it is there (and the copy above must equal it)."""
    data = EXCERPT_ROWS.encode()
    if EXCERPT.is_file():
        assert EXCERPT.read_bytes() == data, "the embedded copy of the excerpt is out of date"
    return data


def listed(csv_bytes: bytes) -> list[str]:
    """Relative paths the CSV lists (computed independently of the adapter)."""
    out = []
    for line in csv_bytes.decode().splitlines()[1:]:
        cells = line.split(",")
        out.append("/".join(cells[9].split("/")[1:]) + "/" + cells[8])
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A FakeAVCeleb-shaped tree of tiny real videos (16x16, 0.5 s) for the excerpt."""
    root = tmp_path_factory.mktemp("fakeavceleb-template")
    data = excerpt_bytes()
    (root / "meta_data.csv").write_bytes(data)
    rng = np.random.default_rng(0)
    for i, rel in enumerate(dict.fromkeys(listed(data))):
        frames = rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8)
        audio = (0.1 * np.sin(np.arange(8000) * (0.01 + 0.001 * i))).astype(np.float32)
        write_av(root / rel, frames, audio, fps=25, sample_rate=16000)
    # FakeAVCeleb's real folders also hold .txt files
    (root / "RealVideo-RealAudio/African/men/id00076/00109.txt").write_text("Identity: id00076\n")
    return root


@pytest.fixture
def tree(template, tmp_path) -> Path:
    root = tmp_path / "FakeAVCeleb_v1.2"
    shutil.copytree(template, root)
    return root


def test_reads_the_official_form(tree):
    idx = FakeAVCelebAdapter().index(tree)
    data = excerpt_bytes()
    paths = listed(data)
    assert len(paths) == 21 and len(set(paths)) == 20
    by_id = idx.by_id()
    assert sorted(by_id) == sorted(set(paths))
    assert idx.name == "fakeavceleb" and not idx.face_crop
    # ids are full relative paths: the same file name under two identities stays two videos
    assert "RealVideo-RealAudio/Asian (East)/men/id00056/00028.mp4" in by_id
    assert "RealVideo-RealAudio/Asian (South)/men/id00032/00028.mp4" in by_id
    r = by_id["FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip.mp4"]
    assert (r.label, r.label_v, r.label_a) == (1, 1, 1)
    assert (r.type, r.method, r.category) == ("FakeVideo-FakeAudio", "faceswap-wav2lip", "FVFA-FS")
    assert (r.group, r.gender, r.identity, r.targets) == ("African", "men", "id00076", ("10",))
    r = by_id["FakeVideo-FakeAudio/African/men/id00076/00109_id00173_UHoMXLSjlDo_id00475_wavtolip.mp4"]
    assert r.targets == ("id00173", "id00475") and r.category == "FVFA-GAN"
    r = by_id["RealVideo-RealAudio/Caucasian (European)/men/id00055/00120.mp4"]
    assert (r.label, r.label_v, r.label_a, r.category, r.targets) == (0, 0, 0, "real", ())
    assert r.group == "Caucasian (European)"


@pytest.mark.parametrize(("type_", "labels"), [
    ("RealVideo-RealAudio", (0, 0, 0)),
    ("RealVideo-FakeAudio", (1, 0, 1)),
    ("FakeVideo-RealAudio", (1, 1, 0)),
    ("FakeVideo-FakeAudio", (1, 1, 1)),
])
def test_labels_follow_the_type(tree, type_, labels):
    recs = [r for r in FakeAVCelebAdapter().index(tree).records if r.type == type_]
    assert recs
    for r in recs:
        assert (r.label, r.label_v, r.label_a) == labels
        assert r.id.startswith(type_ + "/")


def test_categories(tree):
    idx = FakeAVCelebAdapter().index(tree)
    got = {(r.type, r.method): r.category for r in idx.records}
    assert got == CATEGORIES
    assert {r.category for r in idx.records} == {
        "real", "RVFA", "FVRA-WL", "FVRA-FS", "FVRA-GAN", "FVFA-WL", "FVFA-FS", "FVFA-GAN"}


def test_vocabulary_covers_the_records(tree):
    adapter = FakeAVCelebAdapter()
    idx = adapter.index(tree)
    for field, values in adapter.vocabulary.items():
        assert field in FILTER_FIELDS
        assert {getattr(r, field) for r in idx.records} <= set(values), field
    assert {r.group for r in idx.records} == {
        "African", "Asian (East)", "Asian (South)", "Caucasian (American)", "Caucasian (European)"}


def test_duplicated_row_keeps_the_first_and_is_reported(tree):
    idx = FakeAVCelebAdapter().index(tree)
    rec = idx.by_id()[DUP]
    assert (rec.method, rec.category) == ("faceswap-wav2lip", "FVFA-FS")
    assert sum(r.id == DUP for r in idx.records) == 1
    dup = [p for p in idx.problems if p.where == DUP]
    assert len(dup) == 1
    assert "line 22" in dup[0].reason and "kept line 21" in dup[0].reason
    assert len(idx.problems) == 1  # nothing else is wrong with this tree


def test_edited_header_form(tree):
    official = FakeAVCelebAdapter().index(tree)
    lines = EXCERPT_ROWS.split("\r\n")
    lines[0] = "source,target1,target2,method,category,type,race,gender,filename,path"
    lines = [lines[0]] + [ln.replace(",FakeAVCeleb/", ",FakeAVCeleb_v1.2/") for ln in lines[1:]]
    (tree / "meta_data.csv").write_text("\n".join(lines))  # LF endings this time
    edited = FakeAVCelebAdapter().index(tree)
    assert edited.records == official.records
    assert [p.where for p in edited.problems] == [DUP]


def test_line_endings_do_not_matter(tree):
    crlf = FakeAVCelebAdapter().index(tree)
    (tree / "meta_data.csv").write_bytes(EXCERPT_ROWS.replace("\r\n", "\n").encode())
    lf = FakeAVCelebAdapter().index(tree)
    assert lf.records == crlf.records
    # a BOM (spreadsheet exports add one) is fine too
    (tree / "meta_data.csv").write_bytes(b"\xef\xbb\xbf" + EXCERPT_ROWS.encode())
    assert FakeAVCelebAdapter().index(tree).records == crlf.records


def test_missing_files_are_reported_with_counts(tree):
    gone = ["RealVideo-FakeAudio/African/men/id00076/00109_fake.mp4",
            "FakeVideo-RealAudio/Asian (East)/men/id00056/00028_id01683_HJYEPsPyfAw.mp4"]
    for rel in gone:
        (tree / rel).unlink()
    idx = FakeAVCelebAdapter().index(tree)
    assert len(idx.records) == 18
    assert not set(gone) & set(idx.by_id())
    for rel in gone:
        (p,) = [p for p in idx.problems if p.where == rel]
        assert "missing" in p.reason and "line" in p.reason
    (summary,) = [p for p in idx.problems if p.where == "meta_data.csv"]
    assert "2 of 20" in summary.reason


def test_txt_files_are_ignored(tree):
    (tree / "RealVideo-RealAudio/African/men/id00076/notes.txt").write_text("x")
    idx = FakeAVCelebAdapter().index(tree)
    assert not any(r.id.endswith(".txt") for r in idx.records)
    assert not any(p.where.endswith(".txt") for p in idx.problems)


def test_unlisted_videos_are_reported_not_indexed(tree):
    src = tree / "RealVideo-RealAudio/African/men/id00076/00109.mp4"
    shutil.copy(src, src.with_name("99999.mp4"))
    idx = FakeAVCelebAdapter().index(tree)
    assert "RealVideo-RealAudio/African/men/id00076/99999.mp4" not in idx.by_id()
    assert any(p.where.endswith("99999.mp4") and "not listed" in p.reason for p in idx.problems)


def _with_row(tree: Path, row: str, line_ending="\r\n") -> None:
    (tree / "meta_data.csv").write_bytes((EXCERPT_ROWS + row + line_ending).encode())


@pytest.mark.parametrize("directory", [
    "FakeAVCeleb/../../outside",
    "FakeAVCeleb/RealVideo-RealAudio/../../../etc",
    "/abs/FakeAVCeleb/RealVideo-RealAudio",
    "C:/FakeAVCeleb/RealVideo-RealAudio",
])
def test_paths_leaving_the_root_are_rejected(tree, directory):
    _with_row(tree, f"id00001,-,-,real,A,RealVideo-RealAudio,African,men,00001.mp4,{directory}")
    with pytest.raises(DataError, match=r"meta_data\.csv line 23"):
        FakeAVCelebAdapter().index(tree)


@pytest.mark.parametrize("file", ["../00001.mp4", "/etc/passwd"])
def test_file_names_leaving_the_root_are_rejected(tree, file):
    _with_row(tree, f"id00001,-,-,real,A,RealVideo-RealAudio,African,men,{file},"
                    "FakeAVCeleb/RealVideo-RealAudio/African/men/id00001")
    with pytest.raises(DataError, match=r"meta_data\.csv line 23"):
        FakeAVCelebAdapter().index(tree)


EUROPEAN = "RealVideo-RealAudio/Caucasian (European)/men/id00055/00120.mp4"


def _edit_row(tree: Path, rel: str, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the row listing ``rel``; return that row's line number."""
    lines = EXCERPT_ROWS.split("\r\n")
    folder, file = rel.rsplit("/", 1)
    (n,) = [i for i, ln in enumerate(lines) if ln.endswith(f",{file},FakeAVCeleb/{folder}")]
    assert old in lines[n]
    lines[n] = lines[n].replace(old, new)
    (tree / "meta_data.csv").write_bytes("\r\n".join(lines).encode())
    return n + 1


@pytest.mark.parametrize(("column", "old", "new", "field"), [
    ("race", ",Caucasian (European),", ",Caucasian (Europian),", "group"),
    ("gender", ",men,", ",man,", "gender"),
])
def test_race_or_gender_outside_the_vocabulary_is_a_problem(tree, column, old, new, field):
    """A typo used to drop the video from every split without a word."""
    line = _edit_row(tree, EUROPEAN, old, new)
    idx = FakeAVCelebAdapter().index(tree)
    (p,) = [p for p in idx.problems if p.where != DUP]
    assert p.where == f"meta_data.csv:{line}" == "meta_data.csv:20"
    typo = new.strip(",")
    assert p.reason.startswith(f"{column} {typo!r} is not one of ") and EUROPEAN in p.reason
    assert getattr(idx.by_id()[EUROPEAN], field) == typo  # indexed, and said so


@pytest.mark.parametrize(("old", "new", "why"), [
    (",RealVideo-RealAudio,", ",RealVideo-RealAudoi,", "type 'RealVideo-RealAudoi' is not one"),
    (",real,", ",reel,", "method 'reel' is not one"),
    (",real,", ",faceswap,", "type RealVideo-RealAudio with method faceswap is not a"),
])
def test_unknown_type_or_method_is_a_problem_and_the_row_not_indexed(tree, old, new, why):
    line = _edit_row(tree, EUROPEAN, old, new)
    idx = FakeAVCelebAdapter().index(tree)
    assert EUROPEAN not in idx.by_id() and len(idx.records) == 19
    (p,) = [p for p in idx.problems if p.where != DUP]  # not also "not listed"
    assert p.where == f"meta_data.csv:{line}"
    assert p.reason.startswith(why) and "not indexed" in p.reason


def test_a_dataset_link_loop_is_one_problem(tree):
    loop = tree / "RealVideo-RealAudio/African/loop"
    loop.symlink_to("..")
    idx = FakeAVCelebAdapter().index(tree)
    (p,) = [p for p in idx.problems if p.where != DUP]
    assert p.where == "RealVideo-RealAudio/African/loop" and "loop" in p.reason
    assert len(idx.records) == 20


def test_a_link_out_of_the_root_is_one_problem_and_not_followed(tree, tmp_path):
    outside = tmp_path / "outside" / "id99999"
    outside.mkdir(parents=True)
    shutil.copy(tree / EUROPEAN, outside / "00001.mp4")
    (tree / "RealVideo-RealAudio/African/men/id99999").symlink_to(outside)
    (tree / "RealVideo-RealAudio/root").symlink_to("/")
    idx = FakeAVCelebAdapter().index(tree)
    got = sorted((p.where, "outside the dataset root" in p.reason)
                 for p in idx.problems if p.where != DUP)
    assert got == [("RealVideo-RealAudio/African/men/id99999", True),
                   ("RealVideo-RealAudio/root", True)]
    assert not any("id99999" in r.id for r in idx.records)


def test_malformed_row(tree):
    _with_row(tree, "id00001,-,-,real,A,RealVideo-RealAudio,African")
    with pytest.raises(DataError, match=r"meta_data\.csv line 23: expected 10 values, found 7"):
        FakeAVCelebAdapter().index(tree)


def test_not_a_fakeavceleb_header(tree):
    (tree / "meta_data.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"meta_data\.csv line 1"):
        FakeAVCelebAdapter().index(tree)


def test_root_without_metadata(tmp_path):
    with pytest.raises(DataError, match=r"no meta_data\.csv"):
        FakeAVCelebAdapter().index(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        FakeAVCelebAdapter().index(tmp_path / "nope")


def test_fingerprint_is_stable_across_locations_and_sees_changes(tree, tmp_path):
    a = FakeAVCelebAdapter().index(tree).fingerprint
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tree, moved)
    assert FakeAVCelebAdapter().index(moved).fingerprint == a
    assert str(tmp_path) not in a and len(a) == 64
    with open(moved / "RealVideo-RealAudio/African/men/id00076/00109.mp4", "ab") as fh:
        fh.write(b"\0")
    assert FakeAVCelebAdapter().index(moved).fingerprint != a


def test_nothing_absolute_is_stored(tree):
    idx = FakeAVCelebAdapter().index(tree)
    for r in idx.records:
        assert not Path(r.id).is_absolute() and "\\" not in r.id
        assert str(tree) not in repr(r.to_dict())
