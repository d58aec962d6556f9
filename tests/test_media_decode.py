"""Decoding: 25 fps / 16 kHz mono, 640 samples per frame, timestamps, odd rates."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avbench.datasets.synth.writer import write_av
from avbench.media.decode import PIPELINE_VERSION, Pipeline, decode

SPF = 640
DARK, LIT = 20, 230


def flash_clip(
    path: Path,
    *,
    fps: float | Fraction,
    sample_rate: int,
    channels: int,
    seconds: float,
    flash: Fraction,
    click: float,
    size: int = 32,
) -> list[int]:
    """Write a dark clip whose source frames in [flash, flash + 0.12 s) are lit and whose
    audio holds a short click at ``click`` seconds. Returns the lit source frame indices."""
    rate = Fraction(fps)
    n = int(seconds * rate)
    frames = np.full((n, size, size, 3), DARK, np.uint8)
    lit = [i for i in range(n) if flash <= Fraction(i) / rate < flash + Fraction(3, 25)]
    frames[lit] = LIT
    audio = np.zeros((round(seconds * sample_rate), channels), np.float32)
    at = round(click * sample_rate)
    audio[at : at + max(1, sample_rate // 4000)] = 0.8
    write_av(path, frames, audio if channels > 1 else audio[:, 0], fps=fps, sample_rate=sample_rate)
    return lit


def lit_frames(frames: np.ndarray) -> list[int]:
    return np.flatnonzero(frames.reshape(len(frames), -1).mean(axis=1) > 128).tolist()


SOURCES = [
    (30, 44100, 2),
    (Fraction(30000, 1001), 44100, 2),
    (Fraction(30000, 1001), 48000, 1),
    (25, 48000, 1),
    (30, 8000, 1),
    (12, 16000, 1),
    (24, 22050, 2),
]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    source=st.sampled_from(SOURCES),
    seconds=st.sampled_from([1.0, 1.6, 2.2]),
    flash_at=st.integers(min_value=2, max_value=17),
    click_ms=st.integers(min_value=100, max_value=900),
)
def test_resampling_keeps_time(tmp_path: Path, source, seconds, flash_at, click_ms) -> None:
    fps, sample_rate, channels = source
    rate = Fraction(fps)
    flash = Fraction(flash_at, 25)
    click = click_ms / 1000
    path = tmp_path / f"clip-{flash_at}-{click_ms}.mp4"
    lit = flash_clip(
        path,
        fps=fps,
        sample_rate=sample_rate,
        channels=channels,
        seconds=seconds,
        flash=flash,
        click=click,
    )
    clip = decode(path, Pipeline(size=32))

    # the 640-samples-per-frame invariant
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1:] == (3, 32, 32)
    assert clip.audio.dtype == np.float32
    assert len(clip.audio) == clip.n_frames * SPF
    # duration: the source's frames cover int(seconds * fps) / fps seconds
    video_seconds = int(seconds * rate) / rate
    assert abs(clip.n_frames - float(video_seconds) * 25) <= 1
    # output frame k shows the source frame whose interval holds k / 25
    expected = [k for k in range(clip.n_frames) if int(Fraction(k, 25) * rate) in lit]
    assert expected and lit_frames(clip.frames) == expected
    # the click lands on the right 16 kHz sample (within 2 ms)
    peak = int(np.argmax(np.abs(clip.audio)))
    assert abs(peak - click * 16000) <= 32, (peak, click * 16000)
    assert clip.source_sample_rate == sample_rate and clip.source_channels == channels
    assert abs(clip.source_fps - float(rate)) < 1e-6


def test_audio_rate_and_channels_are_exact(tmp_path: Path) -> None:
    """A 44.1 kHz stereo 440 Hz tone comes back at 440 Hz, averaged to mono, in [-1, 1]."""
    sr, n = 44100, 2 * 44100
    t = np.arange(n) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    audio = np.stack([left, np.zeros(n)], axis=1).astype(np.float32)
    frames = np.zeros((50, 16, 16, 3), np.uint8)
    path = write_av(tmp_path / "tone.mp4", frames, audio, sample_rate=sr)
    clip = decode(path, Pipeline(size=16))
    assert clip.n_frames == 50 and len(clip.audio) == 50 * SPF
    x = clip.audio[4000:28000]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freq = np.argmax(spectrum) * 16000 / len(x)
    assert abs(freq - 440) < 2
    # averaging a 0.5 tone with a silent channel gives amplitude 0.25
    assert 0.22 < np.abs(x).max() < 0.28
    assert clip.audio.min() >= -1.0 and clip.audio.max() <= 1.0


def write_multichannel(
    path: Path, audio: np.ndarray, sample_rate: int, layout: str, n_frames: int
) -> None:
    """Write a tiny video with PCM audio of any layout (write_av writes mono/stereo only)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = 16
        vs.pix_fmt = "yuv420p"
        ast = c.add_stream("pcm_s16le", rate=sample_rate, layout=layout)
        for _ in range(n_frames):
            for p in vs.encode(
                av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            ):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        pcm = (audio * 32767).round().astype(np.int16)
        for s in range(0, len(pcm), 1024):
            block = pcm[s : s + 1024].reshape(1, -1)
            af = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            af.sample_rate = sample_rate
            af.pts = s
            for p in ast.encode(af):
                c.mux(p)
        for p in ast.encode():
            c.mux(p)


def test_48k_six_channels_average_to_mono(tmp_path: Path) -> None:
    sr, n = 48000, 48000
    audio = np.zeros((n, 6), np.float32)
    audio[:19200, 2] = 0.6 * np.sin(2 * np.pi * 300 * np.arange(19200) / sr)  # centre only
    audio[28800 : 28800 + 24, 0] = 0.9  # a 0.5 ms click on the front left at 0.6 s
    path = tmp_path / "six.mov"
    write_multichannel(path, audio, sr, "5.1", 25)
    clip = decode(path, Pipeline(size=16))
    assert clip.source_channels == 6 and clip.source_sample_rate == 48000
    assert clip.n_frames == 25 and len(clip.audio) == 25 * SPF
    tone = clip.audio[2000:7000]
    assert 0.08 < np.abs(tone).max() < 0.12  # 0.6 / 6
    assert abs(int(np.argmax(clip.audio)) - 9600) <= 16


def write_vfr(path: Path, times_ms: list[int], values: list[int], seconds: float) -> None:
    """A variable-frame-rate file: frame i shows grey level values[i] from times_ms[i]."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = 16
        vs.pix_fmt = "yuv420p"
        vs.time_base = Fraction(1, 1000)
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"crf": "10", "preset": "veryfast"}
        ast = c.add_stream("aac", rate=16000, layout="mono")
        for t, v in zip(times_ms, values, strict=True):
            f = av.VideoFrame.from_ndarray(np.full((16, 16, 3), v, np.uint8), format="rgb24")
            f.pts = t
            f.time_base = Fraction(1, 1000)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        silence = np.zeros((1, round(seconds * 16000)), np.float32)
        for s in range(0, silence.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(silence[:, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate = 16000
            af.pts = s
            for p in ast.encode(af):
                c.mux(p)
        for p in ast.encode():
            c.mux(p)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_by_timestamps(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(3)
    steps = rng.integers(15, 90, size=24)
    times = np.concatenate([[0], np.cumsum(steps)]).astype(int).tolist()
    values = [(i * 37) % 200 + 30 for i in range(len(times))]
    path = tmp_path / f"vfr.{ext}"
    write_vfr(path, times, values, seconds=(times[-1] + 60) / 1000)
    clip = decode(path, Pipeline(size=None))
    assert len(clip.audio) == clip.n_frames * SPF
    assert clip.n_frames >= (times[-1] // 40)
    means = clip.frames.reshape(clip.n_frames, -1).mean(axis=1)
    for k, m in enumerate(means):
        src = int(np.searchsorted(times, 40 * k, side="right")) - 1
        assert abs(m - values[src]) < 4, (k, m, values[src])


def test_pipeline_key_is_stable_and_covers_every_field() -> None:
    base = Pipeline()
    assert base.key() == Pipeline().key() and len(base.key()) == 12
    variants = [
        Pipeline(fps=30, sample_rate=16200),
        Pipeline(sample_rate=8000),
        Pipeline(size=112),
        Pipeline(size=None),
        Pipeline(max_seconds=10),
        Pipeline(face_crop=True),
    ]
    keys = {v.key() for v in variants} | {base.key()}
    assert len(keys) == len(variants) + 1
    assert isinstance(PIPELINE_VERSION, int)
    assert Pipeline(max_seconds=10).key() == Pipeline(max_seconds=10.0).key()
    with pytest.raises(ValueError):
        Pipeline(fps=7)  # 16000 is not a multiple of 7
    with pytest.raises(ValueError):
        Pipeline(size=None, face_crop=True)


def test_non_square_sources_are_centre_cropped(tmp_path: Path) -> None:
    frames = np.zeros((10, 48, 96, 3), np.uint8)
    frames[:, :, :24] = (255, 0, 0)  # red bar on the left quarter: cropped away
    frames[:, :, 24:72] = (0, 200, 0)  # green centre square
    frames[:, :, 72:] = (0, 0, 255)
    path = write_av(tmp_path / "wide.mp4", frames, np.zeros(6400, np.float32), crf=12)
    clip = decode(path, Pipeline(size=24))
    assert clip.frames.shape == (10, 3, 24, 24)
    assert clip.source_width == 96 and clip.source_height == 48
    inner = clip.frames[:, :, 2:-2, 2:-2].astype(int)
    assert inner[:, 1].min() > 150 and inner[:, 0].max() < 60 and inner[:, 2].max() < 60
    native = decode(path, Pipeline(size=None))
    assert native.frames.shape == (10, 3, 48, 96)


def test_max_seconds_caps_the_decode(tmp_path: Path) -> None:
    frames = np.zeros((75, 16, 16, 3), np.uint8)
    path = write_av(tmp_path / "long.mp4", frames, np.zeros(48000, np.float32))
    clip = decode(path, Pipeline(size=16, max_seconds=1.0))
    assert clip.n_frames == 25 and len(clip.audio) == 25 * SPF
    assert clip.capped and abs(clip.duration - 3.0) < 0.05
    full = decode(path, Pipeline(size=16))
    assert full.n_frames == 75 and not full.capped


def test_late_audio_is_placed_on_the_video_clock(tmp_path: Path) -> None:
    """Audio that starts 0.2 s after the video is preceded by 0.2 s of silence."""
    path = tmp_path / "late.mkv"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = 16
        vs.pix_fmt = "yuv420p"
        ast = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        for _ in range(25):
            for p in vs.encode(
                av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            ):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        tone = np.full((1, 12800), 8000, np.int16)  # 0.8 s of a constant level
        for s in range(0, tone.shape[1], 800):
            af = av.AudioFrame.from_ndarray(tone[:, s : s + 800], format="s16", layout="mono")
            af.sample_rate = 16000
            af.pts = 3200 + s  # starts at 0.2 s
            for p in ast.encode(af):
                c.mux(p)
        for p in ast.encode():
            c.mux(p)
    clip = decode(path, Pipeline(size=16))
    assert clip.n_frames == 25 and len(clip.audio) == 25 * SPF
    onset = int(np.flatnonzero(np.abs(clip.audio) > 0.1)[0])
    assert abs(onset - 3200) <= 2


def test_media_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import avbench.media.decode, avbench.media.cache, avbench.media.videoset, "
        "avbench.media.face, avbench.media.segments; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def _encode_tone(path: Path, codec: str, fmt: str, sample_rate: int, layout: str) -> None:
    """One second of a 300 Hz tone (amplitude 0.5) in any codec / sample format."""
    t = np.arange(sample_rate) / sample_rate
    x = 0.5 * np.sin(2 * np.pi * 300 * t)
    base, planar = fmt.rstrip("p"), fmt.endswith("p")
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = 16
        vs.pix_fmt = "yuv420p"
        ast = c.add_stream(codec, rate=sample_rate, layout=layout)
        for _ in range(25):
            img = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for p in vs.encode(img):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        channels = 2 if layout == "stereo" else 1
        step = ast.codec_context.frame_size or 1024
        for s in range(0, len(x), step):
            blk = x[s : s + step]
            v = {
                "u8": lambda b: (b * 127 + 128).astype(np.uint8),
                "s16": lambda b: (b * 32767).astype(np.int16),
                "s32": lambda b: (b * 2147483647).astype(np.int32),
                "flt": lambda b: b.astype(np.float32),
                "dbl": lambda b: b.astype(np.float64),
            }[base](blk)
            arr = np.stack([v] * channels) if planar else np.repeat(v, channels)[None, :]
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
            af.sample_rate = sample_rate
            af.pts = s
            for p in ast.encode(af):
                c.mux(p)
        for p in ast.encode():
            c.mux(p)


@pytest.mark.parametrize(
    ("codec", "fmt", "sample_rate", "layout", "ext"),
    [
        ("pcm_u8", "u8", 8000, "mono", "mov"),
        ("pcm_s16le", "s16", 44100, "stereo", "mov"),
        ("pcm_s32le", "s32", 48000, "stereo", "mov"),
        ("pcm_f32le", "flt", 22050, "mono", "mov"),
        ("pcm_f64le", "dbl", 16000, "stereo", "mov"),
        ("flac", "s16", 44100, "stereo", "mkv"),
        ("libopus", "s16", 48000, "stereo", "mkv"),
        ("mp3", "s16p", 44100, "stereo", "mp4"),
    ],
)
def test_sample_formats(
    tmp_path: Path, codec: str, fmt: str, sample_rate: int, layout: str, ext: str
) -> None:
    path = tmp_path / f"tone.{ext}"
    _encode_tone(path, codec, fmt, sample_rate, layout)
    clip = decode(path, Pipeline(size=16))
    assert clip.n_frames == 25 and len(clip.audio) == 25 * SPF
    x = clip.audio[3000:13000]
    freq = np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * 16000 / len(x)
    assert abs(freq - 300) < 3
    assert 0.44 < np.abs(x).max() < 0.53


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [(100, 100, None), (232, 224, 224), (120, 100, None), (112, 112, None), (224, 160, None),
     (240, 224, 224), (160, 224, 160)],
)
def test_unscaled_frames_match_pyav_rgb(tmp_path: Path, width: int, height: int, size) -> None:
    """Unscaled frames, planar RGB written straight (widths 16k) or through rgb24 (widths
    that swscale's unscaled planar-RGB converter gets wrong, 16k + 1 to 16k + 8), centre-cut
    or not, give exactly PyAV's own RGB conversion."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, height, width, 3), dtype=np.uint8)
    path = write_av(tmp_path / "odd.mp4", frames, np.zeros(3200, np.float32), crf=18)
    with av.open(str(path)) as c:
        ref = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    ref = ref.transpose(0, 3, 1, 2)
    if size is not None:
        x0, y0 = (width - size) // 2, (height - size) // 2
        ref = ref[:, :, y0 : y0 + size, x0 : x0 + size]
    clip = decode(path, Pipeline(size=size))
    assert np.array_equal(clip.frames, ref[: clip.n_frames])


def test_audio_frames_of_every_sample_format_are_downmixed_as_one_stream() -> None:
    """Downmixing runs of frames gives the channel mean of the whole stream, scaled to
    [-1, 1], across changes of sample format and channel count mid-stream."""
    import av

    from avbench.media.decode import _mono, _samples

    rng = np.random.default_rng(3)
    cases = [  # (format, channels, dtype, scale, offset)
        ("fltp", 2, np.float32, 1.0, 0.0),
        ("s16", 2, np.int16, 32768.0, 0.0),
        ("s16p", 3, np.int16, 32768.0, 0.0),
        ("u8", 1, np.uint8, 128.0, 128.0),
        ("s32p", 2, np.int32, 2147483648.0, 0.0),
        ("dbl", 2, np.float64, 1.0, 0.0),
        ("flt", 1, np.float32, 1.0, 0.0),
    ]
    layouts = {1: "mono", 2: "stereo", 3: "3.0"}
    chunks = []
    expected = []
    for fmt, channels, dtype, scale, offset in cases:
        sizes = [1024, 333] + ([50] * 70 if fmt == "fltp" else [])
        for n in sizes:
            if np.issubdtype(dtype, np.floating):
                x = rng.uniform(-1, 1, (channels, n)).astype(dtype)
            else:
                info = np.iinfo(dtype)
                x = rng.integers(info.min, info.max, (channels, n), endpoint=True).astype(dtype)
            planar = fmt.endswith("p")
            arr = x if planar else x.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt,
                                               layout=layouts[channels])
            frame.sample_rate = 16000
            chunks.append(_samples(frame))
            wide = dtype in (np.int32, np.float64)
            mono = x.astype(np.float64 if wide else np.float32).mean(axis=0)
            mono = mono.astype(np.float32)
            if offset:
                mono = mono - np.float32(offset)
            expected.append(mono / np.float32(scale) if scale != 1.0 else mono)
    got = _mono(chunks)
    want = np.concatenate(expected)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert np.abs(got).max() <= 1.0


_DIRTY_CHILD = """
import hashlib, os, random, sys
import numpy as np
rng = random.Random(int(os.environ["PYTHONHASHSEED"]))
if sys.argv[1] == "one-core":
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
blocks = [rng.randbytes(rng.randrange(512, 120_000)) for _ in range(3000)]
del blocks  # freed: what malloc hands out next holds these random bytes
probe = np.empty(50_000, np.uint8)  # uninitialised: shows that the heap is dirty
print("probe", hashlib.sha256(probe.tobytes()).hexdigest())
from avbench.media.decode import Pipeline, decode
for spec in sys.argv[2:]:
    path, size = spec.rsplit("|", 1)
    clip = decode(path, Pipeline(size=None if size == "-" else int(size)))
    digest = hashlib.sha256(clip.frames.tobytes() + clip.audio.tobytes()).hexdigest()
    print(spec.rsplit("/", 1)[1], clip.frames.shape, digest)
"""


def test_decoded_bytes_are_a_function_of_the_file(tmp_path: Path) -> None:
    """The same file decodes to the same bytes in every process: decoded in fresh processes
    whose heaps are dirtied with different random bytes (uninitialised memory differs, as the
    probe shows), under different PYTHONHASHSEEDs and CPU affinities. The sources are noise
    at sizes whose rows are padded (112 wide: 56-byte chroma rows in 64-byte lines), odd-sized
    and non-square, unscaled, shrunk, enlarged and centre-cropped."""
    rng = np.random.default_rng(5)
    specs = []
    for (w, h), sizes in [((112, 112), ["-", "64"]), ((100, 100), ["-", "48"]),
                          ((160, 120), ["112", "120", "-"]), ((50, 38), ["-", "64"])]:
        frames = rng.integers(0, 256, (20, h, w, 3), dtype=np.uint8)
        audio = (0.3 * rng.standard_normal((30000, 2))).astype(np.float32)
        path = write_av(tmp_path / f"noise-{w}x{h}.mp4", frames, audio,
                        fps=Fraction(30000, 1001), sample_rate=44100, crf=18)
        specs += [f"{path}|{s}" for s in sizes]
    root = Path(__file__).resolve().parents[1]
    runs = []
    for seed, cores in [(0, "all"), (1, "one-core"), (4242, "all")]:
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run([sys.executable, "-c", _DIRTY_CHILD, cores, *specs], env=env,
                             cwd=root, check=True, capture_output=True, text=True).stdout
        runs.append(out.splitlines())
    probes = {run[0] for run in runs}
    assert len(probes) == len(runs), "the heaps were not dirtied differently"
    decoded = [run[1:] for run in runs]
    assert len(decoded[0]) == len(specs)
    assert decoded[1] == decoded[0] and decoded[2] == decoded[0]
