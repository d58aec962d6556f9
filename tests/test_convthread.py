"""The frame conversion thread (avbench.media._convthread): same clips, errors, growth."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")

from avbench.media import _convthread
from avbench.media import decode as dec


@pytest.fixture()
def two_cores(monkeypatch):
    monkeypatch.delenv("AVBENCH_CONVERT_THREAD", raising=False)
    dec.set_decoding_cores(2)
    yield
    dec.set_decoding_cores(None)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from avbench.bench.media import make_media, media_kinds

    return make_media(tmp_path_factory.mktemp("media"), media_kinds(64), clips=1, seconds=1.5)


class _Centre:
    key = "test-centre"

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        return [(w // 4, h // 4, w // 2, h // 2, 1.0)]


def _both(monkeypatch, path, pipeline, **kwargs):
    monkeypatch.setenv("AVBENCH_CONVERT_THREAD", "0")
    plain = dec.decode(path, pipeline, **kwargs)
    monkeypatch.setenv("AVBENCH_CONVERT_THREAD", "1")
    threaded = dec.decode(path, pipeline, **kwargs)
    return plain, threaded


def test_the_thread_gives_the_same_clips(media, two_cores, monkeypatch, count_calls):
    handed = count_calls(_convthread.ClipConversion, "frame")  # frames given to the thread
    pipelines = [dec.Pipeline(size=64), dec.Pipeline(size=None), dec.Pipeline(size=48),
                 dec.Pipeline(fps=20, size=40)]
    for paths in media.values():
        for pipeline in pipelines:
            before = len(handed)
            plain, threaded = _both(monkeypatch, paths[0], pipeline)
            assert len(handed) > before  # the thread converted this one's frames
            assert np.array_equal(plain.frames, threaded.frames)
            assert np.array_equal(plain.audio, threaded.audio)
            assert plain.facts() == threaded.facts()
        crop = dec.Pipeline(size=32, face_crop=True)
        plain, threaded = _both(monkeypatch, paths[0], crop, face_detector=_Centre())
        assert np.array_equal(plain.frames, threaded.frames)


def test_not_used_with_one_core_or_when_turned_off(media, two_cores, monkeypatch, count_calls):
    handed = count_calls(_convthread.ClipConversion, "frame")
    path = media["native"][0]
    monkeypatch.setenv("AVBENCH_CONVERT_THREAD", "0")
    dec.decode(path)
    monkeypatch.delenv("AVBENCH_CONVERT_THREAD")
    dec.set_decoding_cores(1)
    dec.decode(path)
    assert len(handed) == 0
    dec.set_decoding_cores(2)
    dec.decode(path)
    assert len(handed) > 0


def test_the_buffer_grows_only_after_pending_work(media, two_cores, monkeypatch):
    """A clip longer than its header says grows the frame buffer; the thread must have
    written every frame before the buffer moves."""
    real = dec._FrameBuffer.__init__

    def small(self, shape, capacity):
        real(self, shape, 3)

    path = media["rate"][0]
    monkeypatch.setenv("AVBENCH_CONVERT_THREAD", "0")
    want = dec.decode(path)
    monkeypatch.setattr(dec._FrameBuffer, "__init__", small)
    plain, threaded = _both(monkeypatch, path, dec.Pipeline())
    assert np.array_equal(want.frames, plain.frames)
    assert np.array_equal(want.frames, threaded.frames)


def test_a_conversion_error_reaches_the_caller(media, two_cores, monkeypatch):
    real = dec._Geometry.convert
    calls = {"n": 0}

    def failing(self, frame, dst):
        calls["n"] += 1
        if calls["n"] == 12:
            raise RuntimeError("conversion failed")
        real(self, frame, dst)

    monkeypatch.setattr(dec._Geometry, "convert", failing)
    path = media["native"][0]
    for flag in ("0", "1"):
        calls["n"] = 0
        monkeypatch.setenv("AVBENCH_CONVERT_THREAD", flag)
        with pytest.raises(RuntimeError, match="conversion failed"):
            dec.decode(path)
    # the thread carries on with the next clip
    monkeypatch.setattr(dec._Geometry, "convert", real)
    monkeypatch.setenv("AVBENCH_CONVERT_THREAD", "0")
    plain = dec.decode(path)
    monkeypatch.setenv("AVBENCH_CONVERT_THREAD", "1")
    assert np.array_equal(plain.frames, dec.decode(path).frames)


def test_ordering_and_cancel():
    """Copies run after the conversion they copy; a cancelled clip's work is dropped."""
    out = np.zeros((40, 2), np.uint8)

    def convert(value, dst, address):
        assert address == dst.ctypes.data
        dst[...] = value

    conv = _convthread.ClipConversion(convert)
    for i in range(0, 40, 2):
        conv.frame(i + 1, out[i], out[i].ctypes.data)
        conv.copy(out[i], out[i + 1])
    conv.wait()
    assert out[:, 0].tolist() == [i // 2 * 2 + 1 for i in range(40)]

    out[...] = 0
    conv = _convthread.ClipConversion(convert)
    conv.frame(7, out[0], out[0].ctypes.data)
    conv.cancel()  # nothing is sent after this: the batch was not full
    conv.wait()
    assert not out.any()


def test_the_thread_lets_go_of_a_clips_buffer(media, two_cores, monkeypatch):
    import gc
    import weakref

    clip = dec.decode(media["native"][0])
    frames = clip.frames
    buffer = weakref.ref(frames.base if frames.base is not None else frames)
    del clip, frames
    gc.collect()
    assert buffer() is None


def test_several_threads_decoding_at_once_share_it(media, two_cores):
    """Clips decoded from several threads at once (one conversion thread serves them all,
    in the order each handed its frames in) equal the clips decoded one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [p for ps in media.values() for p in ps] * 3
    alone = [dec.decode(p).frames for p in paths]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: dec.decode(p).frames, paths))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
