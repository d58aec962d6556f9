"""Face cropping for full-frame datasets (KoDF): detect, track, smooth, crop a square.

Detectors sit behind :class:`FaceDetector`. The default, :class:`MtcnnFaceDetector`, is MTCNN
(Zhang et al. 2016, a cascade of three small CNNs) as packaged by facenet-pytorch 2.5, whose
wheel carries the trained weights (``pnet.pt``, ``rnet.pt``, ``onet.pt``, 2 MB): nothing is
downloaded at run time. It finds frontal, three-quarter and tilted faces and gives each a
probability; on the Haar cascade's own test material it also finds the faces the cascade
misses (a face turned to the side, the synthetic set's drawn faces in every frame). Its
limits: faces under about 20 pixels at its working width (80 pixels across in a 1920-wide
frame at the defaults) are missed, and it runs on the CPU (~20-50 ms a look on one core).
:class:`HaarFaceDetector` (OpenCV's frontal cascade) stays selectable: frontal faces only,
jittery boxes, and it fires on face-like texture.

``AVBENCH_FACE_DETECTOR`` (``mtcnn``, the default, or ``haar``) picks the detector and
``AVBENCH_MIN_FACE_SHARE`` (default :data:`DEFAULT_MIN_FACE_SHARE`) the share of searched
frames that must show a face for a video to be used (see :func:`min_face_share`).

The tracking in :func:`crop_faces` is built for one dominant speaker per video (the KoDF
setting): it keeps the largest, most central face, smooths the box over time and bridges
frames without a detection with the neighbouring boxes (and counts them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from avbench.errors import AvbenchError, BadMediaError, ConfigError

Box = tuple[float, float, float, float, float]

#: Bump whenever :func:`crop_faces` gives other crops or counts for the same frames and
#: detector (part of the prepared cache's key). 2: the per-video face share is recorded.
CROP_VERSION = 2
#: a video whose detection passes find a face in fewer than this share of the frames searched
#: is reported as ``no-face`` instead of being used (``AVBENCH_MIN_FACE_SHARE`` overrides it)
DEFAULT_MIN_FACE_SHARE = 0.5
DETECTOR_ENV, MIN_SHARE_ENV = "AVBENCH_FACE_DETECTOR", "AVBENCH_MIN_FACE_SHARE"


class FaceDetector(Protocol):
    """Finds faces in one RGB frame (H, W, 3) uint8.

    Returns boxes ``(x, y, w, h, score)`` in the frame's pixels, any order. A detector may
    also carry a ``key`` string (name + settings); the prepared cache keys face-cropped
    entries by it, so changing the detector re-prepares them.
    """

    def detect(self, rgb_frame: np.ndarray) -> list[Box]: ...


def detector_key(detector: Any) -> str:
    """The identity of a detector for cache keys: its ``key`` attribute or its class name."""
    key = getattr(detector, "key", None)
    return str(key) if key else f"{type(detector).__module__}.{type(detector).__qualname__}"


def default_face_detector(env: Mapping[str, str] | None = None) -> FaceDetector:
    """The detector named by ``AVBENCH_FACE_DETECTOR`` (``mtcnn`` when unset)."""
    name = (os.environ if env is None else env).get(DETECTOR_ENV, "").strip().lower()
    if name in ("", "mtcnn"):
        return MtcnnFaceDetector()
    if name == "haar":
        return HaarFaceDetector()
    raise ConfigError(f"{DETECTOR_ENV}={name!r}: use mtcnn (the default) or haar")


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


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread (the output never depends on the machine's cores; files are
    prepared in parallel by processes), then restore the process's setting."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


class MtcnnFaceDetector:
    """MTCNN from facenet-pytorch (``facenet_pytorch.MTCNN``, weights from its wheel), on the
    CPU in one thread.

    Frames wider than ``detect_width`` are scaled down to it first (INTER_AREA; talking-head
    faces in 1080p stay far above the network's smallest face). ``min_face`` is the smallest
    face searched for, in pixels at that width; ``thresholds`` and ``factor`` are MTCNN's
    three stage thresholds and image-pyramid step (its published defaults). Boxes below
    ``min_score`` (the last stage's face probability) are dropped. ``score`` is that
    probability.
    """

    PACKAGE = "facenet-pytorch"

    def __init__(
        self,
        *,
        detect_width: int = 480,
        min_face: int = 20,
        min_score: float = 0.9,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> None:
        self.detect_width = int(detect_width)
        self.min_face = int(min_face)
        self.min_score = float(min_score)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self._net: Any = None

    @property
    def key(self) -> str:
        t = ",".join(f"{x:g}" for x in self.thresholds)
        return (
            f"mtcnn-{self.PACKAGE}-{_package_version(self.PACKAGE)}/w{self.detect_width}"
            f"/mf{self.min_face}/ms{self.min_score:g}/t{t}/f{self.factor:g}"
        )

    def _load(self) -> Any:
        if self._net is None:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as e:
                raise AvbenchError(_missing_package(self.PACKAGE, e)) from None
            self._net = MTCNN(
                min_face_size=self.min_face,
                thresholds=list(self.thresholds),
                factor=self.factor,
                keep_all=True,
                device="cpu",
            ).eval()
        return self._net

    def detect(self, rgb_frame: np.ndarray) -> list[Box]:
        import cv2

        h, w = rgb_frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        img = np.ascontiguousarray(rgb_frame)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        net = self._load()
        with _one_torch_thread():
            boxes, probs = net.detect(img)
        if boxes is None:
            return []
        corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale
        scores = np.asarray(probs, dtype=np.float64).reshape(-1)
        return [
            (float(x0), float(y0), float(x1 - x0), float(y1 - y0), float(p))
            for (x0, y0, x1, y1), p in zip(corners, scores, strict=True)
            if p >= self.min_score
        ]

    def __getstate__(self) -> dict[str, Any]:  # workers load the networks themselves
        state = self.__dict__.copy()
        state["_net"] = None
        return state

    def __repr__(self) -> str:
        return f"MtcnnFaceDetector({self.key})"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError as e:
        raise AvbenchError(_missing_package(name, e)) from None


def _missing_package(name: str, e: Exception) -> str:
    return (f"face detection needs the {name} package ({e}): pip install "
            f"'{name}>=2.5.3,<2.6', or set {DETECTOR_ENV}=haar")


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``).

    Frames are converted to grey, scaled down to ``detect_width`` pixels wide (speed; faces
    in 1080p talking-head video stay well above the cascade's 24-pixel window) and scanned
    (histogram equalisation was tried and lost detections on synthetic and photographic
    test frames, so it is not applied). ``score`` is the number of merged neighbour detections (more =
    more certain). Faces smaller than ``min_size`` x the frame's short side are ignored.
    """

    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(
        self,
        *,
        detect_width: int = 480,
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
        min_size: float = 0.06,
    ) -> None:
        self.detect_width = int(detect_width)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = float(min_size)
        self._cascade: Any = None

    @property
    def key(self) -> str:
        return (
            f"haar-frontalface-default/w{self.detect_width}/sf{self.scale_factor}"
            f"/mn{self.min_neighbors}/ms{self.min_size}"
        )

    def _load(self) -> Any:
        if self._cascade is None:
            import cv2

            base = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if not base or not hasattr(cv2, "CascadeClassifier"):
                raise RuntimeError(
                    "this OpenCV build ships no Haar cascades (opencv-python-headless >= 5 "
                    "dropped them); install opencv-python-headless < 5 or pass another "
                    "face detector"
                )
            cascade = cv2.CascadeClassifier(str(base) + self.CASCADE)
            if cascade.empty():
                raise RuntimeError(f"cannot load the Haar cascade {self.CASCADE} from {base}")
            self._cascade = cascade
        return self._cascade

    def detect(self, rgb_frame: np.ndarray) -> list[Box]:
        import cv2

        cascade = self._load()
        h, w = rgb_frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        gray = cv2.cvtColor(np.ascontiguousarray(rgb_frame), cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(
                gray,
                (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
        smallest = max(24, round(self.min_size * min(gray.shape)))
        boxes, neighbours = cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(smallest, smallest),
        )
        out: list[Box] = []
        rects = np.reshape(boxes, (-1, 4)).astype(np.float64) / scale
        for (x, y, bw, bh), n in zip(rects, np.reshape(neighbours, -1), strict=True):
            out.append((float(x), float(y), float(bw), float(bh), float(n)))
        return out

    def __getstate__(self) -> dict[str, Any]:  # the cascade is not picklable: reload lazily
        state = self.__dict__.copy()
        state["_cascade"] = None
        return state

    def __repr__(self) -> str:
        return f"HaarFaceDetector({self.key})"


@dataclass
class FaceCropReport:
    """What :func:`crop_faces` did.

    ``boxes`` is (N, 3) float: the square crop's centre x, centre y and side in input pixels
    for every frame (before clipping to the frame). ``detect_frames`` frames were searched
    and ``detected`` of them showed a face; ``fallback_frames`` counts frames whose nearest
    detection pass found no face (their box comes from neighbouring detections).
    """

    n_frames: int
    every: int
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
        if w <= 0 or h <= 0:
            continue
        cx, cy = x + w / 2, y + h / 2
        off = float(np.hypot(cx - width / 2, cy - height / 2)) / half_diag
        score = w * h * (1.0 - 0.5 * min(off, 1.0))
        if score > best_score:
            best, best_score = (cx, cy, float(max(w, h))), score
    return best


def _moving_median(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < 3:
        return x.copy()
    r = window // 2
    padded = np.pad(x, (r, r), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * r + 1)
    return np.median(view, axis=1)


def crop_faces(
    frames: np.ndarray,
    detector: FaceDetector,
    *,
    size: int = 224,
    every: int = 5,
    margin: float = 0.3,
    smooth: int = 5,
    source: str = "<frames>",
) -> tuple[np.ndarray, FaceCropReport]:
    """Crop a square around the speaker's face in each of ``frames`` (N, H, W, 3) uint8 RGB.

    The detector runs on every ``every``-th frame and the last one
    (:func:`avbench.media.decode.decode` uses 10 at 25 fps: 2.5 looks a second, which follows
    a seated speaker and keeps MTCNN's cost, ~20-50 ms a look on one core, near the cost
    of decoding 1080p). On each,
    :func:`pick_face` chooses one face; the chosen boxes' centres and sides are smoothed with
    a moving median over ``smooth`` detections and interpolated linearly to every frame
    (frames before the first / after the last detection keep the nearest box). The crop is a
    square of side ``(1 + margin)`` x the face box (1.3 x by default, as is usual for
    deepfake face crops), shifted to stay inside the frame, or padded with black where it is
    larger than the frame, and resized to ``size`` (the detector's input size: 224 for the
    paper's CLIP backbone). Returns (crops (N, 3, size, size) uint8,
    :class:`FaceCropReport`). Raises :class:`BadMediaError` (kind ``no-face``, naming
    ``source``) when no detection pass finds a face; a video where only a few do is judged
    by the caller (:func:`avbench.media.cache.prepare` against :func:`min_face_share`).
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
    n, height, width = frames.shape[:3]
    every = max(1, int(every))
    if n == 0:
        raise BadMediaError(source, "no frames to look for a face in", "too-short")
    det_at = np.arange(0, n, every)
    if det_at[-1] != n - 1:
        det_at = np.append(det_at, n - 1)  # look at the last frame too: no open end
    found = np.zeros(len(det_at), dtype=bool)
    picks = np.zeros((len(det_at), 3))
    for j, i in enumerate(det_at):
        choice = pick_face(detector.detect(frames[i]), width, height)
        if choice is not None:
            found[j] = True
            picks[j] = choice
    if not found.any():
        raise BadMediaError(
            source,
            f"no face found in any of the {len(det_at)} frames searched (every {every}th of {n})",
            "no-face",
        )
    at = det_at[found].astype(np.float64)
    smoothed = np.stack([_moving_median(picks[found, c], smooth) for c in range(3)], axis=1)
    idx = np.arange(n, dtype=np.float64)
    boxes = np.stack([np.interp(idx, at, smoothed[:, c]) for c in range(3)], axis=1)
    boxes[:, 2] *= 1.0 + margin

    right = np.clip(np.searchsorted(det_at, idx), 0, len(det_at) - 1)
    left = np.clip(right - 1, 0, len(det_at) - 1)
    nearest = np.where(np.abs(det_at[left] - idx) <= np.abs(det_at[right] - idx), left, right)
    fallback = int(np.count_nonzero(~found[nearest]))

    crops = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        crop = _square(frames[i], *boxes[i])
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (size, size), interpolation=interp)
        crops[i] = resized.transpose(2, 0, 1)
    report = FaceCropReport(
        n_frames=int(n),
        every=every,
        detect_frames=len(det_at),
        detected=int(found.sum()),
        fallback_frames=fallback,
        detector=detector_key(detector),
        boxes=boxes,
    )
    return crops, report


def _square(frame: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """The square of ``side`` centred on (cx, cy): moved inside the frame where it fits,
    padded with black where the frame is smaller than the square."""
    height, width = frame.shape[:2]
    s = max(2, round(side))
    x0, y0 = round(cx - s / 2), round(cy - s / 2)
    if s <= width:
        x0 = min(max(x0, 0), width - s)
    if s <= height:
        y0 = min(max(y0, 0), height - s)
    if x0 >= 0 and y0 >= 0 and x0 + s <= width and y0 + s <= height:
        return frame[y0 : y0 + s, x0 : x0 + s]
    out = np.zeros((s, s, 3), dtype=frame.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + s, width), min(y0 + s, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return out


def few_faces_reason(found: int, searched: int, threshold: float) -> str:
    """Why a video with a face in ``found`` of ``searched`` frames is ``no-face``."""
    share = found / searched if searched else 0.0
    return (f"a face in {found} of the {searched} frames searched ({share:.0%}), under the "
            f"minimum share {threshold:g} ({MIN_SHARE_ENV})")


def face_summary(shares: Mapping[str, float], *, threshold: float, detector: str,
                 worst: int = 10) -> dict[str, Any]:
    """What ``data check`` prints and run.json records of one dataset's face detection:
    ``shares`` maps each face-cropped video to the share of its searched frames that showed
    a face (0 for a video with none). ``no_face`` counts the videos reported as ``no-face``
    and not used (no face at all, or a share below ``threshold``); ``worst`` lists the
    lowest shares (ties broken by id)."""
    values = np.array([shares[k] for k in sorted(shares)], dtype=np.float64)
    ranked = sorted(shares.items(), key=lambda kv: (kv[1], kv[0]))
    return {
        "detector": detector,
        "min_share": threshold,
        "videos": len(values),
        "mean_share": round(float(values.mean()), 4) if len(values) else None,
        "median_share": round(float(np.median(values)), 4) if len(values) else None,
        "no_face": int(np.count_nonzero((values < threshold) | (values == 0))),
        "without_any_face": int(np.count_nonzero(values == 0)),
        "worst": [{"id": k, "share": round(float(v), 4)} for k, v in ranked[:worst]],
    }
