"""Face cropping on a real photograph (scikit-image's astronaut) placed in larger frames."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from avbench.errors import BadMediaError
from avbench.media.cache import PreparedCache, prepare
from avbench.media.decode import Pipeline, decode
from avbench.media.encode import write_av
from avbench.media.face import HaarFaceDetector, crop_faces, pick_face

skimage_data = pytest.importorskip("skimage.data")

# Eileen Collins' face in skimage.data.astronaut() (512 x 512): x, y, w, h
FACE_IN_PHOTO = np.array([177.0, 66.0, 95.0, 95.0])
PHOTO_SIDE = 256  # the photo is pasted at half size


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = skimage_data.astronaut()
    return cv2.resize(img, (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_AREA)


def scene(
    photo: np.ndarray, n: int, *, blank: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 640x360 frames with the photo drifting right and bobbing; frames in ``blank``
    hide it. Returns (frames, face boxes (n, 4) x, y, w, h in frame pixels)."""
    yy, xx = np.mgrid[0:360, 0:640]
    background = (70 + 0.08 * xx + 0.05 * yy).astype(np.uint8)[..., None].repeat(3, axis=2)
    frames = np.empty((n, 360, 640, 3), np.uint8)
    boxes = np.empty((n, 4))
    face = FACE_IN_PHOTO * PHOTO_SIDE / 512
    for i in range(n):
        ox, oy = 150 + i, 40 + round(8 * np.sin(i / 6))
        frames[i] = background
        if i not in blank:
            frames[i, oy : oy + PHOTO_SIDE, ox : ox + PHOTO_SIDE] = photo
        boxes[i] = (ox + face[0], oy + face[1], face[2], face[3])
    return frames, boxes


def contains(crop_box: np.ndarray, face: np.ndarray) -> bool:
    cx, cy, side = crop_box
    x, y, w, h = face
    return (
        cx - side / 2 <= x
        and cy - side / 2 <= y
        and x + w <= cx + side / 2
        and y + h <= cy + side / 2
    )


def test_haar_detector_finds_the_face(photo: np.ndarray) -> None:
    frames, boxes = scene(photo, 1)
    found = HaarFaceDetector().detect(frames[0])
    assert found, "no face detected"
    x, y, w, h, score = max(found, key=lambda b: b[2] * b[3])
    fx, fy, fw, fh = boxes[0]
    # the detection overlaps the true face well (IoU > 0.5)
    ix = max(0.0, min(x + w, fx + fw) - max(x, fx))
    iy = max(0.0, min(y + h, fy + fh) - max(y, fy))
    inter = ix * iy
    assert inter / (w * h + fw * fh - inter) > 0.5 and score > 0


def test_crop_contains_the_placed_face(photo: np.ndarray) -> None:
    frames, boxes = scene(photo, 30)
    crops, report = crop_faces(frames, HaarFaceDetector(), size=64, every=5)
    assert crops.shape == (30, 3, 64, 64) and crops.dtype == np.uint8
    assert report.detect_frames == 7 and report.detected >= 5
    assert all(contains(report.boxes[i], boxes[i]) for i in range(30))
    # the crop is tight around the face: not the whole frame
    assert np.all(report.boxes[:, 2] < 2.0 * boxes[:, 2])
    # and it shows the photo's face: skin-toned centre, unlike the grey background
    centre = crops[:, :, 24:40, 24:40].astype(int)
    assert (centre[:, 0] - centre[:, 2]).mean() > 20  # red > blue on skin


def test_frames_without_a_detection_are_counted(photo: np.ndarray) -> None:
    frames, boxes = scene(photo, 30, blank=(10, 11, 12))
    _, report = crop_faces(frames, HaarFaceDetector(), size=64, every=5)
    # frame 10 is a detection frame with no face: frames 8..12 depend on it
    assert report.fallback_frames >= 5
    assert report.detected < report.detect_frames
    visible = [i for i in range(30) if i not in (10, 11, 12)]
    assert all(contains(report.boxes[i], boxes[i]) for i in visible)


def test_no_face_at_all_raises(photo: np.ndarray) -> None:
    frames, _ = scene(photo, 10, blank=tuple(range(10)))
    with pytest.raises(BadMediaError) as info:
        crop_faces(frames, HaarFaceDetector(), size=64, every=5, source="kodf/x.mp4")
    assert info.value.kind == "no-face" and "kodf/x.mp4" in str(info.value)
    assert "no face" in info.value.reason


def test_pick_face_prefers_large_central_faces() -> None:
    boxes = [(0, 0, 60, 60, 5.0), (300, 150, 50, 50, 5.0), (600, 300, 10, 10, 9.0)]
    cx, cy, side = pick_face(boxes, 640, 360)
    assert (cx, cy, side) == (325.0, 175.0, 50.0)
    assert pick_face([], 640, 360) is None


def test_crop_pads_at_the_border() -> None:
    class Corner:
        key = "corner"

        def detect(self, frame):
            return [(0.0, 0.0, 40.0, 40.0, 1.0)]

    frames = np.full((3, 30, 50, 3), 200, np.uint8)
    crops, report = crop_faces(frames, Corner(), size=16, every=1, margin=0.3)
    assert crops.shape == (3, 3, 16, 16) and report.detector == "corner"
    assert crops.min() == 0  # the 52-pixel square is larger than the 30-pixel frame: padded


def test_detector_pickles(photo: np.ndarray) -> None:
    det = HaarFaceDetector()
    frames, _ = scene(photo, 1)
    assert det.detect(frames[0])
    clone = pickle.loads(pickle.dumps(det))
    assert clone.key == det.key and clone.detect(frames[0])


def test_decode_with_face_crop(photo: np.ndarray, tmp_path: Path) -> None:
    frames, _ = scene(photo, 25)
    path = write_av(tmp_path / "full.mp4", frames, np.zeros(16000, np.float32))
    pipe = Pipeline(size=48, face_crop=True)
    clip = decode(path, pipe)
    assert clip.frames.shape == (25, 3, 48, 48) and len(clip.audio) == 25 * 640
    assert clip.source_width == 640 and 0 <= clip.face_fallback_frames < 25
    centre = clip.frames[:, :, 18:30, 18:30].astype(int)
    assert (centre[:, 0] - centre[:, 2]).mean() > 20

    # prepare() records the fallback count and reports a video without a face
    empty, _ = scene(photo, 25, blank=tuple(range(25)))
    no_face = write_av(tmp_path / "noface.mp4", empty, np.zeros(16000, np.float32))
    res = prepare(
        [("full", path), ("empty", no_face)], pipe, PreparedCache(tmp_path / "c"), progress=False
    )
    assert res.entries["full"].face_fallback_frames == clip.face_fallback_frames
    assert [(p.id, p.kind) for p in res.problems] == [("empty", "no-face")]
