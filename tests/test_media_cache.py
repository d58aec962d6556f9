"""The prepared cache: keyed by content + pipeline, atomic, resumable, failures cached."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import avbench.media.cache as cache_mod
from avbench.detector import InputSpec
from avbench.media.cache import PreparedCache, default_root, prepare
from avbench.media.decode import Pipeline, decode
from avbench.media.encode import write_av
from avbench.media.videoset import VideoSet
from avbench.records import VideoRecord

PIPE = Pipeline(size=32)


def make_clip(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    frames = np.repeat(base, n, axis=0)
    frames[:, :, :, 0] = (np.arange(n) * 7 % 255)[:, None, None]
    audio = (0.2 * rng.standard_normal(n * 640)).astype(np.float32)
    return write_av(path, frames, audio)


@pytest.fixture
def clips(tmp_path: Path) -> list[tuple[str, Path]]:
    return [
        (f"v{i}.mp4", make_clip(tmp_path / "data" / f"v{i}.mp4", 20 + 10 * i, i)) for i in range(3)
    ]


def count_entries(cache: PreparedCache) -> int:
    return (
        sum(1 for _ in cache.entries_dir.glob("*/*/meta.json")) if cache.entries_dir.exists() else 0
    )


def test_default_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "c"))
    assert default_root() == tmp_path / "c"
    assert PreparedCache().root == tmp_path / "c"
    monkeypatch.delenv("AVBENCH_CACHE")
    assert default_root().name == "prepared" and "avbench" in default_root().parts


def test_prepare_then_read_from_cache(clips, tmp_path: Path) -> None:
    cache = PreparedCache(tmp_path / "cache")
    first = prepare(clips, PIPE, cache, progress=False)
    assert first.n_decoded == 3 and first.n_cached == 0 and not first.problems
    assert list(first.entries) == [vid for vid, _ in clips]
    second = prepare(clips, PIPE, cache, progress=False)
    assert second.n_decoded == 0 and second.n_cached == 3
    assert second.entries == first.entries

    for vid, path in clips:
        entry = cache.entry(path, PIPE)
        assert entry == first.entries[vid]
        clip = cache.load(entry)
        assert isinstance(clip.frames, np.memmap) and isinstance(clip.audio, np.memmap)
        fresh = decode(path, PIPE)
        np.testing.assert_array_equal(clip.frames, fresh.frames)
        np.testing.assert_array_equal(clip.audio, fresh.audio)
        assert clip.source_sample_rate == fresh.source_sample_rate == 16000
        assert entry.n_frames == fresh.n_frames
        meta = json.loads((entry.dir / "meta.json").read_text())
        assert meta["pipeline_key"] == PIPE.key() and meta["content_hash"] == entry.content_hash


def test_changed_content_or_pipeline_is_prepared_again(clips, tmp_path: Path) -> None:
    cache = PreparedCache(tmp_path / "cache")
    prepare(clips, PIPE, cache, progress=False)
    vid, path = clips[1]
    old = cache.entry(path, PIPE)
    make_clip(path, 44, seed=99)  # new content at the same path
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # mtime surely moves
    again = prepare(clips, PIPE, cache, progress=False)
    assert again.n_decoded == 1 and again.n_cached == 2
    assert again.entries[vid].key != old.key and again.entries[vid].n_frames == 44

    other = Pipeline(size=24)
    third = prepare(clips, other, cache, progress=False)
    assert third.n_decoded == 3
    assert all(e.height == 24 for e in third.entries.values())
    assert prepare(clips, PIPE, cache, progress=False).n_decoded == 0  # both live side by side


def test_memo_spares_rehashing(clips, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = PreparedCache(tmp_path / "cache")
    prepare(clips, PIPE, cache, progress=False)
    calls: list[str] = []
    real = cache_mod.hash_file
    monkeypatch.setattr(cache_mod, "hash_file", lambda p: calls.append(str(p)) or real(p))
    again = prepare(clips, PIPE, PreparedCache(tmp_path / "cache"), progress=False)
    assert again.n_cached == 3 and calls == []


def test_identical_files_are_decoded_once(clips, tmp_path: Path) -> None:
    vid, path = clips[0]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(path.read_bytes())
    cache = PreparedCache(tmp_path / "cache")
    res = prepare([*clips, ("copy", copy)], PIPE, cache, progress=False)
    assert res.n_decoded == 3 and res.entries["copy"] == res.entries[vid]


def test_interrupted_prepare_leaves_no_half_entry(
    clips, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = PreparedCache(tmp_path / "cache")
    real_save = np.save
    calls = {"n": 0}

    def save_then_interrupt(file, arr, *args, **kwargs):
        calls["n"] += 1
        real_save(file, arr, *args, **kwargs)
        if calls["n"] == 3:  # the second entry: frames written, audio not yet
            raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.np, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(clips, PIPE, cache, progress=False)
    monkeypatch.setattr(cache_mod.np, "save", real_save)
    assert count_entries(cache) == 1
    assert list(cache.tmp_dir.iterdir()) == []  # the half-written folder was removed
    resumed = prepare(clips, PIPE, cache, progress=False)
    assert resumed.n_cached == 1 and resumed.n_decoded == 2 and len(resumed.entries) == 3
    assert count_entries(cache) == 3


def test_leftover_temp_folder_is_cleaned(clips, tmp_path: Path) -> None:
    cache = PreparedCache(tmp_path / "cache")
    # what a killed process leaves behind: a temp folder named after a process that is gone
    dead = tmp_path / "cache" / "tmp" / f"{socket.gethostname()}-999999999-abc"
    dead.mkdir(parents=True)
    (dead / "frames.npy").write_bytes(b"half")
    old = tmp_path / "cache" / "tmp" / "elsewhere-12-def"
    old.mkdir()
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    mine = tmp_path / "cache" / "tmp" / f"{socket.gethostname()}-{os.getpid()}-ghi"
    mine.mkdir()
    res = prepare(clips, PIPE, cache, progress=False)
    assert len(res.entries) == 3
    assert not dead.exists() and not old.exists() and mine.exists()


def test_process_pool_prepare(clips, tmp_path: Path) -> None:
    cache = PreparedCache(tmp_path / "cache")
    res = prepare(clips, PIPE, cache, workers=2, progress=False)
    assert res.n_decoded == 3 and len(res.entries) == 3
    for vid, path in clips:
        np.testing.assert_array_equal(
            np.asarray(cache.load(res.entries[vid]).frames), decode(path, PIPE).frames
        )


def test_progress_output(clips, tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    console = Console(file=out, width=100)
    cache = PreparedCache(tmp_path / "cache")
    res = prepare(clips, PIPE, cache, progress=True, console=console)
    assert "preparing media" in out.getvalue() and "3/3" in out.getvalue()
    res.report(console)
    assert "3 videos: 3 prepared, 0 unusable" in out.getvalue()
    quiet = StringIO()
    prepare(clips, PIPE, cache, progress=False, console=Console(file=quiet))
    assert quiet.getvalue() == ""


def test_segment_read_is_much_faster_than_decoding(tmp_path: Path) -> None:
    """Behaviour only (tests do not judge timings): a cached segment equals the decoded one.
    The ratio is printed for the record (pytest -s)."""
    path = make_clip(tmp_path / "long.mp4", 125, seed=5)
    cache = PreparedCache(tmp_path / "cache")
    res = prepare([("long", path)], PIPE, cache, progress=False)
    rec = VideoRecord(id="long", dataset="t", label=0, label_v=0, label_a=0)
    vs = VideoSet([rec], res.entries, cache, InputSpec(size=32))
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    batches = [vs.random_segments([0], rng) for _ in range(20)]
    read = (time.perf_counter() - t) / 20
    t = time.perf_counter()
    clip = decode(path, PIPE)
    full = time.perf_counter() - t
    for b in batches:
        s = int(b.start[0])
        np.testing.assert_array_equal(b.video[0], clip.frames[s : s + 16])
        np.testing.assert_array_equal(b.audio[0], clip.audio[s * 640 : (s + 16) * 640])
    print(f"\nsegment read {read * 1e3:.2f} ms vs decode {full * 1e3:.1f} ms: {full / read:.0f}x")


def crashing_job(path: str, key: str, *rest):
    """A stand-in for the decode job (top level, so spawned workers can import it)."""
    if path == "boom":
        os._exit(3)  # what a decoder segfault or the OOM killer does to a worker
    return key, None, "fake", f"done {path}"


def test_a_crashing_worker_is_isolated_and_reported() -> None:
    jobs = [("a", "ka"), ("boom", "kboom"), ("b", "kb")]
    out = {
        key: (kind, reason) for key, _, kind, reason in cache_mod._run_jobs(jobs, 1, crashing_job)
    }
    assert out["ka"] == ("fake", "done a") and out["kb"] == ("fake", "done b")
    assert out["kboom"][0] == "crashed"


def test_preparation_workers_follow_the_machine(monkeypatch):
    from avbench.media import cache as cache_mod
    from avbench.media import decode as dec

    assert cache_mod.prepare_workers(3, 1) == 3  # asked for: as asked
    assert cache_mod.prepare_workers(0, 10_000) == 0
    dec.set_decoding_cores(16)
    try:
        assert cache_mod.prepare_workers(-1, 10_000) == 16  # one per core
        assert cache_mod.prepare_workers(-1, 100) == 3  # no process for fewer than 32 files
        assert cache_mod.prepare_workers(-1, 40) == 0  # one process gains nothing
        dec.set_decoding_cores(2)
        assert cache_mod.prepare_workers(-1, 10_000) == 0  # two cores: decode here
    finally:
        dec.set_decoding_cores(None)
