"""The audio helper process (avbench.media._audioproc): same clips, same errors, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")

from avbench.errors import BadMediaError
from avbench.media import _audioproc
from avbench.media import decode as dec


@pytest.fixture()
def two_cores(monkeypatch):
    """The helper is used where a process decodes on two cores or more."""
    monkeypatch.delenv("AVBENCH_AUDIO_PROCESS", raising=False)
    monkeypatch.setattr(_audioproc, "_STATE", {})
    dec.set_decoding_cores(2)
    yield
    dec.set_decoding_cores(None)
    helper = _audioproc._STATE.get("helper")
    if helper is not None:
        helper.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from avbench.bench.media import make_media, media_kinds

    return make_media(tmp_path_factory.mktemp("media"), media_kinds(64), clips=1, seconds=1.5)


def test_the_helper_gives_the_same_clips(media, two_cores, monkeypatch, count_calls):
    made = count_calls(_audioproc.AudioJob, "__init__")
    for paths in media.values():
        for size in (64, None):
            pipeline = dec.Pipeline(size=size)
            monkeypatch.setenv("AVBENCH_AUDIO_PROCESS", "0")
            plain = dec.decode(paths[0], pipeline)
            monkeypatch.setenv("AVBENCH_AUDIO_PROCESS", "1")
            before = len(made)
            helped = dec.decode(paths[0], pipeline)
            assert len(made) == before + 1  # the helper did this one's audio
            assert np.array_equal(plain.frames, helped.frames)
            assert np.array_equal(plain.audio, helped.audio)
            assert plain.facts() == helped.facts()
    assert not _audioproc._STATE.get("broken")


def test_no_helper_with_one_core_a_cap_or_when_turned_off(media, two_cores, monkeypatch,
                                                         count_calls):
    made = count_calls(_audioproc.AudioJob, "__init__")
    path = media["native"][0]
    dec.decode(path, dec.Pipeline(max_seconds=1.0))  # the cap needs the video's clock
    monkeypatch.setenv("AVBENCH_AUDIO_PROCESS", "0")
    dec.decode(path)
    monkeypatch.delenv("AVBENCH_AUDIO_PROCESS")
    dec.set_decoding_cores(1)
    dec.decode(path)
    assert made == []


def test_a_bad_file_is_reported_as_without_the_helper(tmp_path, media, two_cores, monkeypatch):
    data = media["rate"][0].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(data[:64] + bytes(len(data) - 64))
    for path in (cut, garbage):
        with pytest.raises(BadMediaError) as helped:
            dec.decode(path)
        monkeypatch.setenv("AVBENCH_AUDIO_PROCESS", "0")
        with pytest.raises(BadMediaError) as plain:
            dec.decode(path)
        monkeypatch.delenv("AVBENCH_AUDIO_PROCESS")
        assert (helped.value.kind, str(helped.value)) == (plain.value.kind, str(plain.value))


def test_a_helper_that_dies_is_not_used_again(media, two_cores, monkeypatch):
    path = media["rate"][0]
    monkeypatch.setenv("AVBENCH_AUDIO_PROCESS", "0")
    plain = dec.decode(path)
    monkeypatch.delenv("AVBENCH_AUDIO_PROCESS")
    dec.decode(path)
    helper = _audioproc._STATE["helper"]
    helper.proc.kill()
    helper.proc.wait()
    # the helper is gone: a new one starts, or the file is decoded here; the clip is the same
    again = dec.decode(path)
    assert np.array_equal(again.audio, plain.audio)
    assert np.array_equal(again.frames, plain.frames)
    # a helper that answers out of turn is given up on for the rest of the process
    helper = _audioproc._STATE["helper"]
    monkeypatch.setattr(helper, "receive", lambda timeout: (-1, None))
    assert np.array_equal(dec.decode(path).audio, plain.audio)  # decoded here instead
    assert _audioproc._STATE.get("broken")
    assert _audioproc.job(str(path), None, 16000) is None
    assert not helper.alive()


def test_the_helpers_cpu_time_is_counted(media, two_cores):
    from pathlib import Path

    assert _audioproc.helper_cpu_seconds() == 0.0  # no helper yet
    dec.decode(media["rate"][0])
    used = _audioproc.helper_cpu_seconds()
    if Path("/proc/self/task").exists():
        assert used > 0
        dec.decode(media["rate"][0])
        assert _audioproc.helper_cpu_seconds() > used
