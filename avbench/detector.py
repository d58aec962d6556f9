"""The detector contract (no torch here: the CLI imports this module to describe detectors).

A detector declares what it reads (:class:`InputSpec`), has a config dataclass with defaults
(overridden on the command line with ``--set key=value``), learns in :meth:`Detector.fit` from
the train and validation splits only, and scores batches of segments in
:meth:`Detector.predict`. Scores are P(fake) in [0, 1]: ``score`` for the video, optionally
``score_v`` (visual stream) and ``score_a`` (audio stream).

Torch models should subclass :class:`avbench.torch_detector.TorchDetector` instead, which
leaves the training loop to the engine.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from avbench.errors import DetectorOutputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from rich.console import Console

    from avbench.records import VideoRecord

SCORE_KEYS = ("score", "score_v", "score_a")
MODALITIES = ("video", "audio")


def samples_per_frame(sample_rate: int, fps: int) -> int:
    """Audio samples per video frame (640 at 16 kHz and 25 fps). Every InputSpec, media
    pipeline, decoded clip and cached video keeps ``sample_rate`` a multiple of ``fps``, so
    this is exact; they all take it from here."""
    return sample_rate // fps


@dataclass(frozen=True)
class InputSpec:
    """What a detector reads from each segment.

    The media layer resamples video to ``fps`` and audio to ``sample_rate`` (mono), so that a
    segment of ``frames`` frames comes with exactly ``frames * sample_rate / fps`` samples
    (640 per frame at the defaults). Frames reach the detector as uint8 RGB of shape
    (frames, 3, size, size); detectors normalise them themselves.
    """

    frames: int = 16
    size: int = 224
    fps: int = 25
    sample_rate: int = 16000
    modalities: tuple[str, ...] = MODALITIES

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(
                f"sample_rate {self.sample_rate} is not a multiple of fps {self.fps}: "
                "audio and video could not stay aligned sample-exactly"
            )
        if self.frames < 1 or self.size < 8:
            raise ValueError(f"bad InputSpec: frames={self.frames}, size={self.size}")
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(f"bad modalities {self.modalities!r}; use a subset of {MODALITIES}")

    @property
    def samples_per_frame(self) -> int:
        return samples_per_frame(self.sample_rate, self.fps)

    @property
    def samples(self) -> int:
        """Audio samples per segment."""
        return self.frames * self.samples_per_frame

    @property
    def reads_video(self) -> bool:
        return "video" in self.modalities

    @property
    def reads_audio(self) -> bool:
        return "audio" in self.modalities


@dataclass
class SegmentBatch:
    """A batch of segments as numpy arrays (torch detectors get tensors from the engine).

    ``video`` is uint8 (B, T, 3, H, W) and ``audio`` float32 (B, S) in [-1, 1]; either is None
    when the detector's InputSpec does not read that modality.
    """

    video_index: np.ndarray
    ids: list[str]
    start: np.ndarray
    label: np.ndarray
    label_v: np.ndarray
    label_a: np.ndarray
    video: np.ndarray | None = None
    audio: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


class VideoSetLike(Protocol):
    """What ``fit`` receives for train and val (implemented by avbench.media.videoset.VideoSet)."""

    records: list[VideoRecord]
    spec: InputSpec

    def __len__(self) -> int: ...

    def iter_batches(self, batch_size: int) -> Iterator[SegmentBatch]:
        """Every non-overlapping segment of every video, in order."""
        ...

    def random_segments(self, indices: Any, rng: np.random.Generator) -> SegmentBatch:
        """One random segment of each video in ``indices``."""
        ...


@dataclass
class RunContext:
    """What a run hands to a detector besides the data."""

    seed: int = 0
    device: str = "cpu"
    run_dir: Path | None = None
    resume: bool = False
    quiet: bool = False
    console: Console | None = None
    rank: int = 0
    world_size: int = 1
    balance: str = "none"
    log_path: Path | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, msg: str) -> None:
        """A plain line (kept in quiet mode, which only drops the progress bars)."""
        if not self.is_main:
            return
        if self.console is not None:
            self.console.print(msg)


@dataclass
class FitInfo:
    """What ``fit`` reports: which checkpoint the state is (``last``, ``best-val``, ``none``)."""

    checkpoint: str = "none"
    epoch: int | None = None
    selection: str = ""
    val_metrics: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DetectorConfig:
    """Base of detector configs; subclasses add typed fields with defaults."""


class Detector(ABC):
    """Base class of every detector.

    Subclasses set ``Config`` to a dataclass (defaults = the method's published settings),
    return their :class:`InputSpec`, and implement :meth:`predict`; :meth:`fit` defaults to a
    no-op for training-free detectors.

    Optional: ``frame_features(batch, ctx) -> (video_feats, audio_feats)``, the detector's
    aligned per-frame visual and audio features of each segment of a :class:`SegmentBatch`,
    two arrays (B, T, D) of the same shape; ``avbench figure av-distance`` and the report's
    Fig. 3 compare them by cosine distance (docs/writing-plugins.md). Not defined here: a
    detector without it is told so in one line. Raise ``ValueError`` when a configuration
    has no such features.
    """

    Config: ClassVar[type] = DetectorConfig
    #: True when fit learns something; False for training-free detectors.
    trainable: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.name = type(self).__name__

    def input_spec(self) -> InputSpec:
        return InputSpec()

    def fit(self, train: VideoSetLike, val: VideoSetLike, ctx: RunContext) -> FitInfo:
        """Learn from train, select on val. Never receives test data (the engine checks)."""
        return FitInfo(checkpoint="none", selection="training-free")

    @abstractmethod
    def predict(self, batch: SegmentBatch, ctx: RunContext) -> dict[str, np.ndarray]:
        """Scores P(fake) for each segment: ``{"score": (B,), ...}``."""

    def evaluate(self, data: VideoSetLike, ctx: RunContext) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Score every segment of ``data``: (video_index per segment, scores per segment).

        The engine averages segment scores per video. Torch detectors override this with a
        batched DataLoader path.
        """
        import numpy as np

        batch_size = int(getattr(self.config, "eval_batch_size", 32) or 32)
        index: list[np.ndarray] = []
        scores: dict[str, list[np.ndarray]] = {}
        for batch in data.iter_batches(batch_size):
            out = self.predict(batch, ctx)
            check_scores(out, len(batch), self, ids=batch.ids)
            index.append(batch.video_index)
            for k, v in out.items():
                scores.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        if not index:
            return np.zeros(0, dtype=np.int64), {"score": np.zeros(0)}
        return np.concatenate(index), {k: np.concatenate(v) for k, v in scores.items()}

    def state_dict(self) -> dict[str, Any]:
        """Learned state: arrays or numbers only (saved without pickle)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} holds no state but got {sorted(state)}")

    def describe(self) -> dict[str, Any]:
        """Facts shown by ``avbench detectors show`` (e.g. parameter counts)."""
        return {}


def detector_label(det: Any) -> str:
    """``detector 'NAME' (plugin 'PLUGIN')`` for messages: the registered name (the class
    name for a detector built by hand) and the plugin that registered it, where known."""
    name = getattr(det, "name", None) or type(det).__name__
    label = f"detector {name!r}"
    try:
        from avbench.plugins import get_plugins

        info = get_plugins().detectors.get(name)
    except Exception:  # the plugin's name is a detail of the message: go on without
        info = None
    if info is not None and info.plugin:
        label += f" (plugin {info.plugin!r})"
    return label


def check_scores(out: dict[str, Any], n: int, who: Any, *, method: str = "predict",
                 ids: Sequence[str] | None = None) -> None:
    """Validate a detector's output: known keys, right length, finite values in [0, 1].

    ``who`` is the detector (named as :func:`detector_label` does, only when the output is
    bad) or a name, ``method`` the method the engine called (``scores`` for torch detectors,
    ``predict`` for the others) and ``ids`` the video of each row, for the message. Raises
    :class:`~avbench.errors.DetectorOutputError`.
    """
    import numpy as np

    def fail(what: str) -> DetectorOutputError:
        label = who if isinstance(who, str) else detector_label(who)
        return DetectorOutputError(f"{label}: {method}() returned {what}")

    if not isinstance(out, Mapping) or "score" not in out:
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise fail(f"no 'score' (got {got})")
    for k, v in out.items():
        if k not in SCORE_KEYS:
            raise fail(f"unknown key {k!r}; allowed: {', '.join(SCORE_KEYS)}")
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise fail(f"{k} that is not an array of numbers ({type(v).__name__})") from None
        if a.shape != (n,):
            raise fail(f"{k} of shape {a.shape}, expected ({n},): one per segment")
        bad = np.flatnonzero(~(np.isfinite(a) & (a >= 0) & (a <= 1)))
        if bad.size:
            j = int(bad[0])
            video = f" for video {ids[j]}" if ids is not None and j < len(ids) else ""
            more = f" (and {bad.size - 1} more in this batch)" if bad.size > 1 else ""
            raise fail(f"{k} {a[j]:.6g}{video}{more}; scores must be probabilities "
                       f"in [0, 1] (apply a sigmoid)")
