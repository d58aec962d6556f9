"""Face detection and cropping on real photographs (scikit-image's bundled ones) placed in
frames of KoDF-like sizes, and the no-face reporting of prepare, data check and run.json."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from avbench.datasets.synth.writer import write_av
from avbench.errors import BadMediaError, ConfigError
from avbench.media.cache import PreparedCache, faces_entry, prepare
from avbench.media.decode import Pipeline, decode
from avbench.media.face import (
    DEFAULT_MIN_FACE_SHARE,
    MtcnnFaceDetector,
    crop_faces,
    default_face_detector,
    face_summary,
    min_face_share,
    pick_face,
)
from avbench.testing import run_cli

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("facenet_pytorch")

# faces annotated by eye (cheek to cheek, brows to chin), x, y, w, h in the 512 x 512 photos
ASTRONAUT_FACE = np.array([178.0, 62.0, 92.0, 110.0])  # Eileen Collins, frontal
CAMERA_FACE = np.array([198.0, 118.0, 58.0, 74.0])  # the cameraman, turned to the side
PHOTO_SIDE = 256  # the photo is pasted at half size into the moving scene


@pytest.fixture(scope="module")
def mtcnn() -> MtcnnFaceDetector:
    return MtcnnFaceDetector()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = skimage_data.astronaut()
    return cv2.resize(img, (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_AREA)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def pasted(img: np.ndarray, scale: float, height: int, width: int) -> tuple[np.ndarray, float, float]:
    """``img`` scaled by ``scale`` on a grey gradient frame; returns (frame, x0, y0)."""
    side = round(img.shape[0] * scale)
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else
                       cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = (60 + 60 * xx / width + 40 * yy / height).astype(np.uint8)[..., None].repeat(3, 2)
    x0, y0 = (width - side) // 3, (height - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = small
    return frame, float(x0), float(y0)


def best(boxes: list) -> np.ndarray:
    return np.array(max(boxes, key=lambda b: b[2] * b[3])[:4])


@pytest.mark.parametrize(("scale", "height", "width"),
                         [(0.5, 360, 640), (1.0, 720, 1280), (2.0, 1080, 1920)])
def test_mtcnn_finds_the_face_at_several_scales(mtcnn, scale, height, width) -> None:
    frame, x0, y0 = pasted(skimage_data.astronaut(), scale, height, width)
    found = mtcnn.detect(frame)
    assert len(found) == 1, found
    truth = np.array([x0, y0, 0, 0]) + ASTRONAUT_FACE * scale
    assert iou(best(found), truth) > 0.7
    assert found[0][4] > 0.99  # the face probability


def test_mtcnn_finds_a_turned_face(mtcnn) -> None:
    camera = np.repeat(skimage_data.camera()[..., None], 3, axis=2)
    found = mtcnn.detect(camera)
    assert found and iou(best(found), CAMERA_FACE) > 0.6


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "noise"])
def test_mtcnn_finds_nothing_where_there_is_no_face(mtcnn, name) -> None:
    if name == "noise":
        img = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    else:
        img = getattr(skimage_data, name)()  # a cup of coffee, a cat, a rocket
    assert mtcnn.detect(img) == []


def test_detection_is_deterministic_and_leaves_torch_threads_alone(mtcnn) -> None:
    import torch

    frame, _, _ = pasted(skimage_data.astronaut(), 1.0, 720, 1280)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = mtcnn.detect(frame)
        assert torch.get_num_threads() == 2
        again = pickle.loads(pickle.dumps(mtcnn)).detect(frame)  # a worker's fresh copy
    finally:
        torch.set_num_threads(before)
    assert first == again


def test_detector_keys_name_the_package_and_settings() -> None:
    from importlib.metadata import version

    key = MtcnnFaceDetector().key
    # prepared caches are keyed by this exact string: changing it re-prepares every KoDF video
    settings = "w480/mf20/ms0.9/t0.6,0.7,0.7/f0.709"
    assert key == f"mtcnn-facenet-pytorch-{version('facenet-pytorch')}/{settings}"
    assert key.startswith("mtcnn-facenet-pytorch-2.5.")
    assert MtcnnFaceDetector(min_score=0.8).key != key


def scene(photo: np.ndarray, n: int, *, blank: tuple[int, ...] = ()
          ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 640x360 frames with the photo drifting right and bobbing; frames in ``blank``
    hide it. Returns (frames, face boxes (n, 4) x, y, w, h in frame pixels)."""
    yy, xx = np.mgrid[0:360, 0:640]
    background = (70 + 0.08 * xx + 0.05 * yy).astype(np.uint8)[..., None].repeat(3, axis=2)
    frames = np.empty((n, 360, 640, 3), np.uint8)
    boxes = np.empty((n, 4))
    face = ASTRONAUT_FACE * PHOTO_SIDE / 512
    for i in range(n):
        ox, oy = 150 + i, 40 + round(8 * np.sin(i / 6))
        frames[i] = background
        if i not in blank:
            frames[i, oy : oy + PHOTO_SIDE, ox : ox + PHOTO_SIDE] = photo
        boxes[i] = (ox + face[0], oy + face[1], face[2], face[3])
    return frames, boxes


def contains(crop_box: np.ndarray, face: np.ndarray, slack: float = 1.0) -> bool:
    """The square crop holds the face box (to ``slack`` pixels: the smoothed box lags the
    scene's bobbing a little)."""
    cx, cy, side = crop_box
    half = side / 2 + slack
    x, y, w, h = face
    return cx - half <= x and cy - half <= y and x + w <= cx + half and y + h <= cy + half


def test_crop_is_a_square_around_the_moving_face(photo, mtcnn) -> None:
    frames, boxes = scene(photo, 30)
    crops, report = crop_faces(frames, mtcnn, size=64, every=5)
    assert crops.shape == (30, 3, 64, 64) and crops.dtype == np.uint8
    assert (report.detect_frames, report.detected, report.share) == (7, 7, 1.0)
    assert report.detector == mtcnn.key and report.fallback_frames == 0
    assert all(contains(report.boxes[i], boxes[i]) for i in range(30))
    # 1.3 x the face box's longer side: tight around the face, not the whole frame
    assert np.all(report.boxes[:, 2] < 1.6 * boxes[:, 3])
    # the box follows the drift (one pixel a frame to the right)
    assert 20 < report.boxes[-1, 0] - report.boxes[0, 0] < 40
    centre = crops[:, :, 24:40, 24:40].astype(int)
    assert (centre[:, 0] - centre[:, 2]).mean() > 20  # skin: red above blue


def test_frames_without_a_detection_are_counted(photo, mtcnn) -> None:
    frames, boxes = scene(photo, 30, blank=(10, 11, 12))
    _, report = crop_faces(frames, mtcnn, size=64, every=5)
    # frame 10 is a detection frame with no face: frames 8..12 take their box from others
    assert report.fallback_frames == 5
    assert (report.detected, report.detect_frames) == (6, 7)
    visible = [i for i in range(30) if i not in (10, 11, 12)]
    assert all(contains(report.boxes[i], boxes[i]) for i in visible)


def test_no_face_at_all_raises(photo, mtcnn) -> None:
    frames, _ = scene(photo, 10, blank=tuple(range(10)))
    with pytest.raises(BadMediaError) as info:
        crop_faces(frames, mtcnn, size=64, every=5, source="kodf/x.mp4")
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


def test_one_wild_look_is_smoothed_away_and_a_tie_goes_to_the_earlier_look() -> None:
    class Jumpy:  # no face on frame 0, a face far to the right on frame 4
        key = "jumpy"

        def detect(self, frame):
            i = int(frame[0, 0, 0])
            return [] if i == 0 else [(280.0 if i == 4 else 100.0, 50.0, 40.0, 40.0, 1.0)]

    frames = np.zeros((9, 200, 400, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(9)
    _, report = crop_faces(frames, Jumpy(), size=16, every=2, smooth=3)
    assert (report.detect_frames, report.detected) == (5, 4)  # frames 0, 2, 4, 6, 8
    assert np.all(report.boxes[:, 0] == 120.0)  # the median of 3 looks drops the jump
    assert np.allclose(report.boxes[:, 2], 52.0)
    # frame 1 is as near to frame 0 (no face) as to frame 2: it counts with frame 0
    assert report.fallback_frames == 2


# -- settings ---------------------------------------------------------------------------------


def test_the_default_detector_and_the_minimum_share_from_the_environment() -> None:
    assert isinstance(default_face_detector(), MtcnnFaceDetector)
    assert min_face_share({}) == DEFAULT_MIN_FACE_SHARE == 0.5
    assert min_face_share({"AVBENCH_MIN_FACE_SHARE": " 0.8 "}) == 0.8
    for bad in ("half", "1.5", "-0.1", "nan"):
        with pytest.raises(ConfigError, match=r"AVBENCH_MIN_FACE_SHARE=.*between 0 and 1"):
            min_face_share({"AVBENCH_MIN_FACE_SHARE": bad})


def test_face_summary_counts_and_lists_the_worst() -> None:
    shares = {"c": 1.0, "a": 0.25, "b": 0.25, "d": 0.0, "e": 0.75}
    s = face_summary(shares, threshold=0.5, detector="det", worst=3)
    assert s["videos"] == 5 and s["mean_share"] == 0.45 and s["median_share"] == 0.25
    assert (s["no_face"], s["without_any_face"]) == (3, 1)
    assert [w["id"] for w in s["worst"]] == ["d", "a", "b"]
    # threshold 0 still counts the video without any face as no-face
    assert face_summary(shares, threshold=0.0, detector="det")["no_face"] == 1


# -- the media pipeline -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(photo, tmp_path_factory) -> dict[str, Path]:
    """Full-frame clips: a face throughout, a face in the first 6 of 25 frames, none."""
    root = tmp_path_factory.mktemp("face-clips")
    silence = np.zeros(16000, np.float32)
    full, _ = scene(photo, 25)
    brief, _ = scene(photo, 25, blank=tuple(range(6, 25)))
    empty, _ = scene(photo, 25, blank=tuple(range(25)))
    return {name: write_av(root / f"{name}.mp4", frames, silence)
            for name, frames in (("full", full), ("brief", brief), ("empty", empty))}


def test_decode_crops_with_the_default_detector(clips) -> None:
    clip = decode(clips["full"], Pipeline(size=48, face_crop=True))
    assert clip.frames.shape == (25, 3, 48, 48) and len(clip.audio) == 25 * 640
    assert clip.source_width == 640 and (clip.face_found, clip.face_searched) == (4, 4)
    centre = clip.frames[:, :, 18:30, 18:30].astype(int)
    assert (centre[:, 0] - centre[:, 2]).mean() > 20
    brief = decode(clips["brief"], Pipeline(size=48, face_crop=True))
    assert (brief.face_found, brief.face_searched) == (1, 4)  # frames 0, 10, 20, 24 searched


@pytest.mark.slow
def test_a_face_crop_is_the_same_in_a_fresh_process(clips) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    pipe = Pipeline(size=48, face_crop=True)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the crop must not depend on the threads torch may use
    try:
        here = decode(clips["full"], pipe)
    finally:
        torch.set_num_threads(before)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(decode, clips["full"], pipe).result()
    assert np.array_equal(here.frames, there.frames)


def test_prepare_reports_videos_with_too_few_faces(clips, tmp_path) -> None:
    pipe = Pipeline(size=48, face_crop=True)
    cache = PreparedCache(tmp_path / "c")
    items = [(name, path) for name, path in clips.items()]
    res = prepare(items, pipe, cache, progress=False)
    assert list(res.entries) == ["full"]
    assert res.entries["full"].face_share == 1.0
    assert [(p.id, p.kind) for p in res.problems] == [("brief", "no-face"), ("empty", "no-face")]
    assert "a face in 1 of the 4 frames searched (25%), under the minimum share 0.5" in \
        res.problems[0].reason
    assert res.face_shares == {"full": 1.0, "brief": 0.25, "empty": 0.0}
    assert res.min_face_share == 0.5 and res.face_detector == MtcnnFaceDetector().key
    # a lower share takes the brief one in, from the cache: nothing is decoded again
    again = prepare(items, pipe, cache, progress=False, min_face_share=0.2)
    assert list(again.entries) == ["full", "brief"] and again.n_decoded == 0
    assert [(p.id, p.kind) for p in again.problems] == [("empty", "no-face")]
    # the face counts travel with the entry
    loaded = cache.load(again.entries["brief"])
    assert (loaded.face_found, loaded.face_searched) == (1, 4)

    block = faces_entry([("kodf", res), ("kodf", again), ("fakeavceleb", _uncropped(tmp_path))])
    assert list(block["faces"]) == ["kodf"]
    kodf = block["faces"]["kodf"]
    assert kodf["videos"] == 3 and kodf["no_face"] == 2 and kodf["worst"][0]["id"] == "empty"
    json.dumps(block)  # run.json material


def _uncropped(tmp_path: Path):
    frames = np.random.default_rng(0).integers(0, 255, (25, 32, 32, 3), dtype=np.uint8)
    path = write_av(tmp_path / "crop.mp4", frames, np.zeros(16000, np.float32))
    return prepare([("x", path)], Pipeline(size=32), PreparedCache(tmp_path / "u"),
                   progress=False)


def test_face_crops_stay_off_for_already_cropped_sources(tmp_path) -> None:
    from avbench.datasets.fakeavceleb import FakeAVCelebAdapter
    from avbench.datasets.kodf import KoDFAdapter

    assert FakeAVCelebAdapter.face_crop is False and KoDFAdapter.face_crop is True

    class Explodes:
        key = "explodes"

        def detect(self, frame):
            raise AssertionError("a face detector ran on an uncropped pipeline")

    frames = np.random.default_rng(0).integers(0, 255, (25, 32, 32, 3), dtype=np.uint8)
    path = write_av(tmp_path / "crop.mp4", frames, np.zeros(16000, np.float32))
    res = prepare([("x", path)], Pipeline(size=32), PreparedCache(tmp_path / "c"),
                  progress=False, face_detector=Explodes())
    assert list(res.entries) == ["x"] and res.face_shares == {} and res.face_detector is None
    assert faces_entry([("fakeavceleb", res)]) == {}


def test_the_cache_key_follows_the_detector(clips, tmp_path) -> None:
    cache = PreparedCache(tmp_path / "c")
    pipe = Pipeline(size=48, face_crop=True)
    keys = {cache.key_for(clips["full"], pipe, face_detector=d)
            for d in (None, MtcnnFaceDetector(), MtcnnFaceDetector(detect_width=640),
                      MtcnnFaceDetector(min_score=0.8))}
    assert len(keys) == 3  # None is the default, MTCNN at 480 px


def _kodf_tree(root: Path, clips: dict[str, Path]) -> Path:
    places = {"full": "original_videos/p1/p1_000.mp4",
              "brief": "synthesized_videos/audio-driven/p1/p1_p1_7_000.mp4",
              "empty": "original_videos/p2/p2_000.mp4"}
    for name, rel in places.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(clips[name].read_bytes())
    return root


def test_data_check_reports_the_face_share(clips, tmp_path) -> None:
    root = _kodf_tree(tmp_path / "kodf", clips)
    r = run_cli(["data", "check", "--data", f"kodf={root}"])
    assert r.exit_code == 1, r.output
    out = " ".join(r.stdout.split())
    assert "2 of 3 file(s) cannot be decoded or show too few faces (no-face: 2)" in out
    assert "synthesized_videos/audio-driven/p1/p1_p1_7_000.mp4: no-face: a face in 1 of" in out
    assert "original_videos/p2/p2_000.mp4: no-face: no face found" in out
    assert "over 3 video(s) a face in 41.7% of the searched frames on average" in out
    assert "2 under the minimum share 0.5 are no-face (1 without any face)" in out
    assert "fewest faces" in out and "25.0%" in out
    # the threshold is the user's: 0.2 takes the brief video in
    r = run_cli(["data", "check", "--data", f"kodf={root}"], env={"AVBENCH_MIN_FACE_SHARE": "0.2"})
    assert "1 of 3 file(s)" in r.stdout and "1 under the minimum share 0.2" in r.stdout
    r = run_cli(["data", "check", "--data", f"kodf={root}"], env={"AVBENCH_MIN_FACE_SHARE": "x"})
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert "AVBENCH_MIN_FACE_SHARE='x': give a share between 0 and 1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_cross_dataset_run_on_the_synthetic_sets_records_faces(synthetic_root,
                                                                 synthetic_kodf_root, tmp_path):
    plugins = Path(__file__).parent / "plugins"
    r = run_cli(["--plugins-dir", str(plugins), "run", "--detector", "tinydet", "--protocol",
                 "cross-dataset", "--data", f"fakeavceleb={synthetic_root}", "--data",
                 f"kodf={synthetic_kodf_root}", "--out", str(tmp_path), "--quiet",
                 "--set", "epochs=1"])
    assert r.exit_code == 0, r.output
    (run_json,) = tmp_path.rglob("run.json")
    info = json.loads(run_json.read_text())
    faces = info["media"]["faces"]
    assert list(faces) == ["kodf"]  # FakeAVCeleb's clips are crops already: not searched
    kodf = faces["kodf"]
    assert kodf["detector"] == MtcnnFaceDetector().key and kodf["min_share"] == 0.5
    assert kodf["videos"] == info["splits"]["test"]["n"] == 24
    assert kodf["no_face"] == 0 and kodf["mean_share"] > 0.95
    assert info["skipped_media"]["count"] == 0
