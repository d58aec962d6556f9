"""Bad media: every kind raises BadMediaError naming the file and the reason, and prepare()
reports each one (none dropped silently), on every run."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avbench.datasets.synth.writer import write_av
from avbench.errors import BadMediaError
from avbench.media.cache import PreparedCache, prepare
from avbench.media.decode import Pipeline, decode

PIPE = Pipeline(size=16)


def _frames(n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)


def _audio(seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (0.2 * rng.standard_normal(round(seconds * 16000))).astype(np.float32)


def _faststart_mp4(path: Path) -> None:
    """An MP4 with its index at the front (as web-ready files are), so a cut keeps it."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = 16
        vs.pix_fmt = "yuv420p"
        ast = c.add_stream("aac", rate=16000, layout="mono")
        for img in _frames():
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        a = _audio()[None, :]
        for s in range(0, a.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(a[:, s : s + 1024]), format="fltp", layout="mono"
            )
            af.sample_rate = 16000
            af.pts = s
            for p in ast.encode(af):
                c.mux(p)
        for p in ast.encode():
            c.mux(p)


def _cut(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def make_bad_files(folder: Path) -> dict[str, tuple[str, str]]:
    """Write one file per bad-media case. Returns name -> (kind, words the reason holds)."""
    folder.mkdir(parents=True, exist_ok=True)
    good_mp4 = write_av(folder / "src" / "good.mp4", _frames(), _audio())
    good_mkv = write_av(folder / "src" / "good.mkv", _frames(), _audio())
    _faststart_mp4(folder / "src" / "faststart.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mp4").write_bytes(np.random.default_rng(2).bytes(4000))
    (folder / "notes.mp4").write_text("this is a text file, not a video\n" * 30)
    _cut(good_mp4, folder / "cut-index.mp4")
    _cut(good_mkv, folder / "cut.mkv")
    _cut(folder / "src" / "faststart.mp4", folder / "cut-faststart.mp4")
    write_av(folder / "audio-only.mp4", None, _audio())
    write_av(folder / "silent-film.mp4", _frames(), None)
    write_av(folder / "mismatch.mp4", _frames(50), _audio(0.6))
    write_av(folder / "no-frames.mkv", np.zeros((0, 16, 16, 3), np.uint8), _audio())
    return {
        "empty.mp4": ("empty", "empty"),
        "noise.mp4": ("unreadable", "not a readable media file"),
        "notes.mp4": ("unreadable", "not a readable media file"),
        "cut-index.mp4": ("truncated", "cut short"),
        "cut.mkv": ("truncated", "cut short"),
        "cut-faststart.mp4": ("truncated", "cut short"),
        "audio-only.mp4": ("no-video", "no video stream"),
        "silent-film.mp4": ("no-audio", "no audio stream"),
        "mismatch.mp4": ("length-mismatch", "durations differ"),
        "no-frames.mkv": ("too-short", "no decodable frame"),
    }


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, make_bad_files(folder)


CASES = [
    "empty.mp4",
    "noise.mp4",
    "notes.mp4",
    "cut-index.mp4",
    "cut.mkv",
    "cut-faststart.mp4",
    "audio-only.mp4",
    "silent-film.mp4",
    "mismatch.mp4",
    "no-frames.mkv",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_file_raises_with_file_and_reason(bad_folder, name: str) -> None:
    folder, expected = bad_folder
    kind, words = expected[name]
    with pytest.raises(BadMediaError) as info:
        decode(folder / name, PIPE)
    err = info.value
    assert err.kind == kind, str(err)
    assert name in str(err) and str(folder / name) == err.path
    assert words in err.reason and err.reason in str(err)


def test_missing_file() -> None:
    with pytest.raises(BadMediaError) as info:
        decode("no/such/file.mp4", PIPE)
    assert info.value.kind == "missing" and "file.mp4" in str(info.value)


def test_good_sources_decode(bad_folder) -> None:
    folder, _ = bad_folder
    for name in ("good.mp4", "good.mkv", "faststart.mp4"):
        clip = decode(folder / "src" / name, PIPE)
        assert clip.n_frames == 50 and len(clip.audio) == 50 * 640


def test_small_length_difference_is_trimmed_not_rejected(tmp_path: Path) -> None:
    """Audio 0.2 s short of 2 s of video (< max(0.5 s, 10 %)): the video is cut to it."""
    path = write_av(tmp_path / "short-audio.mp4", _frames(50), _audio(1.8))
    clip = decode(path, PIPE)
    assert clip.n_frames == 45 and len(clip.audio) == 45 * 640


def test_prepare_reports_every_bad_file(bad_folder, tmp_path: Path) -> None:
    folder, expected = bad_folder
    items = [(f"bad/{name}", folder / name) for name in CASES]
    items += [
        ("ok/good.mp4", folder / "src" / "good.mp4"),
        ("ok/missing.mp4", folder / "missing.mp4"),
    ]
    cache = PreparedCache(tmp_path / "cache")
    first = prepare(items, PIPE, cache, progress=False)
    assert list(first.entries) == ["ok/good.mp4"]
    assert len(first.problems) == len(CASES) + 1
    got = {p.id: p for p in first.problems}
    for name in CASES:
        problem = got[f"bad/{name}"]
        assert problem.kind == expected[name][0]
        assert expected[name][1] in problem.reason
        assert str(folder) not in problem.reason  # reasons go into results: no machine paths
    assert got["ok/missing.mp4"].kind == "missing"
    assert first.problem_counts()["truncated"] == 3
    assert str(len(CASES) + 1) + " unusable" in first.summary()

    # a rerun decodes nothing and reports the very same problems
    second = prepare(items, PIPE, cache, progress=False)
    # (the missing file has no content, hence no cache key)
    assert second.n_decoded == 0 and second.n_cached == len(items) - 1
    assert second.problems == first.problems
    assert list(second.entries) == ["ok/good.mp4"]
