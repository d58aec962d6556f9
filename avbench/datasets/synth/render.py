"""Rendering clips: head motion, blinks, face swaps and re-rendered (wav2lip-like) mouths."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avbench.datasets.synth.face import Scene, affine, composite, pixel_box, quantise, warp


@dataclass(frozen=True)
class Motion:
    """Per-frame head pose (dx, dy, angle, scale) and eyelid closure, shared by a clip and
    every fake made from it (a manipulation keeps the source video's head motion)."""

    pose: np.ndarray  # (N, 4)
    blink: np.ndarray  # (N,)


def sample_motion(rng: np.random.Generator, times: np.ndarray, amp_px: float,
                  amp_deg: float = 2.0) -> Motion:
    """Slow head sway (sums of sines: about ``amp_px`` pixels, ``amp_deg`` degrees, 1 %
    scale) and a blink every 1.5 to 4 s."""
    n = len(times)
    pose = np.zeros((n, 4), np.float32)
    for j, a in enumerate((amp_px, amp_px * 0.7, amp_deg, 0.012)):
        for _ in range(3):
            f = rng.uniform(0.1, 0.8)
            pose[:, j] += a / 3 * np.sin(2 * np.pi * f * times + rng.uniform(0, 6.3))
    pose[:, 3] += 1.0
    blink = np.zeros(n, np.float32)
    t = rng.uniform(0.3, 2.0)
    end = times[-1] if n else 0.0
    while t < end:
        blink = np.maximum(blink, np.clip(1 - np.abs(times - t) / 0.09, 0, 1))
        t += rng.uniform(1.5, 4.0)
    return Motion(pose, blink)


class Swapped:
    """A face swap: the donor's inner face (drawn on the base head) blended into the base
    with ``mask``; hard for faceswap, feathered with a colour mismatch and smoother skin for
    fsgan. Offers the same drawing interface as :class:`Scene`."""

    def __init__(self, base: Scene, donor: Scene, *, soft: bool):
        self.base, self.donor = base, donor
        for attr in ("h", "w", "cx", "cy", "ax", "ay", "background", "alpha", "head_mask",
                     "mouth", "mouth_box", "eye_box"):
            setattr(self, attr, getattr(base, attr))
        mask = base.inner.copy()
        if soft:
            self.mask = cv2.GaussianBlur(mask, (0, 0), 0.09 * base.ax) * base.head_mask
            self.tint = np.asarray((1.07, 0.98, 0.92), np.float32)
            self.smooth = 0.018 * base.ax
        else:
            self.mask = (mask > 0.5).astype(np.float32)
            self.tint = np.ones(3, np.float32)
            self.smooth = 0.0
        self.layer = self._mix(base.layer, donor.layer, (slice(None), slice(None)))
        self._cache: dict[tuple, np.ndarray] = {}

    def _mix(self, base: np.ndarray, donor: np.ndarray, box) -> np.ndarray:
        d = donor * self.tint
        if self.smooth > 0:
            d = cv2.GaussianBlur(d, (0, 0), self.smooth)
        m = self.mask[box][..., None]
        return base * (1 - m) + d * m

    def mouth_patch(self, q_open: int, q_width: int) -> np.ndarray:
        key = ("m", q_open, q_width)
        if key not in self._cache:
            self._cache[key] = self._mix(self.base.mouth_patch(q_open, q_width),
                                         self.donor.mouth_patch(q_open, q_width), self.mouth_box)
        return self._cache[key]

    def eye_patch(self, q_blink: int) -> np.ndarray:
        key = ("e", q_blink)
        if key not in self._cache:
            self._cache[key] = self._mix(self.base.eye_patch(q_blink),
                                         self.donor.eye_patch(q_blink), self.eye_box)
        return self._cache[key]


def render(scene: Scene | Swapped, opening: np.ndarray, width: np.ndarray, motion: Motion,
           rng: np.random.Generator, *, lipsync_blur: float = 0.0, noise: float = 1.5,
           camera: bool = True) -> np.ndarray:
    """Frames (N, H, W, 3) uint8.

    ``camera=True`` moves the whole picture with the head (a face-tracked crop, as in
    FakeAVCeleb); ``camera=False`` moves the person over a still background (a fixed camera,
    as in KoDF). ``lipsync_blur`` > 0 re-renders the lower face as a lip-sync generator does:
    the region from nose to chin comes out blurred by a Gaussian of that many pixels, blended
    back with a soft edge.
    """
    n = len(opening)
    h, w = scene.h, scene.w
    out = np.empty((n, h, w, 3), np.uint8)
    bank = rng.normal(0, noise, (6, h, w, 3)).astype(np.float32) if noise > 0 else None
    center = (scene.cx, scene.cy)
    qo, qw, qb = quantise(opening, width, motion.blink)
    mbox, ebox = scene.mouth_box, scene.eye_box
    if camera:
        static = composite(scene.background, scene.layer, scene.alpha)
    else:
        static = scene.layer
    lip = None
    if lipsync_blur > 0:
        cx, cy, ax, ay = scene.cx, scene.cy, scene.ax, scene.ay
        pad = int(np.ceil(3 * lipsync_blur)) + 1
        lbox = pixel_box(h, w, cx - 0.62 * ax - pad, cy + 0.3 * ay - pad, cx + 0.62 * ax + pad,
                         cy + 0.88 * ay + pad)
        m = np.zeros((h, w), np.float32)
        cv2.rectangle(m, (round(cx - 0.62 * ax), round(cy + 0.3 * ay)),
                      (round(cx + 0.62 * ax), round(cy + 0.88 * ay)), 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), 0.06 * ax) * scene.head_mask
        lip = (lbox, m[lbox][..., None])

    if not camera:
        ys, xs = np.nonzero(scene.alpha > 0.002)
        margin = 0.25 * scene.ax + 4
        pbox = pixel_box(h, w, xs.min() - margin, ys.min() - margin, xs.max() + 1 + margin,
                         ys.max() + 1 + margin)
        offset = np.array([pbox[1].start, pbox[0].start], np.float64)
        palpha = scene.alpha[pbox]

    def put(img, box, patch):
        if camera:
            img[box] = composite(scene.background[box], patch, scene.alpha[box])
        else:
            img[box] = patch

    for k in range(n):
        img = static.copy()
        put(img, ebox, scene.eye_patch(int(qb[k])))
        put(img, mbox, scene.mouth_patch(int(qo[k]), int(qw[k])))
        if lip is not None:
            lbox, lm = lip
            roi = img[lbox]
            img[lbox] = roi * (1 - lm) + cv2.GaussianBlur(roi, (0, 0), lipsync_blur) * lm
        mat = affine(tuple(motion.pose[k]), center)
        if camera:
            img = warp(img, mat, cv2.BORDER_REFLECT_101)
        else:
            # only the person's box moves: warp that box alone (in its own coordinates); the
            # replicated border continues the body where it leaves the frame
            mat[:, 2] += mat[:, :2] @ offset - offset
            moved = composite(scene.background[pbox], warp(img[pbox], mat, cv2.BORDER_REPLICATE),
                              warp(palpha, mat, cv2.BORDER_REPLICATE))
            img = scene.background.copy()
            img[pbox] = moved
        if bank is not None:
            img += bank[int(rng.integers(len(bank)))]
        np.clip(img, 0, 255, out=img)
        out[k] = img.astype(np.uint8)
    return out
