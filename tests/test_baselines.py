"""The built-in baselines ``sync-corr`` and ``mfcc-logreg`` on hand-made numpy data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from avbench.baselines.mfcc_logreg import MfccLogRegConfig, MfccLogRegDetector
from avbench.baselines.sync_corr import (
    NEUTRAL_SCORE,
    SyncCorrConfig,
    SyncCorrDetector,
    best_lag_correlation,
    correlation_to_score,
    mouth_box,
)
from avbench.config import apply_overrides
from avbench.detector import InputSpec, RunContext, SegmentBatch, check_scores
from avbench.errors import ConfigError
from avbench.records import VideoRecord

SPF = 640  # audio samples per frame (16 kHz / 25 fps)
CTX = RunContext(seed=0, quiet=True)


# -- hand-made signals ------------------------------------------------------------------------

def speech_envelope(frames: int, rng: np.random.Generator) -> np.ndarray:
    """A syllable-like amplitude envelope per frame: raised-cosine bumps with pauses."""
    env = np.full(frames, 0.002)
    t = int(rng.integers(0, 3))
    while t < frames:
        n = int(rng.integers(3, 8))
        bump = np.sin(np.linspace(0, np.pi, n + 2)[1:-1]) * rng.uniform(0.2, 0.6)
        env[t:t + n] = np.maximum(env[t:t + n], bump[: frames - t])
        t += n + int(rng.integers(1, 6))
    return env


def audio_from_envelope(env: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise shaped by a per-frame amplitude envelope, (frames * 640,) float32."""
    carrier = rng.standard_normal(len(env) * SPF)
    return (carrier * np.repeat(env, SPF)).clip(-1, 1).astype(np.float32)


def video_with_motion(motion: np.ndarray, size: int, cfg: SyncCorrConfig,
                      rng: np.random.Generator) -> np.ndarray:
    """(T, 3, size, size) uint8 frames whose mouth region changes by ``motion[t-1]`` grey
    levels from frame t-1 to t (everywhere in the region); the rest of the face is still but
    for a little sensor noise."""
    frames = len(motion) + 1
    face = np.full((frames, 3, size, size), 150.0)
    face += rng.normal(0, 0.3, size=face.shape)
    r0, r1, c0, c1 = mouth_box(size, size, cfg)
    level = np.zeros(frames)
    sign = 1.0
    for t in range(1, frames):
        # alternate the direction so the level stays bounded; |change| = motion[t-1]
        sign = -sign if abs(level[t - 1] + sign * motion[t - 1]) > 40 else sign
        level[t] = level[t - 1] + sign * motion[t - 1]
    face[:, :, r0:r1, c0:c1] = 100.0 + level[:, None, None, None]
    return face.round().clip(0, 255).astype(np.uint8)


def video_with_mouth_opening(opening: np.ndarray, size: int, cfg: SyncCorrConfig) -> np.ndarray:
    """(T, 3, size, size) uint8 frames with a dark mouth whose height follows ``opening``
    (0..1), a realistic model for ``target="change"``."""
    frames = len(opening)
    out = np.full((frames, 3, size, size), 170, dtype=np.uint8)
    r0, r1, c0, c1 = mouth_box(size, size, cfg)
    mid = (r0 + r1) / 2
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    half_w = (c1 - c0) / 2.5
    cx = (c0 + c1) / 2
    for t in range(frames):
        half_h = 1.0 + opening[t] * (r1 - r0) / 2.5
        inside = ((rows - mid) / half_h) ** 2 + ((cols - cx) / half_w) ** 2 <= 1
        out[t, :, inside] = 40
    return out


def batch_of(video: list[np.ndarray] | None, audio: list[np.ndarray] | None,
             labels: np.ndarray | None = None) -> SegmentBatch:
    n = len(video if video is not None else audio)
    lab = np.zeros(n, dtype=np.int64) if labels is None else labels
    return SegmentBatch(
        video_index=np.arange(n), ids=[f"v{i}.mp4" for i in range(n)],
        start=np.zeros(n, dtype=np.int64), label=lab, label_v=lab, label_a=lab,
        video=None if video is None else np.stack(video),
        audio=None if audio is None else np.stack(audio),
    )


def shift(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` delayed by ``lag`` frames (edge values repeated)."""
    if lag == 0:
        return x.copy()
    return np.concatenate([np.full(lag, x[0]), x[:-lag]]) if lag > 0 else \
        np.concatenate([x[-lag:], np.full(-lag, x[-1])])


# -- sync-corr --------------------------------------------------------------------------------

def sync_cases(kind: str, n: int, seed: int, lag: int = 0, target: str = "change") -> SegmentBatch:
    """Segments whose mouth follows the loudness (``sync``, the video delayed by ``lag``
    frames), another speech envelope (``unrelated``) or moves in the pauses only (``anti``).

    For ``target="change"`` (the default) a drawn mouth opens with the loudness, so its motion
    follows the change of the loudness; for ``target="level"`` the motion energy itself
    follows the loudness.
    """
    cfg = SyncCorrConfig(target=target)
    rng = np.random.default_rng(seed)
    vids, auds = [], []
    for _ in range(n):
        env = speech_envelope(cfg.frames, rng)
        if kind == "anti":
            # continuous loud sound in one half, a pause in the other, and the mouth moves in
            # the pause only: anti-correlated at every lag up to 5 frames (max - env would be
            # anti-correlated at lag 0 only, the best lag would find a positive match)
            half = cfg.frames // 2
            loud = np.zeros(cfg.frames, dtype=bool)
            loud[:half] = True
            if rng.random() < 0.5:
                loud = ~loud
            env = np.where(loud, rng.uniform(0.2, 0.4, cfg.frames), 0.002)
            motion = np.where(loud, 1.0, rng.uniform(10.0, 14.0, cfg.frames))[1:]
            vids.append(video_with_motion(motion, 48, cfg, rng))
        else:
            drive = shift(env, lag) if kind == "sync" else speech_envelope(cfg.frames, rng)
            if target == "change":
                vids.append(video_with_mouth_opening(drive / drive.max(), 48, cfg))
            else:
                motion = 1.0 + 12.0 * drive[1:] / drive.max()
                vids.append(video_with_motion(motion, 48, cfg, rng))
        auds.append(audio_from_envelope(env, rng))
    return batch_of(vids, auds)


def test_sync_corr_spec_and_config():
    det = SyncCorrDetector()
    assert det.trainable is False
    spec = det.input_spec()
    assert spec.frames == 48 and spec.modalities == ("video", "audio")
    cfg = apply_overrides(SyncCorrConfig(), {"frames": "32", "mouth_top": "0.5"})
    assert SyncCorrDetector(cfg).input_spec().frames == 32
    with pytest.raises(ConfigError):
        apply_overrides(SyncCorrConfig(), {"frames": "10"})  # too short for +-5 lags
    with pytest.raises(ConfigError):
        apply_overrides(SyncCorrConfig(), {"mouth_top": "0.9", "mouth_bottom": "0.5"})
    with pytest.raises(ConfigError):
        apply_overrides(SyncCorrConfig(), {"target": "phase"})
    info = det.describe()
    assert "synchrony" in info["cue"] and info["outputs"] == ["score"]
    assert det.state_dict() == {"r_neutral": 0.0}  # until fit calibrates it on val
    off = SyncCorrDetector(SyncCorrConfig(calibrate="off"))
    assert off.fit(None, None, CTX).checkpoint == "none"  # training-free


@pytest.mark.parametrize("target", ["change", "level"])
@pytest.mark.parametrize("lag", [0, 3, -3])
def test_sync_corr_low_when_mouth_follows_loudness(lag, target):
    det = SyncCorrDetector(SyncCorrConfig(target=target))
    batch = sync_cases("sync", 6, seed=1, lag=lag, target=target)
    out = det.predict(batch, CTX)
    check_scores(out, len(batch), "sync-corr")
    assert set(out) == {"score"}
    assert out["score"].max() < 0.2, out["score"]
    r, found = det.correlation(batch)
    assert np.all(r > 0.6)
    # the video is delayed by ``lag`` frames: motion at t pairs with the audio at t - lag
    assert np.all(np.abs(found + lag) <= 1), found


@pytest.mark.parametrize("target", ["change", "level"])
def test_sync_corr_high_when_unrelated_or_anti_correlated(target):
    det = SyncCorrDetector(SyncCorrConfig(target=target))
    sync = det.predict(sync_cases("sync", 8, seed=2, target=target), CTX)["score"]
    unrelated = det.predict(sync_cases("unrelated", 8, seed=3, target=target), CTX)["score"]
    anti = det.predict(sync_cases("anti", 8, seed=4, target=target), CTX)["score"]
    for s in (unrelated, anti):
        check_scores({"score": s}, 8, "sync-corr")
    # the best of 11 lags finds some agreement even between unrelated envelopes, so their
    # scores sit below 0.5, but far above the synchronous ones
    assert unrelated.min() > sync.max()
    assert np.median(unrelated) > 0.2 > 0.1 > sync.max()
    assert anti.min() > 0.5
    y = np.r_[np.zeros(8), np.ones(16)]
    assert roc_auc_score(y, np.r_[sync, unrelated, anti]) == 1.0


@pytest.mark.parametrize("envelope", ["linear", "db"])
def test_sync_corr_constant_inputs_give_neutral_score(envelope):
    det = SyncCorrDetector(SyncCorrConfig(envelope=envelope))
    rng = np.random.default_rng(5)
    cfg = det.config
    still = np.full((cfg.frames, 3, 48, 48), 120, dtype=np.uint8)
    moving = sync_cases("sync", 1, seed=6).video[0]
    speech = audio_from_envelope(speech_envelope(cfg.frames, rng), rng)
    silence = np.zeros(cfg.frames * SPF, dtype=np.float32)
    tone = np.tile(np.sin(np.arange(SPF) * 2 * np.pi / 40), cfg.frames).astype(np.float32)
    cases = [(still, speech), (moving, silence), (still, silence), (moving, 0.5 * tone)]
    batch = batch_of([v for v, _ in cases], [a for _, a in cases])
    out = det.predict(batch, CTX)
    check_scores(out, len(cases), "sync-corr")
    assert np.all(out["score"] == NEUTRAL_SCORE)
    r, lag = det.correlation(batch)
    assert np.all(np.isnan(r)) and np.all(lag == 0)


def test_correlation_to_score_map():
    r = np.array([1.0, 0.5, 0.0, -1.0, np.nan])
    np.testing.assert_allclose(correlation_to_score(r), [0.0, 0.25, 0.5, 1.0, NEUTRAL_SCORE])
    s = correlation_to_score(r, r_neutral=0.5)
    np.testing.assert_allclose(s, [0.0, 0.5, 2 / 3, 1.0, NEUTRAL_SCORE])
    grid = np.linspace(-1, 1, 41)
    for r0 in (-0.3, 0.0, 0.4):
        assert np.all(np.diff(correlation_to_score(grid, r0)) < 0)  # strictly decreasing


def test_best_lag_correlation_properties():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 47))
    r, lag = best_lag_correlation(x, x, 5)
    assert np.allclose(r, 1.0) and np.all(lag == 0)
    y = np.stack([shift(row, 4) for row in x])  # y[t] = x[t - 4]: y lags x by 4
    r, lag = best_lag_correlation(x, y, 5)
    assert np.all(r > 0.9) and np.all(lag == 4)
    r, _ = best_lag_correlation(x, -x, 0)
    assert np.allclose(r, -1.0)
    r, lag = best_lag_correlation(np.ones((2, 47)), x[:2], 5)
    assert np.all(np.isnan(r)) and np.all(lag == 0)


def test_sync_corr_mouth_region_is_what_counts():
    """Motion outside the configured mouth box does not change the score."""
    batch = sync_cases("sync", 3, seed=9)
    det = SyncCorrDetector()
    before = det.predict(batch, CTX)["score"]
    r0, _, _, _ = mouth_box(48, 48, det.config)
    rng = np.random.default_rng(10)
    noisy = batch.video.copy()
    noisy[:, :, :, : r0 - 1] = rng.integers(0, 256, noisy[:, :, :, : r0 - 1].shape, dtype=np.uint8)
    batch.video = noisy
    np.testing.assert_array_equal(det.predict(batch, CTX)["score"], before)
    # a box over the (now noisy) upper face no longer sees a synchronous mouth
    up = SyncCorrDetector(SyncCorrConfig(mouth_top=0.0, mouth_bottom=0.4))
    assert np.all(up.predict(batch, CTX)["score"] > before)


# -- mfcc-logreg ------------------------------------------------------------------------------

class ArraySet:
    """A tiny VideoSetLike over numpy audio (and optional video) arrays, one row per video.

    Every video has the same length (a whole number of segments). It counts what is read, so
    tests can check which splits a detector touched.
    """

    def __init__(self, records: list[VideoRecord], spec: InputSpec, audio: np.ndarray,
                 video: np.ndarray | None = None):
        self.records = records
        self.spec = spec
        self.audio = audio
        self.video = video
        self.reads = 0
        n_samples = audio.shape[1]
        assert n_samples % spec.samples == 0
        self.n_segments = n_samples // spec.samples

    def __len__(self) -> int:
        return len(self.records)

    def _batch(self, pairs: list[tuple[int, int]]) -> SegmentBatch:
        self.reads += len(pairs)
        idx = np.array([v for v, _ in pairs], dtype=np.int64)
        seg = np.array([s for _, s in pairs], dtype=np.int64)
        S, T = self.spec.samples, self.spec.frames
        audio = np.stack([self.audio[v, s * S:(s + 1) * S] for v, s in pairs]) \
            if self.spec.reads_audio else None
        video = np.stack([self.video[v, s * T:(s + 1) * T] for v, s in pairs]) \
            if self.spec.reads_video and self.video is not None else None
        recs = [self.records[i] for i in idx]
        return SegmentBatch(
            video_index=idx, ids=[r.id for r in recs], start=seg * T,
            label=np.array([r.label for r in recs]), label_v=np.array([r.label_v for r in recs]),
            label_a=np.array([r.label_a for r in recs]), video=video, audio=audio,
        )

    def iter_batches(self, batch_size: int) -> Iterator[SegmentBatch]:
        pairs = [(v, s) for v in range(len(self)) for s in range(self.n_segments)]
        for lo in range(0, len(pairs), batch_size):
            yield self._batch(pairs[lo:lo + batch_size])

    def random_segments(self, indices: Any, rng: np.random.Generator) -> SegmentBatch:
        idx = np.asarray(indices, dtype=np.int64)
        return self._batch([(int(v), int(rng.integers(self.n_segments))) for v in idx])


def tilted_noise(n: int, tilt: float, rng: np.random.Generator) -> np.ndarray:
    """AR(1) noise: tilt > 0 tilts the spectrum down (more low frequencies), < 0 up."""
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -tilt], rng.standard_normal(n))
    return (0.1 * x / x.std()).astype(np.float32)


def audio_split(n_real: int, n_fake: int, seed: int, spec: InputSpec,
                segments: int = 3) -> ArraySet:
    """Real audio has a falling spectrum, fake audio (label_a = 1) a flatter one."""
    rng = np.random.default_rng(seed)
    records, audio = [], []
    for i in range(n_real + n_fake):
        fake = i >= n_real
        tilt = rng.uniform(0.0, 0.5) if fake else rng.uniform(0.6, 0.95)
        gain = rng.uniform(0.3, 1.0)
        audio.append(gain * tilted_noise(segments * spec.samples, tilt, rng))
        records.append(VideoRecord(id=f"s{seed}/{'fake' if fake else 'real'}/{i}.mp4",
                                   dataset="toy", label=int(fake), label_v=0,
                                   label_a=int(fake)))
    return ArraySet(records, spec, np.stack(audio))


def test_mfcc_logreg_spec_and_config():
    det = MfccLogRegDetector()
    assert det.trainable is True
    assert det.input_spec().modalities == ("audio",)
    assert det.input_spec().frames == 16
    cfg = apply_overrides(MfccLogRegConfig(), {"c_grid": "0.1,1", "train_segments": "2"})
    assert cfg.c_grid == (0.1, 1.0) and cfg.train_segments == 2
    with pytest.raises(ConfigError):
        apply_overrides(MfccLogRegConfig(), {"c_grid": "0,1"})
    with pytest.raises(RuntimeError):
        det.predict(batch_of(None, [np.zeros(10240, dtype=np.float32)]), CTX)


@pytest.mark.parametrize("train_segments", [0, 2])
def test_mfcc_logreg_learns_spectral_tilt_and_round_trips(train_segments):
    det = MfccLogRegDetector(MfccLogRegConfig(train_segments=train_segments,
                                              c_grid=(0.01, 1.0)))
    spec = det.input_spec()
    train = audio_split(20, 20, seed=10, spec=spec)
    val = audio_split(8, 8, seed=11, spec=spec)
    info = det.fit(train, val, CTX)
    assert info.checkpoint == "best-val"
    assert "C=" in info.selection
    assert info.val_metrics["auc"] > 0.9 and info.val_metrics["auc_a"] > 0.9
    assert set(info.notes["grid"]) == {"score", "score_a"}
    expected_train = 40 * (3 if train_segments == 0 else train_segments)
    assert info.notes["train_segments"] == expected_train

    # a test split built only now: fit never saw it
    test = audio_split(10, 10, seed=12, spec=spec)
    idx, scores = det.evaluate(test, CTX)
    assert set(scores) == {"score", "score_a"}
    y = np.array([r.label for r in test.records])
    video_score = np.bincount(idx, weights=scores["score"]) / np.bincount(idx)
    assert roc_auc_score(y, video_score) > 0.9

    state = det.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["score_C"][0] in (0.01, 1.0)
    again = MfccLogRegDetector(MfccLogRegConfig(train_segments=train_segments))
    again.load_state_dict({k: v.copy() for k, v in state.items()})
    batch = next(test.iter_batches(64))
    a, b = det.predict(batch, CTX), again.predict(batch, CTX)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    check_scores(b, len(batch), "mfcc-logreg")


def test_mfcc_logreg_fit_reads_train_and_val_only():
    det = MfccLogRegDetector(MfccLogRegConfig(c_grid=(1.0,)))
    spec = det.input_spec()
    train, val = audio_split(6, 6, 20, spec), audio_split(3, 3, 21, spec)
    test = audio_split(3, 3, 22, spec)
    det.fit(train, val, CTX)
    assert train.reads == 36 and val.reads == 18 and test.reads == 0


def test_mfcc_logreg_single_class_labels():
    det = MfccLogRegDetector(MfccLogRegConfig(c_grid=(0.1, 1.0), c_default=0.5))
    spec = det.input_spec()
    train = audio_split(6, 6, 30, spec)
    # every fake of this split has real audio: label_a is one class, score_a cannot be trained
    train.records = [VideoRecord(id=r.id, dataset="toy", label=r.label, label_v=r.label,
                                 label_a=0) for r in train.records]
    val = audio_split(4, 0, 31, spec)  # reals only: C cannot be chosen on it
    info = det.fit(train, val, CTX)
    assert info.checkpoint == "last"
    assert "score_a_skipped" in info.notes
    assert det.state_dict()["score_C"][0] == 0.5
    out = det.predict(next(val.iter_batches(8)), CTX)
    assert set(out) == {"score"}
    bad = MfccLogRegDetector(MfccLogRegConfig(n_mfcc=13))
    with pytest.raises(ValueError, match="shape"):
        bad.load_state_dict(det.state_dict())


# -- on the embedded synthetic benchmark, decoded through the media layer ---------------------

TRAIN_GROUPS = {"Asian (South)", "Asian (East)", "Caucasian (American)"}
VAL_GROUP, TEST_GROUP = "African", "Caucasian (European)"
SIZE = 112  # the synthetic clips' own size: prepared once, read by both detectors


@pytest.fixture(scope="module")
def synthetic_media(synthetic_root, tmp_path_factory):
    """The synthetic benchmark's real, RVFA, FVRA-WL and FVFA-WL videos prepared at 112 px."""
    from avbench.datasets.fakeavceleb import FakeAVCelebAdapter
    from avbench.media.cache import PreparedCache, prepare
    from avbench.media.decode import Pipeline

    index = FakeAVCelebAdapter().index(synthetic_root)
    records = [r for r in index.records if r.category in ("real", "RVFA", "FVRA-WL", "FVFA-WL")]
    cache = PreparedCache(tmp_path_factory.mktemp("baselines-media"))
    result = prepare([(r.id, synthetic_root / r.id) for r in records], Pipeline(size=SIZE),
                     cache, workers=0, progress=False)
    assert not result.problems, result.problems[:3]
    return records, result.entries, cache


def video_set(media, spec: InputSpec, keep):
    import dataclasses

    from avbench.media.videoset import VideoSet

    records, entries, cache = media
    return VideoSet([r for r in records if keep(r)], entries, cache,
                    dataclasses.replace(spec, size=SIZE))


def video_scores(det, data, key: str = "score") -> np.ndarray:
    index, scores = det.evaluate(data, CTX)
    return np.bincount(index, weights=scores[key], minlength=len(data)) / np.bincount(
        index, minlength=len(data))


def auc_vs_real(data, scores: np.ndarray, category: str) -> float:
    cats = np.array([r.category for r in data.records])
    keep = (cats == "real") | (cats == category)
    return float(roc_auc_score(cats[keep] == category, scores[keep]))


@pytest.mark.slow
def test_sync_corr_separates_rvfa_on_the_synthetic_benchmark(synthetic_media):
    det = SyncCorrDetector(SyncCorrConfig(size=SIZE))
    data = video_set(synthetic_media, det.input_spec(), lambda r: r.category in ("real", "RVFA"))
    assert len(data) >= 60
    scores = video_scores(det, data)
    assert auc_vs_real(data, scores, "RVFA") > 0.8  # 0.93 at scale 1, seed 0


@pytest.mark.slow
def test_sync_corr_threshold_calibrated_on_val_makes_acc_meaningful(synthetic_media):
    keep = ("real", "RVFA")
    raw = SyncCorrDetector(SyncCorrConfig(size=SIZE, calibrate="off"))
    det = SyncCorrDetector(SyncCorrConfig(size=SIZE))
    spec = det.input_spec()
    val = video_set(synthetic_media, spec, lambda r: r.group != TEST_GROUP and r.category in keep)
    test = video_set(synthetic_media, spec, lambda r: r.group == TEST_GROUP and r.category in keep)
    assert raw.fit(val, val, CTX).notes == {"r_neutral": 0.0, "calibrated": False}
    info = det.fit(val, val, CTX)
    assert info.notes["calibrated"] and 0.05 < info.notes["r_neutral"] < 0.9
    y = np.array([r.label for r in test.records])

    def acc(d):
        return float(np.mean((video_scores(d, test) >= 0.5) == y))

    assert acc(det) > max(acc(raw), 0.7)
    # the ranking, and so AUC, is the threshold's business no more
    assert roc_auc_score(y, video_scores(det, test)) == pytest.approx(
        roc_auc_score(y, video_scores(raw, test)), abs=1e-9)
    # the state carries the threshold
    again = SyncCorrDetector(SyncCorrConfig(size=SIZE))
    again.load_state_dict(det.state_dict())
    assert np.array_equal(video_scores(again, test), video_scores(det, test))


def test_calibrate_neutral_finds_the_threshold_between_the_classes():
    from avbench.baselines.sync_corr import calibrate_neutral, correlation_to_score

    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    video = np.repeat(np.arange(40), 3)  # three segments per video
    r = np.where(labels[video] == 0, 0.6, 0.2) + rng.normal(0, 0.03, 120)
    rn = calibrate_neutral(r, video, labels)
    assert 0.3 < rn < 0.5
    score = np.bincount(video, weights=correlation_to_score(r, rn)) / 3
    assert np.array_equal(score >= 0.5, labels == 1)
    with pytest.raises(ValueError, match="r_neutral only"):
        SyncCorrDetector().load_state_dict({"w": 1})


@pytest.mark.slow
def test_mfcc_logreg_separates_fake_audio_not_fvra_on_the_synthetic_benchmark(synthetic_media):
    det = MfccLogRegDetector()
    spec = det.input_spec()
    train = video_set(synthetic_media, spec, lambda r: r.group in TRAIN_GROUPS)
    val = video_set(synthetic_media, spec, lambda r: r.group == VAL_GROUP)
    info = det.fit(train, val, CTX)
    assert info.checkpoint == "best-val"
    test = video_set(synthetic_media, spec, lambda r: r.group == TEST_GROUP)
    assert not {r.id for r in test.records} & {r.id for r in train.records + val.records}
    for key in ("score", "score_a"):
        scores = video_scores(det, test, key)
        # the cloned (vocoder) voice is what the MFCCs see ...
        assert auc_vs_real(test, scores, "RVFA") > 0.9
        assert auc_vs_real(test, scores, "FVFA-WL") > 0.9
        # ... and a lip-synced video over a real voice is invisible to an audio-only model
        assert auc_vs_real(test, scores, "FVRA-WL") < 0.8
