"""Identities of the synthetic benchmark: group-specific looks and voices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avbench.datasets.synth.face import Look

#: FakeAVCeleb's race folders, in its order
GROUPS = ("African", "Asian (East)", "Asian (South)", "Caucasian (American)",
          "Caucasian (European)")


@dataclass(frozen=True)
class GroupStyle:
    skin: tuple[tuple[float, float, float], tuple[float, float, float]]  # RGB range lo, hi
    hair: tuple[tuple[float, float, float], ...]
    iris: tuple[tuple[float, float, float], ...]
    bg_hue: tuple[tuple[float, float, float], tuple[float, float, float]]  # top, bottom base
    aspect: tuple[float, float]
    jaw: tuple[float, float]
    nose_width: tuple[float, float]
    lips: tuple[float, float, float]


_DARK_HAIR = ((20, 16, 14), (35, 25, 20), (28, 22, 20))
_BROWN_EYES = ((70, 45, 30), (55, 35, 25), (90, 60, 35))

STYLES: dict[str, GroupStyle] = {
    "African": GroupStyle(((92, 58, 40), (150, 100, 72)), _DARK_HAIR, _BROWN_EYES,
                          ((200, 150, 95), (120, 80, 50)), (1.18, 1.28), (0.84, 0.94),
                          (0.26, 0.32), (110, 55, 55)),
    "Asian (East)": GroupStyle(((214, 176, 140), (240, 204, 172)), _DARK_HAIR, _BROWN_EYES,
                               ((150, 170, 200), (80, 95, 125)), (1.10, 1.18), (0.86, 0.96),
                               (0.19, 0.24), (190, 110, 110)),
    "Asian (South)": GroupStyle(((150, 100, 70), (196, 146, 108)), _DARK_HAIR, _BROWN_EYES,
                                ((120, 175, 120), (55, 100, 60)), (1.22, 1.32), (0.80, 0.90),
                                (0.22, 0.27), (150, 80, 80)),
    "Caucasian (American)": GroupStyle(
        ((220, 170, 150), (246, 206, 186)),
        ((80, 55, 35), (140, 100, 60), (200, 170, 110), (40, 30, 25)),
        ((70, 110, 150), (90, 120, 80), (80, 55, 35)),
        ((175, 140, 190), (95, 70, 115)), (1.26, 1.36), (0.78, 0.88), (0.19, 0.24),
        (200, 105, 110)),
    "Caucasian (European)": GroupStyle(
        ((228, 186, 166), (252, 222, 206)),
        ((110, 80, 50), (170, 130, 80), (215, 190, 130), (60, 45, 35)),
        ((80, 130, 170), (110, 140, 100), (110, 90, 60)),
        ((110, 180, 185), (45, 105, 110)), (1.30, 1.42), (0.74, 0.84), (0.17, 0.22),
        (205, 115, 120)),
}

#: KoDF stands in for one population; its look reuses the East Asian palette on studio grey
KODF_STYLE = GroupStyle(((206, 170, 136), (240, 206, 176)), _DARK_HAIR, _BROWN_EYES,
                        ((185, 185, 190), (120, 120, 128)), (1.10, 1.20), (0.84, 0.94),
                        (0.19, 0.25), (190, 110, 110))


@dataclass(frozen=True)
class Voice:
    """A speaker: glottal pitch (Hz) and formant frequencies per vowel scale."""

    f0: float
    formant_scale: float  # vocal tract length: all formants together
    formant_shift: tuple[float, float, float, float]  # each formant on its own (timbre)
    vowel_bias: tuple[float, float, float, float, float]  # preference among five vowels
    breath: float  # aspiration noise level
    open_quotient: float
    brightness: float  # spectral tilt modifier


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _mix(rng, lo, hi):
    t = rng.uniform(0, 1)
    return tuple(float(a + (b - a) * t + rng.normal(0, 4)) for a, b in zip(lo, hi, strict=True))


def sample_look(rng: np.random.Generator, style: GroupStyle, woman: bool) -> Look:
    hair = style.hair[int(rng.integers(len(style.hair)))]
    hair = tuple(float(np.clip(c * rng.uniform(0.85, 1.15), 0, 255)) for c in hair)
    bg_top = tuple(float(np.clip(c + rng.normal(0, 18), 0, 255)) for c in style.bg_hue[0])
    bg_bot = tuple(float(np.clip(c + rng.normal(0, 18), 0, 255)) for c in style.bg_hue[1])
    shirt = tuple(float(v) for v in rng.uniform(30, 220, 3))
    lips = tuple(float(np.clip(c + rng.normal(0, 10) + (12 if woman else 0) * (i == 0), 0, 255))
                 for i, c in enumerate(style.lips))
    return Look(
        skin=_mix(rng, *style.skin),
        hair=hair,
        lips=lips,
        iris=style.iris[int(rng.integers(len(style.iris)))],
        shirt=shirt,
        bg_top=bg_top,
        bg_bottom=bg_bot,
        aspect=_u(rng, *style.aspect) * (1.03 if woman else 1.0),
        jaw=min(0.98, _u(rng, *style.jaw) * (0.96 if woman else 1.0)),
        eye_size=_u(rng, 0.85, 1.15) * (1.06 if woman else 1.0),
        eye_gap=_u(rng, 0.36, 0.44),
        brow_thick=_u(rng, 0.45, 0.7) * (0.8 if woman else 1.1),
        brow_arch=_u(rng, 0.1, 0.6),
        nose_len=_u(rng, 0.34, 0.44),
        nose_width=_u(rng, *style.nose_width),
        mouth_width=_u(rng, 0.85, 1.15),
        long_hair=bool(woman and rng.uniform() < 0.85),
        beard=0.0 if woman or rng.uniform() < 0.6 else _u(rng, 0.08, 0.25),
        light=_u(rng, -1, 1),
        texture_seed=int(rng.integers(2**31 - 1)),
    )


def sample_voice(rng: np.random.Generator, woman: bool) -> Voice:
    bias = rng.dirichlet(np.ones(5) * 3)
    return Voice(
        f0=_u(rng, 175, 250) if woman else _u(rng, 90, 145),
        formant_scale=_u(rng, 1.08, 1.2) if woman else _u(rng, 0.92, 1.04),
        formant_shift=tuple(float(x) for x in rng.uniform(0.92, 1.08, 4)),
        vowel_bias=tuple(float(b) for b in bias),
        breath=_u(rng, 0.01, 0.04),
        open_quotient=_u(rng, 0.5, 0.7),
        brightness=_u(rng, -0.2, 0.2),
    )
