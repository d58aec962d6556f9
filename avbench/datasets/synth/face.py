"""Drawn faces for the synthetic benchmark.

A :class:`Look` holds everything that makes an identity recognisable (skin, face shape, eyes,
brows, nose, lips, hair, clothes, background). A :class:`Scene` draws one look into a frame of
a given size once (background, body, head with shading) and then, per frame, only the mouth
(its opening follows the speech envelope), blinks and a small head motion.

The shading follows a real face's light pattern (dark eye sockets and brows, a lighter nose
bridge and cheeks, a dark mouth), so that face detectors find it (tests/test_synthetic.py checks
that the MTCNN of face cropping finds it in at least 90% of the KoDF-shaped set's frames).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class Look:
    skin: tuple[float, float, float]  # RGB 0..255
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    shirt: tuple[float, float, float]
    bg_top: tuple[float, float, float]
    bg_bottom: tuple[float, float, float]
    aspect: float  # head height / width
    jaw: float  # width of the lower face relative to the upper (0.75 .. 1)
    eye_size: float
    eye_gap: float
    brow_thick: float
    brow_arch: float
    nose_len: float
    nose_width: float
    mouth_width: float
    long_hair: bool
    beard: float  # 0 = none, up to ~0.35 = darker lower face
    light: float  # -1 .. 1: side the light comes from
    texture_seed: int


#: the inner-face attributes a face swap takes from the other identity
SWAP_FIELDS = ("skin", "lips", "iris", "eye_size", "eye_gap", "brow_thick", "brow_arch",
               "nose_len", "nose_width", "mouth_width", "texture_seed")


def swapped_look(base: Look, donor: Look) -> Look:
    """The donor's inner face on the base's head (outline, hair, clothes, background kept)."""
    return replace(base, **{f: getattr(donor, f) for f in SWAP_FIELDS})


def _col(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float32)


def _soft_ellipse(shape, center, axes, angle=0.0, blur=1.0) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    cv2.ellipse(m, (round(center[0] * 16), round(center[1] * 16)),
                (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16))),
                angle, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
    if blur > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur)
    return m


def _paint(img: np.ndarray, mask: np.ndarray, color) -> None:
    """img = img * (1 - mask) + color * mask, in place (img float32 HxWx3)."""
    m = mask[..., None]
    img *= 1.0 - m
    img += m * _col(color)


def _shade(img: np.ndarray, mask: np.ndarray, factor: float) -> None:
    """Multiply img by a factor where the mask is on (factor < 1 darkens)."""
    img *= 1.0 + (factor - 1.0) * mask[..., None]


@dataclass(frozen=True)
class Placement:
    """Where the head sits in the frame: centre and half-width in pixels."""

    cx: float
    cy: float
    half_w: float


class Scene:
    """One identity drawn into an (H, W) frame; :meth:`render` draws frame after frame."""

    def __init__(self, look: Look, height: int, width: int, place: Placement, *,
                 body: bool = True):
        self.look = look
        self.h, self.w = height, width
        self.place = place
        ax = place.half_w
        ay = ax * look.aspect
        self.ax, self.ay = ax, ay
        self.cx, self.cy = place.cx, place.cy
        self._draw_static(body)

    # -- static layers ------------------------------------------------------------------
    def _head_contour(self, grow: float = 1.0) -> np.ndarray:
        lk = self.look
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        s = np.sin(t)
        width = 1.0 - (1.0 - lk.jaw) * np.clip(s, 0, None) ** 1.5
        x = self.cx + grow * self.ax * np.cos(t) * width
        y = self.cy + grow * self.ay * s
        return np.stack([x, y], 1)

    def _draw_static(self, body: bool) -> None:
        lk, h, w = self.look, self.h, self.w
        cx, cy, ax, ay = self.cx, self.cy, self.ax, self.ay
        shape = (h, w)
        yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        bg = _col(lk.bg_top) * (1 - yy) + _col(lk.bg_bottom) * yy
        self.background = np.broadcast_to(bg, (h, w, 3)).astype(np.float32).copy()
        # a few soft blobs so the background is not flat
        rng = np.random.default_rng(lk.texture_seed + 7)
        for _ in range(4):
            c = (rng.uniform(0, w), rng.uniform(0, h))
            m = _soft_ellipse(shape, c, (rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h),
                              blur=max(2.0, 0.05 * w))
            _shade(self.background, m * 0.5, rng.uniform(0.85, 1.15))

        layer = np.zeros((h, w, 3), np.float32)
        alpha = np.zeros(shape, np.float32)
        skin = _col(lk.skin)

        def put(mask, color):
            _paint(layer, mask, color)
            np.maximum(alpha, mask, out=alpha)

        if body:
            # shoulders and neck
            sh = _soft_ellipse(shape, (cx, cy + 2.25 * ay), (2.1 * ax, 1.05 * ay), blur=0.8)
            put(sh, lk.shirt)
            neck = np.zeros(shape, np.float32)
            cv2.rectangle(neck, (round(cx - 0.45 * ax), round(cy + 0.3 * ay)),
                          (round(cx + 0.45 * ax), round(cy + 1.35 * ay)), 1.0, -1)
            neck = cv2.GaussianBlur(neck, (0, 0), 0.8)
            put(neck, skin * 0.8)
        if lk.long_hair:
            hair_back = _soft_ellipse(shape, (cx, cy + 0.25 * ay), (1.22 * ax, 1.12 * ay), blur=0.8)
            put(hair_back, lk.hair)
        # head
        head = np.zeros(shape, np.float32)
        cv2.fillPoly(head, [np.round(self._head_contour() * 16).astype(np.int32)], 1.0,
                     cv2.LINE_AA, 4)
        head = cv2.GaussianBlur(head, (0, 0), 0.6)
        put(head, skin)
        # ears
        for sgn in (-1, 1):
            ear = _soft_ellipse(shape, (cx + sgn * 0.98 * ax, cy + 0.02 * ay),
                                (0.13 * ax, 0.2 * ay), blur=0.6)
            ear *= 1.0 - head
            put(ear, skin * 0.88)
        self.head_mask = head

        # skin texture and light
        tex_rng = np.random.default_rng(lk.texture_seed)
        noise = tex_rng.standard_normal(shape).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), max(0.6, 0.012 * ax * 2))
        noise /= noise.std() + 1e-6
        xx = (np.arange(w, dtype=np.float32)[None, :] - cx) / ax
        ygrid = (np.arange(h, dtype=np.float32)[:, None] - cy) / ay
        light = 1.0 + 0.10 * lk.light * np.clip(xx, -1.2, 1.2) - 0.05 * np.clip(ygrid, -1, 1)
        face = head.copy()
        layer *= (1.0 + (light - 1.0) * face)[..., None]
        layer += (3.0 * noise * face)[..., None]

        # shading of a real face: temples and jaw sides darker, forehead and cheeks lighter
        for sgn in (-1, 1):
            side = _soft_ellipse(shape, (cx + sgn * 0.92 * ax, cy + 0.1 * ay),
                                 (0.28 * ax, 0.9 * ay), blur=0.12 * ax)
            _shade(layer, side * head, 0.82)
        forehead = _soft_ellipse(shape, (cx, cy - 0.55 * ay), (0.6 * ax, 0.25 * ay), blur=0.15 * ax)
        _shade(layer, forehead * head, 1.08)
        for sgn in (-1, 1):
            cheek = _soft_ellipse(shape, (cx + sgn * 0.45 * ax, cy + 0.22 * ay),
                                  (0.26 * ax, 0.2 * ay), blur=0.12 * ax)
            _shade(layer, cheek * head, 1.10)
        if lk.beard > 0:
            beard = _soft_ellipse(shape, (cx, cy + 0.62 * ay), (0.8 * ax * lk.jaw, 0.42 * ay),
                                  blur=0.1 * ax)
            _shade(layer, beard * head, 1.0 - lk.beard)

        # eyes: sockets, whites, iris, pupil
        ey = cy - 0.10 * ay
        gap = lk.eye_gap * ax
        ew, eh = lk.eye_size * 0.2 * ax, lk.eye_size * 0.085 * ay
        self.eyes = []
        for sgn in (-1, 1):
            ex = cx + sgn * gap
            sock = _soft_ellipse(shape, (ex, ey - 0.02 * ay), (1.7 * ew, 2.2 * eh), blur=0.1 * ax)
            _shade(layer, sock, 0.72)
            white = _soft_ellipse(shape, (ex, ey), (ew, eh), blur=0.5)
            _paint(layer, white, (225, 222, 215))
            iris = _soft_ellipse(shape, (ex, ey), (0.5 * ew, 0.9 * eh), blur=0.4)
            _paint(layer, iris, lk.iris)
            pupil = _soft_ellipse(shape, (ex, ey), (0.22 * ew, 0.45 * eh), blur=0.3)
            _paint(layer, pupil, (15, 12, 12))
            self.eyes.append((ex, ey, ew, eh))
        # brows
        by = cy - 0.30 * ay
        for sgn in (-1, 1):
            xs = cx + sgn * np.linspace(0.15, 0.62, 12) * ax
            arch = lk.brow_arch * np.sin(np.linspace(0.2, np.pi - 0.4, 12))
            ys = by - arch * 0.1 * ay
            brow = np.zeros(shape, np.float32)
            pts = np.round(np.stack([xs, ys], 1) * 16).astype(np.int32)
            cv2.polylines(brow, [pts], False, 1.0, max(1, round(lk.brow_thick * 0.1 * ay)),
                          cv2.LINE_AA, 4)
            brow = cv2.GaussianBlur(brow, (0, 0), 0.6)
            _paint(layer, brow * 0.9, lk.hair)
        # nose: light bridge, shaded sides, darker tip underside and nostrils
        nl, nw = lk.nose_len * ay, lk.nose_width * ax
        bridge = _soft_ellipse(shape, (cx, cy + 0.08 * ay), (0.09 * ax, 0.42 * nl),
                               blur=0.06 * ax)
        _shade(layer, bridge, 1.14)
        for sgn in (-1, 1):
            side = _soft_ellipse(shape, (cx + sgn * 0.17 * ax, cy + 0.12 * ay),
                                 (0.05 * ax, 0.35 * nl), blur=0.06 * ax)
            _shade(layer, side, 0.88)
        tip_y = cy + 0.08 * ay + 0.45 * nl
        under = _soft_ellipse(shape, (cx, tip_y + 0.04 * ay), (nw, 0.05 * ay), blur=0.05 * ax)
        _shade(layer, under, 0.82)
        for sgn in (-1, 1):
            nos = _soft_ellipse(shape, (cx + sgn * 0.45 * nw, tip_y + 0.03 * ay),
                                (0.3 * nw, 0.025 * ay), blur=0.5)
            _shade(layer, nos, 0.55)
        # hair on top
        top = _soft_ellipse(shape, (cx, cy - 0.72 * ay), (1.05 * ax, 0.42 * ay), blur=0.8)
        cut = np.zeros(shape, np.float32)
        cut[: max(0, round(cy - 0.5 * ay)), :] = 1.0
        cut = cv2.GaussianBlur(cut, (0, 0), 0.05 * ay + 0.5)
        hair_top = np.clip(top * np.maximum(cut, 1.0 - head), 0, 1)
        if lk.long_hair:
            for sgn in (-1, 1):
                strand = _soft_ellipse(shape, (cx + sgn * 0.95 * ax, cy - 0.05 * ay),
                                       (0.16 * ax, 0.75 * ay), blur=0.8)
                hair_top = np.maximum(hair_top, strand * (1.0 - head * 0.85))
        put(hair_top, lk.hair)

        self.layer = layer
        self.alpha = alpha
        self.mouth = (cx, cy + 0.50 * ay, lk.mouth_width * 0.32 * ax, 0.2 * ay)
        # inner-face region (what a face swap replaces): brows to chin, inside the outline
        inner = _soft_ellipse(shape, (cx, cy + 0.12 * ay), (0.8 * ax * (0.5 + 0.5 * lk.jaw) + 0.05 * ax,
                                                            0.72 * ay), blur=0)
        self.inner = np.clip(inner * (head > 0.5), 0, 1).astype(np.float32)
        self._cache: dict[tuple, np.ndarray] = {}

    # -- per frame ----------------------------------------------------------------------
    # Only the mouth and the eyes change from frame to frame. They live in two fixed boxes
    # (computed from the head geometry alone, so a face-swap donor drawn on the same head has
    # the same boxes), and their drawings are cached by quantised opening/width/blink.

    def _box(self, x0, y0, x1, y1) -> tuple[slice, slice]:
        return pixel_box(self.h, self.w, x0, y0, x1, y1)

    @property
    def mouth_box(self) -> tuple[slice, slice]:
        cx, cy, ax, ay = self.cx, self.cy, self.ax, self.ay
        return self._box(cx - 0.62 * ax, cy + 0.30 * ay, cx + 0.62 * ax, cy + 0.86 * ay)

    @property
    def eye_box(self) -> tuple[slice, slice]:
        cx, cy, ax, ay = self.cx, self.cy, self.ax, self.ay
        return self._box(cx - 0.78 * ax, cy - 0.24 * ay, cx + 0.78 * ax, cy + 0.02 * ay)

    def mouth_patch(self, q_open: int, q_width: int) -> np.ndarray:
        """The layer inside :attr:`mouth_box` with the mouth at a quantised opening/width."""
        key = ("m", q_open, q_width)
        patch = self._cache.get(key)
        if patch is None:
            box = self.mouth_box
            patch = self.layer[box].copy()
            self.draw_mouth(patch, q_open / OPEN_LEVELS, 0.7 + q_width / WIDTH_LEVELS,
                            origin=(box[1].start, box[0].start))
            self._cache[key] = patch
        return patch

    def eye_patch(self, q_blink: int) -> np.ndarray:
        key = ("e", q_blink)
        patch = self._cache.get(key)
        if patch is None:
            box = self.eye_box
            patch = self.layer[box].copy()
            self.draw_blink(patch, q_blink / BLINK_LEVELS, origin=(box[1].start, box[0].start))
            self._cache[key] = patch
        return patch

    def draw_mouth(self, img: np.ndarray, opening: float, width: float = 1.0,
                   origin: tuple[int, int] = (0, 0)) -> None:
        """Draw the mouth onto ``img`` (in place), whose top-left pixel is ``origin`` of the
        frame; opening in [0, 1], width ~ 0.85..1.2."""
        mx, my, mw, mh = self.mouth
        mw = mw * width
        shape = img.shape[:2]
        c = (mx - origin[0], my - origin[1])
        op = float(np.clip(opening, 0.0, 1.0))
        gap = op * mh
        upper = _soft_ellipse(shape, (c[0], c[1] - 0.12 * mh), (mw, 0.28 * mh + 0.5), blur=0.5)
        lower = _soft_ellipse(shape, (c[0], c[1] + gap + 0.14 * mh), (0.9 * mw, 0.32 * mh + 0.5),
                              blur=0.5)
        _paint(img, np.maximum(upper, lower), self.look.lips)
        if gap > 0.05 * mh:
            inside = _soft_ellipse(shape, (c[0], c[1] + 0.5 * gap), (0.82 * mw, 0.5 * gap + 0.3),
                                   blur=0.45)
            _paint(img, inside, (40, 18, 22))
            if gap > 0.3 * mh:  # upper teeth: a thin band under the upper lip
                teeth = _soft_ellipse(shape, (c[0], c[1] + 0.08 * gap),
                                      (0.5 * mw, 0.1 * gap + 0.2), blur=0.4)
                _paint(img, teeth * min(0.9, gap / mh), (215, 210, 200))
        line = _soft_ellipse(shape, (c[0], c[1] + 0.04 * mh + 0.5 * gap), (0.95 * mw, 0.5),
                             blur=0.4)
        _shade(img, line, 0.55)

    def draw_blink(self, img: np.ndarray, closed: float, origin: tuple[int, int] = (0, 0)) -> None:
        if closed <= 0:
            return
        skin = _col(self.look.skin) * 0.85
        for ex, ey, ew, eh in self.eyes:
            lid = _soft_ellipse(img.shape[:2], (ex - origin[0], ey - origin[1] - eh * (1 - closed)),
                                (ew * 1.1, eh * closed * 1.1 + 0.3), blur=0.5)
            _paint(img, lid, skin)


def pixel_box(h: int, w: int, x0, y0, x1, y1) -> tuple[slice, slice]:
    """Slices (rows, cols) of the box, clipped to an (h, w) frame."""
    x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    x1, y1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
    return slice(y0, y1), slice(x0, x1)


OPEN_LEVELS = 40
WIDTH_LEVELS = 20  # width factor = 0.7 + q / WIDTH_LEVELS
BLINK_LEVELS = 8


def quantise(opening: np.ndarray, width: np.ndarray, blink: np.ndarray):
    qo = np.clip(np.round(np.asarray(opening) * OPEN_LEVELS), 0, OPEN_LEVELS).astype(int)
    qw = np.clip(np.round((np.asarray(width) - 0.7) * WIDTH_LEVELS), 0, WIDTH_LEVELS).astype(int)
    qb = np.clip(np.round(np.asarray(blink) * BLINK_LEVELS), 0, BLINK_LEVELS).astype(int)
    return qo, qw, qb


def affine(pose: tuple[float, float, float, float], center: tuple[float, float]) -> np.ndarray:
    """2x3 matrix for (dx, dy, angle in degrees, scale) around ``center``."""
    dx, dy, ang, sc = pose
    m = cv2.getRotationMatrix2D(center, ang, sc)
    m[0, 2] += dx
    m[1, 2] += dy
    return m


def warp(img: np.ndarray, m: np.ndarray, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


def composite(background: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """background * (1 - alpha) + layer * alpha (float32 images, alpha (H, W))."""
    a = np.ascontiguousarray(alpha, dtype=np.float32)
    return cv2.blendLinear(np.ascontiguousarray(layer, dtype=np.float32),
                           np.ascontiguousarray(background, dtype=np.float32), a, 1.0 - a)
