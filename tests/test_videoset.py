"""VideoSet and the torch datasets over prepared entries."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from avbench.datasets.synth.writer import write_av
from avbench.detector import InputSpec, VideoSetLike
from avbench.errors import ConfigError
from avbench.media.cache import PreparedCache, prepare
from avbench.media.decode import Pipeline, decode
from avbench.media.segments import eval_starts, loop_pad, random_start
from avbench.media.videoset import VideoSet, pipeline_for_spec
from avbench.records import VideoRecord

T, SIZE, SPF = 16, 32, 640
LENGTHS = [40, 10, 33, 16]  # frames: 2 segments, 1 padded, 2 (1 trailing frame), exactly 1


def make_clip(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(0, 255, (1, SIZE, SIZE, 3), dtype=np.uint8), n, axis=0)
    frames[:, :4, :, :] = (np.arange(n) * 6 % 250)[:, None, None, None]  # a frame counter
    audio = (0.2 * rng.standard_normal(n * SPF)).astype(np.float32)
    return write_av(path, frames, audio)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("vs")
    items = [(f"set/v{i}.mp4", make_clip(root / f"v{i}.mp4", n, i)) for i, n in enumerate(LENGTHS)]
    cache = PreparedCache(root / "cache")
    spec = InputSpec(frames=T, size=SIZE)
    res = prepare(items, pipeline_for_spec(spec), cache, progress=False)
    assert not res.problems
    records = [
        VideoRecord(id=vid, dataset="t", label=i % 2, label_v=i % 2, label_a=(i // 2) % 2)
        for i, (vid, _) in enumerate(items)
    ]
    return records, res.entries, cache, spec, items


def test_segment_helpers() -> None:
    assert eval_starts(40, 16).tolist() == [0, 16]
    assert eval_starts(10, 16).tolist() == [0]
    assert eval_starts(32, 16).tolist() == [0, 16]
    rng = np.random.default_rng(0)
    starts = {random_start(20, 16, rng) for _ in range(200)}
    assert starts == set(range(5))
    assert random_start(7, 16, rng) == 0
    frames = np.arange(3)[:, None] * np.ones((3, 2), int)
    audio = np.repeat(np.arange(3.0), 4)
    f, a, pad = loop_pad(frames, audio, 7, 4)
    assert pad == 4 and f[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert a.tolist() == np.repeat([0, 1, 2, 0, 1, 2, 0], 4).tolist()
    f, a, pad = loop_pad(frames, audio, 3, 4)
    assert pad == 0 and f is frames
    with pytest.raises(ValueError):
        loop_pad(frames, audio[:-1], 7, 4)


def test_eval_index_covers_every_segment(prepared) -> None:
    records, entries, cache, spec, _ = prepared
    vs = VideoSet(records, entries, cache, spec)
    conforming: VideoSetLike = vs  # the contract fit() receives
    assert all(
        hasattr(conforming, name) for name in ("records", "spec", "iter_batches", "random_segments")
    )
    assert len(vs) == 4
    vi, st = vs.eval_index()
    assert list(zip(vi.tolist(), st.tolist(), strict=True)) == [
        (0, 0),
        (0, 16),
        (1, 0),
        (2, 0),
        (2, 16),
        (3, 0),
    ]
    assert [vs.padded_frames(i) for i in range(4)] == [0, 6, 0, 0]

    batches = list(vs.iter_batches(4))
    assert [len(b) for b in batches] == [4, 2]
    assert batches[0].ids == ["set/v0.mp4", "set/v0.mp4", "set/v1.mp4", "set/v2.mp4"]
    assert batches[0].video.shape == (4, T, 3, SIZE, SIZE) and batches[0].video.dtype == np.uint8
    assert batches[0].audio.shape == (4, T * SPF) and batches[0].audio.dtype == np.float32
    assert batches[0].label.tolist() == [0, 0, 1, 0] and batches[1].label_a.tolist() == [1, 1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = np.maximum(err.reshape(len(err), -1).mean(axis=1), 1e-10)
    return float(np.mean(10 * np.log10(255.0**2 / mse)))


#: make_clip's frames are random colours pixel by pixel, finer than 4:2:0 keeps (see
#: tests/test_media_cache.py for the 40 dB target on real-looking footage)
NOISE_PSNR = 33


def test_segments_match_the_decoded_video(prepared) -> None:
    records, entries, cache, spec, items = prepared
    vs = VideoSet(records, entries, cache, spec)
    for i, (vid, path) in enumerate(items):
        clip = decode(path, pipeline_for_spec(spec))
        whole = cache.load(entries[vid])
        for s in vs.eval_index()[1][vs.eval_index()[0] == i]:
            video, audio = vs.segment(i, int(s))
            if clip.n_frames >= T:
                np.testing.assert_array_equal(video, whole.frames[s : s + T])
                assert psnr(video, clip.frames[s : s + T]) >= NOISE_PSNR
                np.testing.assert_array_equal(audio, clip.audio[s * SPF : (s + T) * SPF])
    # the short video is loop-padded, sound and picture together
    short = decode(items[1][1], pipeline_for_spec(spec))
    stored = cache.load(entries[items[1][0]])
    video, audio = vs.segment(1, 0)
    idx = np.arange(T) % 10
    np.testing.assert_array_equal(video, stored.frames[idx])
    assert psnr(video, short.frames[idx]) >= NOISE_PSNR
    np.testing.assert_array_equal(audio.reshape(T, SPF), short.audio.reshape(10, SPF)[idx])
    with pytest.raises(ValueError):
        vs.segment(0, 30)  # 30 + 16 > 40


def test_segments_read_alone_equal_the_same_frames_read_in_sequence(prepared) -> None:
    """Every start of every video, read in a shuffled order that jumps between videos (one
    decoder serves them all), equals the frames of that video decoded from its start."""
    records, entries, _, spec, _ = prepared
    cache = PreparedCache(prepared[2].root)  # a fresh reader
    vs = VideoSet(records, entries, cache, spec)
    wholes = [cache.load(entries[r.id]).frames for r in records]
    pairs = [(i, s) for i in range(len(vs)) for s in range(max(1, vs.n_frames(i) - T + 1))]
    order = np.random.default_rng(5).permutation(len(pairs))
    for j in order:
        i, s = pairs[j]
        video, _ = vs.segment(i, s)
        if vs.n_frames(i) >= T:
            np.testing.assert_array_equal(video, wholes[i][s : s + T])
        else:
            np.testing.assert_array_equal(video, wholes[i][np.arange(T) % vs.n_frames(i)])
    assert len(cache._decoders) == 1


def test_modalities_are_honoured(prepared) -> None:
    records, entries, cache, _, _ = prepared
    fresh = PreparedCache(cache.root)
    audio_only = VideoSet(
        records, entries, fresh, InputSpec(frames=T, size=SIZE, modalities=("audio",))
    )
    video, audio = audio_only.segment(0, 0)
    assert video is None and audio.shape == (T * SPF,)
    assert fresh._decoders == {}  # no frame was decoded
    batch = next(audio_only.iter_batches(8))
    assert batch.video is None and batch.audio.shape == (6, T * SPF)
    video_only = VideoSet(
        records, entries, cache, InputSpec(frames=T, size=SIZE, modalities=("video",))
    )
    batch = video_only.random_segments([1, 2], np.random.default_rng(0))
    assert batch.audio is None and batch.video.shape == (2, T, 3, SIZE, SIZE)


def test_random_segments_are_seeded(prepared) -> None:
    records, entries, cache, spec, _ = prepared
    vs = VideoSet(records, entries, cache, spec)
    a = vs.random_segments([0, 0, 2, 1], np.random.default_rng(7))
    b = vs.random_segments([0, 0, 2, 1], np.random.default_rng(7))
    assert a.start.tolist() == b.start.tolist() and np.array_equal(a.video, b.video)
    assert a.start[3] == 0 and all(0 <= s <= 24 for s in a.start[:2]) and 0 <= a.start[2] <= 17


def test_spec_mismatch_and_missing_entries_are_errors(prepared) -> None:
    records, entries, cache, _, _ = prepared
    with pytest.raises(ConfigError, match="size=32x32"):
        VideoSet(records, entries, cache, InputSpec(frames=T, size=224))
    with pytest.raises(ConfigError, match="fps"):
        VideoSet(records, entries, cache, InputSpec(frames=T, size=SIZE, fps=20))
    with pytest.raises(ValueError, match="no prepared entry"):
        VideoSet(
            records,
            {k: v for k, v in entries.items() if k != "set/v1.mp4"},
            cache,
            InputSpec(frames=T, size=SIZE),
        )
    assert pipeline_for_spec(InputSpec(size=SIZE), max_seconds=5) == Pipeline(
        size=SIZE, max_seconds=5
    )


def test_pickles_without_decoders(prepared) -> None:
    records, entries, cache, spec, _ = prepared
    vs = VideoSet(records, entries, cache, spec)
    vs.segment(0, 0)
    assert vs.cache._decoders
    clone = pickle.loads(pickle.dumps(vs))
    assert clone.cache._decoders == {}  # decoders are not pickled: made again there
    np.testing.assert_array_equal(clone.segment(2, 16)[0], vs.segment(2, 16)[0])


def _collect(loader) -> list[dict]:
    out = []
    for batch in loader:
        for j in range(len(batch["label"])):
            out.append({k: v[j] for k, v in batch.items()})
    return out


def test_torch_datasets_same_items_with_workers(prepared) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from avbench.media.torchdata import eval_segments, train_segments

    records, entries, cache, spec, _ = prepared
    vs = VideoSet(records, entries, cache, spec)
    draws = np.array([0, 2, 1, 0, 3, 2, 0])
    train = train_segments(vs, draws, seed=11)
    assert len(train) == 7
    item = train[0]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (T, 3, SIZE, SIZE)
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (T * SPF,)
    for key in ("label", "label_v", "label_a", "video_index", "start"):
        assert item[key].dtype == torch.int64 and item[key].ndim == 0
    # an item depends on (seed, k) only
    assert train.video_index.tolist() == draws.tolist()
    for k in range(7):
        rng = np.random.default_rng([11, k])
        assert train.starts[k] == random_start(vs.n_frames(draws[k]), T, rng)
    assert train.starts.tolist() != train_segments(vs, draws, 12).starts.tolist()
    with pytest.raises(IndexError, match="outside"):
        train_segments(vs, [0, 4], seed=11)

    ev = eval_segments(vs)
    assert len(ev) == 6
    for ds in (train, ev):
        serial = _collect(DataLoader(ds, batch_size=3, num_workers=0))
        parallel = _collect(DataLoader(ds, batch_size=3, num_workers=2))
        assert len(serial) == len(parallel) == len(ds)
        for a, b in zip(serial, parallel, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), key
    got = _collect(DataLoader(ev, batch_size=4))
    vi, st = vs.eval_index()
    assert [int(x["video_index"]) for x in got] == vi.tolist()
    assert [int(x["start"]) for x in got] == st.tolist()

    audio_only = VideoSet(
        records, entries, cache, InputSpec(frames=T, size=SIZE, modalities=("audio",))
    )
    assert "video" not in eval_segments(audio_only)[0]
