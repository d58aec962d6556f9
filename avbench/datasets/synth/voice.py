"""Speech-like audio for the synthetic benchmark, and the mouth opening that goes with it.

A real voice is a glottal pulse train at the speaker's pitch (with jitter, intonation and
breath noise) shaped by formant resonators, one vowel per syllable, under a syllable envelope;
some syllables start with a noise burst (a consonant). The mouth opening of a real clip is a
smoothed version of the same syllable envelope, weighted by how open each vowel is, so audio
and video are in sync.

The cloned voice (``vocoder=True``, standing in for SV2TTS/rtvc) differs the way neural
vocoder output does: a buzzier excitation with frame-wise pitch steps and phase resets,
no breath, band-limiting, frame-periodic gain steps and mu-law quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from avbench.datasets.synth.people import Voice

SR = 16000
#: (F1, F2, F3, F4) in Hz for an adult male voice, and how open / wide the mouth is
VOWELS = (
    ((730, 1090, 2440, 3400), 1.00, 1.00),  # a
    ((530, 1840, 2480, 3500), 0.70, 1.10),  # e
    ((300, 2250, 3000, 3700), 0.45, 1.15),  # i
    ((570, 840, 2410, 3300), 0.80, 0.85),  # o
    ((320, 870, 2240, 3300), 0.50, 0.80),  # u
)
_BANDWIDTHS = (80.0, 100.0, 140.0, 200.0)
_VOCODER_HOP = 200  # 12.5 ms frames, as in the vocoders of SV2TTS


@dataclass(frozen=True)
class Syllable:
    start: float
    dur: float
    vowel: int
    amp: float
    consonant: int  # 0 none, 1 fricative, 2 stop burst


def plan_syllables(rng: np.random.Generator, duration: float, voice: Voice) -> list[Syllable]:
    """Syllables at a speech-like rate (about 4 per second) with short gaps and pauses."""
    out: list[Syllable] = []
    t = float(rng.uniform(0.05, 0.3))
    bias = np.asarray(voice.vowel_bias)
    while True:
        dur = float(rng.uniform(0.12, 0.30))
        if t + dur > duration - 0.05:
            break
        out.append(Syllable(t, dur, int(rng.choice(5, p=bias)), float(rng.uniform(0.55, 1.0)),
                            int(rng.choice(3, p=(0.45, 0.35, 0.2)))))
        gap = rng.uniform(0.25, 0.55) if rng.uniform() < 0.15 else rng.uniform(0.02, 0.10)
        t += dur + float(gap)
    return out


def _syllable_env(n: int, syl: Syllable, sr: int) -> tuple[int, np.ndarray]:
    s = int(syl.start * sr)
    m = max(8, int(syl.dur * sr))
    att = max(2, int(min(0.04, syl.dur * 0.3) * sr))
    rel = max(2, int(min(0.06, syl.dur * 0.4) * sr))
    env = np.ones(m, np.float32)
    env[:att] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, att))
    env[m - rel:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, rel))
    env *= syl.amp
    m = min(m, n - s)
    return s, env[:max(0, m)]


def envelope(plan: list[Syllable], n: int, sr: int = SR, *, weight_open: bool = False) -> np.ndarray:
    """The syllable envelope per sample (optionally weighted by each vowel's mouth opening)."""
    env = np.zeros(n, np.float32)
    for syl in plan:
        s, e = _syllable_env(n, syl, sr)
        w = VOWELS[syl.vowel][1] if weight_open else 1.0
        env[s:s + len(e)] = np.maximum(env[s:s + len(e)], e * w)
    return env


def _resonators(formants, bandwidths, sr: int) -> np.ndarray:
    sos = []
    for f, bw in zip(formants, bandwidths, strict=True):
        f = min(f, 0.45 * sr)
        r = np.exp(-np.pi * bw / sr)
        b1 = 2 * r * np.cos(2 * np.pi * f / sr)
        b2 = -r * r
        a0 = 1 - b1 - b2
        sos.append([a0, 0, 0, 1, -b1, -b2])
    return np.asarray(sos)


def speech(rng: np.random.Generator, plan: list[Syllable], voice: Voice, duration: float, *,
           vocoder: bool = False, sr: int = SR) -> np.ndarray:
    """Synthesise ``duration`` seconds of speech-like audio (float32 mono, peak ~0.5)."""
    n = round(duration * sr)
    t = np.arange(n, dtype=np.float64) / sr
    f0 = voice.f0 * (1 + 0.07 * np.sin(2 * np.pi * rng.uniform(0.25, 0.6) * t + rng.uniform(0, 6.3))
                     + 0.03 * np.sin(2 * np.pi * rng.uniform(1.0, 2.0) * t + rng.uniform(0, 6.3)))
    if vocoder:
        # pitch held per vocoder frame (steps), no jitter; phase reset at every frame
        hops = np.arange(n) // _VOCODER_HOP
        f0 = f0[np.minimum(hops * _VOCODER_HOP, n - 1)]
        phase = np.cumsum(f0 / sr)
        offsets = rng.uniform(0, 0.25, hops[-1] + 1 if n else 1)
        phase = phase + offsets[hops]
        oq = 0.32
    else:
        jitter = 1 + 0.012 * signal.lfilter([0.05], [1, -0.95], rng.standard_normal(n))
        phase = np.cumsum(f0 * jitter / sr)
        oq = voice.open_quotient
    p = phase % 1.0
    glottal = np.where(p < oq, 0.5 - 0.5 * np.cos(2 * np.pi * p / oq), 0.0)
    src = np.diff(glottal, prepend=0.0)
    src *= 1.0 / (np.abs(src).max() + 1e-9)
    if not vocoder:
        src = src + voice.breath * rng.standard_normal(n) * 2
    out = np.zeros(n, np.float64)
    scale = voice.formant_scale
    for syl in plan:
        s, env = _syllable_env(n, syl, sr)
        if len(env) == 0:
            continue
        formants = (np.asarray(VOWELS[syl.vowel][0], float) * scale
                    * np.asarray(voice.formant_shift) * rng.uniform(0.96, 1.04, 4))
        bws = np.asarray(_BANDWIDTHS) * (1.0 + (0.4 if vocoder else 0.0))
        tail = int(0.03 * sr)
        seg = np.zeros(len(env) + tail)
        seg[: len(env)] = src[s: s + len(env)] * env
        y = signal.sosfilt(_resonators(formants, bws, sr), seg)
        e = min(n, s + len(seg))
        out[s:e] += y[: e - s]
        if syl.consonant:
            k = int(rng.uniform(0.02, 0.06) * sr)
            k = min(k, n - s)
            if k > 8:
                burst = rng.standard_normal(k)
                lo, hi = ((3500, 7000) if syl.consonant == 1 else (800, 5000))
                bb = signal.butter(2, [lo / (sr / 2), min(hi / (sr / 2), 0.99)], "band",
                                   output="sos")
                burst = signal.sosfilt(bb, burst) * np.hanning(k)
                out[s: s + k] += 0.25 * syl.amp * burst
    # spectral tilt per speaker
    if voice.brightness:
        pre = signal.lfilter([1, -0.6 * voice.brightness], [1], out)
        out = pre
    if vocoder:
        sos = signal.butter(8, rng.uniform(3400, 4500) / (sr / 2), output="sos")
        out = signal.sosfilt(sos, out)
        hops = np.arange(n) // _VOCODER_HOP
        gains = 1 + 0.12 * rng.standard_normal(hops[-1] + 1 if n else 1)
        out = out * gains[hops]
    peak = np.abs(out).max() + 1e-9
    out = out / peak * rng.uniform(0.4, 0.6)
    if vocoder:
        mu = 255.0
        y = np.sign(out) * np.log1p(mu * np.abs(out)) / np.log1p(mu)
        y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
        out = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
    else:
        out = out + 10 ** (-55 / 20) * rng.standard_normal(n)  # room noise floor
    return out.astype(np.float32)


def mouth_track(plan: list[Syllable], duration: float, times: np.ndarray, *,
                smooth_s: float = 0.03, gain: float = 1.3) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening (0..1) and width factor at ``times`` (seconds), following the plan.

    The opening is the vowel-weighted syllable envelope smoothed with a Gaussian of
    ``smooth_s`` seconds, so the lips move with the loudness of the speech.
    """
    sr = 1000
    n = round(duration * sr) + 1
    env = envelope(plan, n, sr, weight_open=True)
    width = np.ones(n, np.float32)
    for syl in plan:
        s, e = _syllable_env(n, syl, sr)
        w = VOWELS[syl.vowel][2]
        width[s:s + len(e)] += (w - 1.0) * (e / max(syl.amp, 1e-6))
    sig = max(1.0, smooth_s * sr)
    k = np.exp(-0.5 * (np.arange(-int(4 * sig), int(4 * sig) + 1) / sig) ** 2)
    k /= k.sum()
    env = np.convolve(env, k, mode="same")
    width = np.convolve(width - 1, k, mode="same") + 1
    idx = np.clip(np.round(times * sr).astype(int), 0, n - 1)
    return np.clip(env[idx] * gain, 0, 1), width[idx]


def to_format(x: np.ndarray, rate: int, channels: int) -> np.ndarray:
    """Resample 16 kHz mono to ``rate`` and give ``channels`` channels (S,) or (S, 2)."""
    if rate != SR:
        g = np.gcd(rate, SR)
        x = signal.resample_poly(x, rate // g, SR // g).astype(np.float32)
    if channels == 2:
        return np.stack([x, 0.96 * x], 1).astype(np.float32)
    return x.astype(np.float32)
