"""The direct swscale path (avbench.media._swscale) and the decoder's threading choice."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from avbench.media import _swscale  # noqa: E402
from avbench.media import decode as dec  # noqa: E402

needs_direct = pytest.mark.skipif(not _swscale.available(),
                                  reason="PyAV's libswscale not reachable on this platform")


def _gradient_frame(width: int, height: int, fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, fmt)
    for i, p in enumerate(frame.planes):
        buf = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
        y, x = np.mgrid[0 : p.height, 0 : p.line_size]
        buf[...] = (16 + (x * (3 + i) + y * (5 - i)) % 224).astype(np.uint8)
    return frame


def _pyav_rgb(frame: av.VideoFrame) -> np.ndarray:
    from av.video.reformatter import VideoReformatter

    img = VideoReformatter().reformat(frame, format="gbrp", threads=1)
    g, b, r = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : frame.width]
               for p in img.planes)
    return np.stack([r, g, b])


@needs_direct
@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "yuv422p", "yuv444p"])
@pytest.mark.parametrize("colorspace,color_range", [(2, 0), (1, 1), (5, 1), (6, 0), (1, 2)])
def test_direct_conversion_writes_pyavs_pixels(fmt, colorspace, color_range):
    frame = _gradient_frame(224, 160, fmt)
    frame.colorspace, frame.color_range = colorspace, color_range
    conv = _swscale.DirectRGB.converter(frame)
    assert conv is not None
    dst = np.zeros((3, 160, 224), dtype=np.uint8)
    conv.convert(frame, dst)
    assert np.array_equal(dst, _pyav_rgb(frame))


@needs_direct
def test_direct_conversion_rejects_a_destination_of_another_shape():
    frame = _gradient_frame(64, 48, "yuv420p")
    conv = _swscale.DirectRGB.converter(frame)
    assert conv is not None
    with pytest.raises(ValueError, match="bad destination"):
        conv.convert(frame, np.zeros((3, 48, 48), dtype=np.uint8))
    with pytest.raises(ValueError, match="bad destination"):
        conv.convert(frame, np.zeros((3, 48, 128), dtype=np.uint8)[:, :, ::2])


def test_no_direct_converter_for_other_formats_or_when_turned_off(monkeypatch):
    assert _swscale.DirectRGB.converter(av.VideoFrame(64, 48, "rgb24")) is None
    monkeypatch.setenv("AVBENCH_DIRECT_SWSCALE", "0")
    assert not _swscale.available()
    assert _swscale.DirectRGB.converter(_gradient_frame(64, 48, "yuv420p")) is None


@needs_direct
def test_a_conversion_that_differs_from_pyav_is_not_used(monkeypatch):
    monkeypatch.setattr(_swscale, "_VERIFIED", {})
    monkeypatch.setattr(_swscale.DirectRGB, "_matches_pyav", lambda self, *key: False)
    assert _swscale.DirectRGB.converter(_gradient_frame(64, 48, "yuv420p")) is None


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from avbench.bench.media import make_media, media_kinds

    kinds = media_kinds(64)  # 64x64 at 25 fps; 64x64 at 29.97 fps; 90x64
    return make_media(tmp_path_factory.mktemp("media"), kinds, clips=1, seconds=1.0)


def test_decoding_gives_the_same_clip_with_and_without_the_direct_path(media, monkeypatch,
                                                                      count_calls):
    calls = count_calls(_swscale.DirectRGB, "convert_at")  # convert() goes through it too
    for name, paths in media.items():
        for size in (64, 48, 40, None):
            pipeline = dec.Pipeline(size=size)
            monkeypatch.setenv("AVBENCH_DIRECT_SWSCALE", "0")
            plain = dec.decode(paths[0], pipeline)
            monkeypatch.setenv("AVBENCH_DIRECT_SWSCALE", "1")
            before = len(calls)
            direct = dec.decode(paths[0], pipeline)
            assert np.array_equal(plain.frames, direct.frames), (name, size)
            assert np.array_equal(plain.audio, direct.audio), (name, size)
            assert plain.frames.flags.c_contiguous and direct.frames.dtype == np.uint8
            # unscaled 64x64 frames and the second pass of every resize to 64 or 48 go
            # direct; output widths that are not a multiple of 16 (40, 90) take PyAV's path
            used = len(calls) > before
            expect = size in (64, 48) or (size is None and name != "resample")
            assert used == (expect and _swscale.available()), (name, size)


def test_decoder_threading_follows_the_cores_the_audio_helper_and_the_override(monkeypatch):
    monkeypatch.delenv("AVBENCH_DECODE_THREADS", raising=False)
    try:
        dec.set_decoding_cores(1)
        assert dec.decoder_threading() == "NONE"
        assert dec.decoder_threading(audio_helper=True) == "NONE"
        dec.set_decoding_cores(2)
        assert dec.decoder_threading() == "AUTO"
        assert dec.decoder_threading(audio_helper=True) == "NONE"
        dec.set_decoding_cores(3)
        assert dec.decoder_threading(audio_helper=True) == "AUTO"
        monkeypatch.setenv("AVBENCH_DECODE_THREADS", "1")
        dec.set_decoding_cores(16)
        assert dec.decoder_threading() == "NONE"
        monkeypatch.setenv("AVBENCH_DECODE_THREADS", "0")
        dec.set_decoding_cores(1)
        assert dec.decoder_threading() == "AUTO"
    finally:
        dec.set_decoding_cores(None)
    assert dec.available_cores() >= 1


def test_decoding_workers_get_a_share_of_the_cores():
    from avbench.media.cache import _worker_init

    try:
        _worker_init(1)
        assert dec.available_cores() == 1
    finally:
        dec.set_decoding_cores(None)
