"""Face cropping for full-frame datasets (KoDF): detect, track, smooth, crop a square.

The detector is MTCNN (Zhang et al. 2016, a cascade of three small CNNs) from facenet-pytorch
2.5, whose wheel carries the trained weights (2 MB): nothing is downloaded at run time. It
finds frontal, three-quarter and tilted faces; it misses faces under about 20 pixels at its
working width (80 pixels across a 1920-wide frame) and runs on the CPU (~20-50 ms a look on
one core). ``AVBENCH_MIN_FACE_SHARE`` is the share of searched frames that must show a face
for a video to be used (:func:`min_face_share`). The tracking in :func:`crop_faces` follows
one dominant speaker per video (the KoDF setting): the largest, most central face, smoothed
over time, with frames without a detection bridged from their neighbours (and counted).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from avbench.errors import AvbenchError, BadMediaError, ConfigError

Box = tuple[float, float, float, float, float]

#: part of the prepared cache's key: bump when :func:`crop_faces` crops or counts differently
CROP_VERSION = 2
#: the share of searched frames showing a face below which a video is ``no-face``
DEFAULT_MIN_FACE_SHARE = 0.5
MIN_SHARE_ENV = "AVBENCH_MIN_FACE_SHARE"


class FaceDetector(Protocol):
    """Finds faces in one RGB frame (H, W, 3) uint8: boxes ``(x, y, w, h, score)`` in the
    frame's pixels, any order. A ``key`` string (name + settings), if present, keys the
    prepared cache's face-cropped entries, so changing the detector re-prepares them."""

    def detect(self, rgb_frame: np.ndarray) -> list[Box]: ...


def detector_key(detector: Any) -> str:
    """The identity of a detector for cache keys: its ``key`` attribute or its class name."""
    key = getattr(detector, "key", None)
    return str(key) if key else f"{type(detector).__module__}.{type(detector).__qualname__}"


def default_face_detector() -> FaceDetector:
    """The detector used when none is passed: :class:`MtcnnFaceDetector` at its defaults."""
    return MtcnnFaceDetector()


def min_face_share(env: Mapping[str, str] | None = None) -> float:
    """``AVBENCH_MIN_FACE_SHARE`` as a number in [0, 1], else :data:`DEFAULT_MIN_FACE_SHARE`.
    0 keeps every video in which any face was found."""
    raw = (os.environ if env is None else env).get(MIN_SHARE_ENV, "").strip()
    if not raw:
        return DEFAULT_MIN_FACE_SHARE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{MIN_SHARE_ENV}={raw!r}: give a share between 0 and 1 (e.g. 0.5)")
    return value


class MtcnnFaceDetector:
    """``facenet_pytorch.MTCNN`` on the CPU in one thread, on frames scaled down to at most
    ``detect_width`` wide (INTER_AREA). ``min_face`` is the smallest face searched for, in
    pixels at that width; ``thresholds`` and ``factor`` are MTCNN's stage thresholds and
    pyramid step (its published defaults). ``score`` is the last stage's face probability;
    boxes below ``min_score`` are dropped."""

    PACKAGE = "facenet-pytorch"

    def __init__(self, *, detect_width: int = 480, min_face: int = 20, min_score: float = 0.9,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709) -> None:
        self.detect_width = int(detect_width)
        self.min_face = int(min_face)
        self.min_score = float(min_score)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self._net: Any = None

    @property
    def key(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version(self.PACKAGE)
        except PackageNotFoundError as e:
            raise self._missing(e) from None
        t = ",".join(f"{x:g}" for x in self.thresholds)
        return (f"mtcnn-{self.PACKAGE}-{v}/w{self.detect_width}/mf{self.min_face}"
                f"/ms{self.min_score:g}/t{t}/f{self.factor:g}")

    def _missing(self, e: Exception) -> AvbenchError:
        return AvbenchError(f"face detection needs the {self.PACKAGE} package ({e}): "
                            f"pip install '{self.PACKAGE}>=2.5.3,<2.6'")

    def detect(self, rgb_frame: np.ndarray) -> list[Box]:
        import cv2

        h, w = rgb_frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        img = np.ascontiguousarray(rgb_frame)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        if self._net is None:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as e:
                raise self._missing(e) from None
            self._net = MTCNN(min_face_size=self.min_face, thresholds=list(self.thresholds),
                              factor=self.factor, keep_all=True, device="cpu").eval()
        import torch

        before = torch.get_num_threads()  # one thread: the boxes never depend on the cores
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                boxes, probs = self._net.detect(img)
        finally:
            torch.set_num_threads(before)
        if boxes is None:
            return []
        corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale
        scores = np.asarray(probs, dtype=np.float64).reshape(-1)
        return [(float(x0), float(y0), float(x1 - x0), float(y1 - y0), float(p))
                for (x0, y0, x1, y1), p in zip(corners, scores, strict=True)
                if p >= self.min_score]

    def __getstate__(self) -> dict[str, Any]:  # workers load the networks themselves
        return {**self.__dict__, "_net": None}


@dataclass
class FaceCropReport:
    """What :func:`crop_faces` did: ``detected`` of the ``detect_frames`` frames searched
    showed a face; ``fallback_frames`` frames took their box from neighbouring detections
    (their nearest search, the earlier on a tie, found none); ``boxes`` (N, 3) is each
    frame's square crop (centre x, centre y, side) in input pixels, before clipping."""

    detect_frames: int
    detected: int
    fallback_frames: int
    detector: str
    boxes: np.ndarray = field(repr=False)

    @property
    def share(self) -> float:
        """The share of searched frames in which a face was found."""
        return self.detected / self.detect_frames if self.detect_frames else 0.0


def pick_face(boxes: list[Box], width: int, height: int) -> tuple[float, float, float] | None:
    """The face to follow among ``boxes``: the largest, discounted by its distance from the
    frame centre (a face at a corner counts half its area). Returns (cx, cy, side)."""
    best, best_score = None, -1.0
    half_diag = 0.5 * float(np.hypot(width, height))
    for x, y, w, h, _ in boxes:
        cx, cy = x + w / 2, y + h / 2
        off = float(np.hypot(cx - width / 2, cy - height / 2)) / half_diag
        score = w * h * (1.0 - 0.5 * min(off, 1.0))
        if w > 0 and h > 0 and score > best_score:
            best, best_score = (cx, cy, float(max(w, h))), score
    return best


def crop_faces(frames: np.ndarray, detector: FaceDetector, *, size: int = 224, every: int = 5,
               margin: float = 0.3, smooth: int = 5, source: str = "<frames>",
               ) -> tuple[np.ndarray, FaceCropReport]:
    """Crop a square around the speaker's face in each of ``frames`` (N, H, W, 3) uint8 RGB.

    The detector looks at every ``every``-th frame and the last; :func:`pick_face` keeps one
    face per look. The boxes are smoothed (moving median over ``smooth`` looks, edges
    repeated) and interpolated linearly to every frame (the nearest box before the first look
    and after the last); each crop is a square of ``1 + margin`` times the face box. Returns
    (crops (N, 3, size, size) uint8, :class:`FaceCropReport`). Raises :class:`BadMediaError`
    ``no-face`` naming ``source`` when no look finds a face; a low share is the caller's to
    judge (:func:`min_face_share`)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
    n, height, width = frames.shape[:3]
    every = max(1, int(every))
    if n == 0:
        raise BadMediaError(source, "no frames to look for a face in", "too-short")
    det_at = np.unique(np.append(np.arange(0, n, every), n - 1))  # the last too: no open end
    looks = [pick_face(detector.detect(frames[i]), width, height) for i in det_at]
    found = np.array([p is not None for p in looks])
    if not found.any():
        raise BadMediaError(source, f"no face found in any of the {len(det_at)} frames "
                            f"searched (every {every}th of {n})", "no-face")
    picks = np.array([p for p in looks if p is not None], dtype=np.float64)
    if smooth > 1 and len(picks) >= 3:
        r = smooth // 2
        padded = np.pad(picks, ((r, r), (0, 0)), mode="edge")
        picks = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * r + 1, axis=0),
                          axis=-1)
    boxes = np.stack([np.interp(np.arange(n), det_at[found], picks[:, c]) for c in range(3)],
                     axis=1)
    boxes[:, 2] *= 1.0 + margin
    # each frame's nearest search (the earlier on a tie): count the midpoints before it
    nearest = np.searchsorted((det_at[:-1] + det_at[1:]) / 2, np.arange(n))
    report = FaceCropReport(detect_frames=len(det_at), detected=int(found.sum()),
                            fallback_frames=int(np.count_nonzero(~found[nearest])),
                            detector=detector_key(detector), boxes=boxes)
    return _crop_all(frames, boxes, size), report


def _crop_all(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each frame's square ``boxes[i]`` (cx, cy, side), moved inside the frame where it fits
    and black-padded where the frame is smaller, resized to ``size``: (N, 3, size, size)."""
    import cv2

    height, width = frames.shape[1:3]
    crops = np.empty((len(frames), 3, size, size), dtype=np.uint8)
    for i, (cx, cy, side) in enumerate(boxes):
        s = max(2, round(side))
        x0, y0 = round(cx - s / 2), round(cy - s / 2)
        if s <= width:
            x0 = min(max(x0, 0), width - s)
        if s <= height:
            y0 = min(max(y0, 0), height - s)
        if s <= width and s <= height:
            crop = frames[i, y0 : y0 + s, x0 : x0 + s]
        else:
            crop = np.zeros((s, s, 3), dtype=frames.dtype)
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + s, width), min(y0 + s, height)
            if sx1 > sx0 and sy1 > sy0:
                crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frames[i, sy0:sy1, sx0:sx1]
        interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
        crops[i] = cv2.resize(crop, (size, size), interpolation=interp).transpose(2, 0, 1)
    return crops


def few_faces_reason(found: int, searched: int, threshold: float) -> str:
    """Why a video with a face in ``found`` of ``searched`` frames is ``no-face``."""
    share = found / searched if searched else 0.0
    return (f"a face in {found} of the {searched} frames searched ({share:.0%}), under the "
            f"minimum share {threshold:g} ({MIN_SHARE_ENV})")


def face_summary(shares: Mapping[str, float], *, threshold: float, detector: str,
                 worst: int = 10) -> dict[str, Any]:
    """What ``data check`` prints and run.json records of one dataset's face detection:
    ``shares`` maps each face-cropped video to the share of its searched frames that showed
    a face (0 for none). ``no_face`` counts the videos not used (no face at all, or a share
    below ``threshold``); ``worst`` lists the lowest shares (ties broken by id)."""
    values = np.array([shares[k] for k in sorted(shares)], dtype=np.float64)
    ranked = sorted(shares.items(), key=lambda kv: (kv[1], kv[0]))
    some = len(values) > 0
    return {"detector": detector, "min_share": threshold, "videos": len(values),
            "mean_share": round(float(values.mean()), 4) if some else None,
            "median_share": round(float(np.median(values)), 4) if some else None,
            "no_face": int(np.count_nonzero((values < threshold) | (values == 0))),
            "without_any_face": int(np.count_nonzero(values == 0)),
            "worst": [{"id": k, "share": round(float(v), 4)} for k, v in ranked[:worst]]}
