"""The embedded synthetic benchmark: layout, metadata, determinism, faces, and the science.

The science check: the benchmark must not be separable by one statistic for every category.
An audio-only feature (MFCC statistics) cannot tell FakeVideo-RealAudio from real (their
audio is real), while a simple audio-visual sync feature (correlation of mouth-region motion
with changes of loudness) tells RealVideo-FakeAudio from real (its lips do not follow the
new audio).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from fractions import Fraction

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from avbench.datasets.fakeavceleb import FakeAVCelebAdapter
from avbench.datasets.kodf import KoDFAdapter
from avbench.datasets.resolve import MARKER
from avbench.datasets.synth import avceleb, kodf_set
from avbench.datasets.synth.people import GROUPS

CATEGORIES = ("real", "RVFA", "FVRA-WL", "FVRA-FS", "FVRA-GAN", "FVFA-WL", "FVFA-FS", "FVFA-GAN")
#: the categories the science check decodes (the FVFA ones would cost time and prove nothing
#: more: their audio and lips are both fake)
TESTED = CATEGORIES[:5]


@pytest.fixture(scope="module")
def index(synthetic_root):
    return FakeAVCelebAdapter().index(synthetic_root)


@pytest.mark.slow
def test_each_generated_set_is_marked_with_what_made_it(synthetic_root, synthetic_kodf_root):
    """The marker that makes a generated folder reusable names its generator, scale, seed and
    version (the folder's key), and is written only once every clip is there."""
    from avbench.datasets.resolve import generator_version
    from avbench.plugins import get_plugins

    for root, name in ((synthetic_root, "synthetic"), (synthetic_kodf_root, "synthetic-kodf")):
        marker = json.loads((root / MARKER).read_text())
        info = get_plugins().dataset(name)
        version = generator_version(info.load_generator())
        assert (marker["name"], marker["scale"], marker["seed"]) == (name, 1, 0)
        assert marker["version"] == version and marker["seconds"] > 0
        assert root.name == f"{name}-scale1-seed0-v{version}"
        assert not list(root.parent.glob(f".tmp-{root.name}-*"))  # no half-written copy
    # every clip the metadata lists is there, and no other
    rows = list(csv.reader(io.StringIO((synthetic_root / "meta_data.csv").read_text())))[1:]
    listed = {"/".join(r[9].split("/")[1:]) + "/" + r[8] for r in rows}
    on_disk = {p.relative_to(synthetic_root).as_posix() for p in synthetic_root.rglob("*.mp4")}
    assert listed == on_disk


# -- FakeAVCeleb's form ------------------------------------------------------------------


def test_metadata_in_the_official_form(synthetic_root):
    data = (synthetic_root / "meta_data.csv").read_bytes()
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    assert data.split(b"\r\n")[0] == b"source,target1,target2,method,category,type,race,gender,path,"
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))[1:]
    assert len(rows) > 250  # a few hundred clips
    files = Counter()
    for r in rows:
        assert len(r) == 10
        directory = r[9].split("/")
        assert directory[0] == "FakeAVCeleb"
        assert directory[1:] == [r[5], r[6], r[7], r[0]]  # type/race/gender/source
        assert (synthetic_root / "/".join(directory[1:]) / r[8]).is_file()
        files["/".join(directory[1:]) + "/" + r[8]] += 1
    # FakeAVCeleb's quirk: a FakeVideo-FakeAudio file listed twice, first as faceswap-wav2lip
    twice = [f for f, n in files.items() if n == 2]
    assert twice and all(n <= 2 for n in files.values())
    for f in twice:
        methods = [r[3] for r in rows if "/".join(r[9].split("/")[1:]) + "/" + r[8] == f]
        assert methods == ["faceswap-wav2lip", "wav2lip"]
    # and a stray .txt in a real folder
    assert list(synthetic_root.glob("RealVideo-RealAudio/*/*/*/*.txt"))


def test_read_by_the_fakeavceleb_adapter(index):
    assert Counter(r.category for r in index.records).keys() == set(CATEGORIES)
    # the only problem: the file listed twice
    assert index.problems and all("listed again" in p.reason for p in index.problems)
    assert {r.group for r in index.records} == set(GROUPS)
    per_identity = defaultdict(list)
    for r in index.records:
        per_identity[r.identity].append(r)
    for rs in per_identity.values():
        assert sum(r.category == "real" for r in rs) == 1  # one real video per identity
        assert len({r.category for r in rs}) >= 7  # and fakes of (nearly) every category
    for g in GROUPS:
        assert {r.gender for r in index.records if r.group == g} == {"men", "women"}


def test_identities_and_targets_stay_in_their_group(index):
    group_of = {}
    for r in index.records:
        assert group_of.setdefault(r.identity, r.group) == r.group
    n_targets = 0
    for r in index.records:
        for t in r.targets:
            if t.startswith("id"):
                n_targets += 1
                assert t != r.identity and group_of[t] == r.group, (r.id, t)
    assert n_targets > 200


def test_media_formats_are_mixed(synthetic_root, index):
    import av

    fps, audio = set(), set()
    for r in index.records:
        if r.category != "real":
            continue
        with av.open(str(synthetic_root / r.id)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
            assert (v.width, v.height) == (112, 112)
            fps.add(Fraction(v.average_rate).limit_denominator(1001))
            audio.add((a.sample_rate, a.channels))
            assert 1.9 <= float(c.duration / 1e6) <= 3.2
    assert fps == {Fraction(25), Fraction(30000, 1001), Fraction(30)}
    assert {rate for rate, _ in audio} == {16000, 44100, 48000}
    assert {ch for _, ch in audio} == {1, 2}


def test_deterministic(synthetic_root, tmp_path):
    people, clips = avceleb.plan(1, 0)
    assert avceleb.plan(1, 0) == (people, clips)
    assert avceleb.metadata_csv(people, clips) == (synthetic_root / "meta_data.csv").read_bytes()
    # one identity rendered again, in this process: the same bytes as the session's set (which
    # a pool of processes wrote)
    p = people[0]
    looks = {q.id: q.look for q in people}
    voices = {q.id: q.voice for q in people}
    written = avceleb.render_person(avceleb.Task(str(tmp_path), 0, p, tuple(clips[p.id]), looks,
                                                 voices))
    assert len(written) == len(clips[p.id])
    for rel in written:
        assert (tmp_path / rel).read_bytes() == (synthetic_root / rel).read_bytes(), rel
    # another seed, another dataset
    people1, clips1 = avceleb.plan(1, 1)
    assert avceleb.metadata_csv(people1, clips1) != avceleb.metadata_csv(people, clips)
    assert [q.look for q in people1] != [q.look for q in people]
    k_people, k_clips = kodf_set.plan(1, 0)
    assert kodf_set.plan(1, 0) == (k_people, k_clips)
    assert kodf_set.plan(1, 1) != (k_people, k_clips)


_RENDER_ONE = """
import hashlib, sys
from pathlib import Path
from avbench.datasets.synth import avceleb
people, clips = avceleb.plan(1, 0)
p = people[int(sys.argv[2])]
looks = {q.id: q.look for q in people}
voices = {q.id: q.voice for q in people}
for rel in avceleb.render_person(avceleb.Task(sys.argv[1], 0, p, tuple(clips[p.id]), looks, voices)):
    print(rel, hashlib.sha256((Path(sys.argv[1]) / rel).read_bytes()).hexdigest())
"""


@pytest.mark.slow
def test_rendering_is_byte_identical_across_processes(synthetic_root, tmp_path):
    """The same identity rendered in fresh processes with other PYTHONHASHSEEDs gives the same
    bytes as the session's set, which a pool of processes wrote (uninitialised row padding
    once reached the encoder and made 1 in 3 files differ between processes)."""
    import hashlib
    import os
    import subprocess
    import sys

    for hashseed, who in (("1", 0), ("2", 0), ("3", 7)):
        out = tmp_path / f"s{hashseed}"
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        lines = subprocess.run([sys.executable, "-c", _RENDER_ONE, str(out), str(who)], env=env,
                               capture_output=True, text=True, check=True).stdout.split("\n")
        got = dict(line.split() for line in lines if line)
        assert len(got) >= 7
        want = {rel: hashlib.sha256((synthetic_root / rel).read_bytes()).hexdigest()
                for rel in got}
        assert got == want, f"PYTHONHASHSEED={hashseed}"


def test_generator_arguments(tmp_path):
    from avbench.datasets.synthetic import generate_fakeavceleb, generate_kodf
    from avbench.errors import ConfigError, DataError

    (tmp_path / "x").write_text("already here")
    with pytest.raises(DataError, match="not an empty folder"):
        generate_fakeavceleb(tmp_path)
    with pytest.raises(ConfigError, match="scale"):
        generate_kodf(tmp_path / "new", scale=0)
    with pytest.raises(ConfigError, match="seed"):
        generate_fakeavceleb(tmp_path / "new", seed=-1)


def test_scale_grows_the_set():
    people, clips = avceleb.plan(2, 0)
    assert len(people) == 2 * 8 * len(GROUPS)
    assert len({p.id for p in people}) == len(people)
    assert sum(len(c) for c in clips.values()) > 600


# -- KoDF's shape ------------------------------------------------------------------------


@pytest.mark.slow
def test_kodf_shaped_set(synthetic_kodf_root):
    import av

    from avbench.media.face import MtcnnFaceDetector

    idx = KoDFAdapter().index(synthetic_kodf_root)
    assert idx.face_crop and idx.problems == []
    methods = Counter(r.method for r in idx.records)
    assert methods["real"] >= 10 and methods["audio-driven"] >= 10
    assert methods.keys() - {"real", "audio-driven"}  # at least one face-swap folder
    for r in idx.records:
        assert r.identity and r.gender in ("men", "women")  # from the Korean CSVs
        assert (r.label_a, r.label_v) == (0, r.label)
    detector = MtcnnFaceDetector()  # the one face cropping uses
    hits = total = 0
    centres = []
    for r in idx.records:
        with av.open(str(synthetic_kodf_root / r.id)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                assert (frame.width, frame.height) == (320, 180)  # full frames
                if i % 16:
                    continue
                faces = detector.detect(frame.to_ndarray(format="rgb24"))
                total += 1
                if faces:
                    hits += 1
                    x, _, w, _, _ = max(faces, key=lambda f: f[2] * f[3])
                    centres.append(x + w / 2)
    assert hits / total >= 0.9, f"MTCNN found the face on {hits} of {total} frames"
    assert max(centres) - min(centres) > 40  # the face is somewhere in the frame, not fixed


# -- the science -------------------------------------------------------------------------


def _mel_filters(sr=16000, n_fft=512, n_mels=40) -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = np.floor((n_fft + 1) * hz(np.linspace(mel(20), mel(sr / 2), n_mels + 2)) / sr)
    edges = edges.astype(int)
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        fb[i, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    return fb


MEL = _mel_filters()


def audio_features(audio: np.ndarray) -> np.ndarray:
    """MFCC statistics: mean and standard deviation over the clip of 13 MFCCs (DCT of 40
    log-mel bands, 32 ms windows every 10 ms)."""
    from scipy.fft import dct

    frames = np.lib.stride_tricks.sliding_window_view(audio, 512)[::160] * np.hanning(512)
    logmel = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ MEL.T + 1e-8)
    mfcc = dct(logmel, type=2, norm="ortho", axis=1)[:, :13]
    return np.concatenate([mfcc.mean(0), mfcc.std(0)])


def sync_feature(frames: np.ndarray, audio: np.ndarray, spf: int) -> float:
    """Correlation of mouth-region motion energy with the change of loudness, frame by frame
    (frames (N, 3, H, W) at 25 fps, audio with ``spf`` samples per frame), both smoothed over
    three frames (a 30 fps source resampled to 25 fps repeats frames)."""
    _, _, h, w = frames.shape
    mouth = frames[:, :, int(0.62 * h): int(0.9 * h), int(0.3 * w): int(0.7 * w)]
    grey = mouth.astype(np.float32).mean(1)
    motion = np.abs(np.diff(grey, axis=0)).mean((1, 2))
    n = len(frames)
    loud = np.sqrt((audio[: n * spf].reshape(n, spf) ** 2).mean(1) + 1e-12)
    box = np.ones(3) / 3
    return float(np.corrcoef(np.convolve(motion, box, "same"),
                             np.convolve(np.abs(np.diff(loud)), box, "same"))[0, 1])


def test_no_single_statistic_separates_every_category(synthetic_root, index, capsys):
    from avbench.media.decode import Pipeline, decode

    feats: dict[str, list] = defaultdict(list)
    for r in index.records:
        if r.category not in TESTED:
            continue
        clip = decode(synthetic_root / r.id, Pipeline(size=None))
        feats[r.category].append((r.identity, audio_features(clip.audio),
                                  sync_feature(clip.frames, clip.audio, clip.samples_per_frame)))
    real = feats["real"]
    report = [f"{'category':9s}  audio AUC: per feature (min..max), LR (identity-grouped CV)"
              f"  |  sync AUC"]
    results = {}
    for cat in TESTED[1:]:
        fake = feats[cat]
        y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
        a = np.stack([f[1] for f in real + fake])
        per_feature = [roc_auc_score(y, a[:, j]) for j in range(a.shape[1])]
        groups = [f[0] for f in real + fake]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        proba = cross_val_predict(model, a, y, groups=groups, cv=GroupKFold(5),
                                  method="predict_proba")[:, 1]
        lr = roc_auc_score(y, proba)
        sync = roc_auc_score(y, [-f[2] for f in real + fake])  # less correlation = more fake
        results[cat] = (min(per_feature), max(per_feature), lr, sync)
        report.append(f"{cat:9s}  {min(per_feature):.2f}..{max(per_feature):.2f}, LR {lr:.2f}"
                      f"  |  {sync:.2f}")
    with capsys.disabled():
        print("\n" + "\n".join(report))
    for cat in ("FVRA-WL", "FVRA-FS", "FVRA-GAN"):  # real audio: audio alone cannot tell
        lo, hi, lr, _ = results[cat]
        assert lo >= 0.3 and hi <= 0.7, (cat, lo, hi)
        assert 0.3 <= lr <= 0.7, (cat, lr)
    assert results["RVFA"][3] >= 0.8  # the lips do not follow the cloned voice
    assert results["RVFA"][2] >= 0.9  # and the vocoder leaves traces an audio model sees


def test_rvfa_keeps_the_real_frames(synthetic_root, index):
    """A visual-only detector cannot detect RVFA: its frames are the real clip's frames."""
    import av

    by_identity = defaultdict(dict)
    for r in index.records:
        by_identity[r.identity][r.category] = r.id

    def luma(rel):
        with av.open(str(synthetic_root / rel)) as c:
            return np.stack([f.to_ndarray()[: f.height] for f in c.decode(video=0)])

    for ids in list(by_identity.values())[:5]:
        assert np.array_equal(luma(ids["real"]), luma(ids["RVFA"]))
