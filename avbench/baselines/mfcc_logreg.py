"""``mfcc-logreg``: an audio-only baseline, MFCC statistics + logistic regression.

Features. Each segment's 16 kHz audio goes through ``torchaudio.transforms.MFCC``
(``n_mfcc`` coefficients from ``n_mels`` mel bands, 25 ms windows every 10 ms by default).
The segment is described by the mean and the standard deviation over time of every
coefficient and, with ``deltas=True``, the standard deviation of every coefficient's delta
(its local slope; the mean of a delta is close to 0 and carries little): 3 x 20 = 60 numbers
by default. Means capture the spectral envelope (timbre, channel, spectral tilt), standard
deviations how much it varies, deltas how fast.

Classifier. A ``StandardScaler`` fitted on the training features, then scikit-learn's
``LogisticRegression`` with ``class_weight="balanced"`` (FakeAVCeleb has far more fakes than
reals). Two heads share the features and the scaler:

- ``score``: trained on the video label (``label``: anything fake);
- ``score_a``: trained on the audio label (``label_a``: the audio stream is fake).

Both are P(fake) from the audio alone; ``score`` can only find fakes whose audio betrays
them, so expect it near chance on fakes with real audio (FakeVideo-RealAudio).

Training data. By default every non-overlapping segment of every training video
(``train_segments=0``): the features are cheap, and all segments are used deterministically.
``train_segments=N`` instead draws N random segments per training video (seeded by the run's
seed), which bounds the cost on long videos.

Model selection uses the validation split only. For each head, the inverse regularisation
strength C is chosen from ``c_grid`` by the video-level validation AUC (a video's score is the
mean of its segments' P(fake), as in evaluation; AUC against ``label`` for ``score`` and
``label_a`` for ``score_a``); ties go to the smaller C (the stronger regularisation). Each
head keeps its model fitted on the training split with the chosen C (``checkpoint =
"best-val"``). Where the validation split has only one class for a head's label, AUC is
undefined and the head uses ``c_default`` (the FitInfo says so). A head whose label has only
one class in the training split cannot be trained: ``score`` is then an error, ``score_a`` is
left out of the outputs (and the FitInfo says why).

State. ``state_dict()`` holds numpy arrays only: the scaler's mean and scale and, per head,
the coefficients, intercept and C. Predictions are computed from these arrays with numpy
(``P = sigmoid(((x - mean) / scale) @ coef + intercept)``, what ``predict_proba`` computes), so
a loaded state predicts exactly what the fitted one did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from avbench.config import bounded
from avbench.detector import (
    Detector,
    DetectorConfig,
    FitInfo,
    InputSpec,
    RunContext,
    SegmentBatch,
    VideoSetLike,
)
from avbench.errors import TrainingError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

HEADS = (("score", "label"), ("score_a", "label_a"))


@dataclass
class MfccLogRegConfig(DetectorConfig):
    """Settings of ``mfcc-logreg`` (``--set key=value``)."""

    #: frames per segment (25 fps, 640 audio samples each); 16 = 0.64 s, the protocol's segment
    frames: int = bounded(16, ge=1)
    #: MFCC coefficients
    n_mfcc: int = bounded(20, ge=1)
    #: mel bands the MFCCs are computed from
    n_mels: int = bounded(40, ge=1)
    #: STFT window in samples (400 = 25 ms at 16 kHz)
    n_fft: int = bounded(400, ge=16)
    #: STFT hop in samples (160 = 10 ms at 16 kHz)
    hop_length: int = bounded(160, ge=1)
    #: add the standard deviation of each coefficient's delta to the features
    deltas: bool = True
    #: candidate C values (inverse L2 strength), chosen by validation AUC
    c_grid: tuple[float, ...] = bounded((0.001, 0.01, 0.1, 1.0, 10.0), gt=0)
    #: C used when the validation split cannot rank (one class only, or empty)
    c_default: float = bounded(1.0, gt=0)
    #: training segments per video: 0 = every non-overlapping segment, N = N random ones
    train_segments: int = bounded(0, ge=0, note="0: every segment")
    #: iteration cap of the lbfgs solver
    max_iter: int = bounded(2000, ge=1)
    #: segments per batch for feature extraction (training and evaluation)
    eval_batch_size: int = bounded(64, ge=1)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError("frames must be >= 1")
        if self.n_mfcc < 1 or self.n_mels < self.n_mfcc:
            raise ValueError("need 1 <= n_mfcc <= n_mels")
        if self.n_fft < 16 or self.hop_length < 1:
            raise ValueError("n_fft must be >= 16 and hop_length >= 1")
        if not self.c_grid or any(c <= 0 for c in self.c_grid) or self.c_default <= 0:
            raise ValueError("c_grid must be non-empty and every C (and c_default) > 0")
        if self.train_segments < 0:
            raise ValueError("train_segments must be >= 0 (0 = every segment)")
        if self.max_iter < 1 or self.eval_batch_size < 1:
            raise ValueError("max_iter and eval_batch_size must be >= 1")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


def _video_means(index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per video: (video indices present, their means)."""
    import numpy as np

    vids, inverse = np.unique(index, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(vids))
    counts = np.bincount(inverse, minlength=len(vids))
    return vids, sums / counts


class MfccLogRegDetector(Detector):
    """Audio-only: MFCC mean/std (+ delta std) per segment, standardised, logistic regression.

    See the module docstring for the features, the two heads, the training data and the
    model selection on the validation split.
    """

    Config: ClassVar[type] = MfccLogRegConfig
    trainable: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._mfcc: Any = None
        self._state: dict[str, np.ndarray] = {}

    def input_spec(self) -> InputSpec:
        return InputSpec(frames=self.config.frames, modalities=("audio",))

    # -- features -------------------------------------------------------------------------

    @property
    def feature_dim(self) -> int:
        return self.config.n_mfcc * (3 if self.config.deltas else 2)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """MFCC statistics of (B, S) float32 audio -> (B, feature_dim) float64."""
        import numpy as np
        import torch

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ValueError(f"audio must be (B, S), got {audio.shape}")
        if len(audio) == 0:
            return np.zeros((0, self.feature_dim))
        c = self.config
        if self._mfcc is None:
            import torchaudio

            self._mfcc = torchaudio.transforms.MFCC(
                sample_rate=self.input_spec().sample_rate,
                n_mfcc=c.n_mfcc,
                melkwargs={"n_fft": c.n_fft, "hop_length": c.hop_length, "n_mels": c.n_mels},
            )
        with torch.no_grad():
            m = self._mfcc(torch.from_numpy(audio))  # (B, n_mfcc, time)
            parts = [m.mean(dim=2), m.std(dim=2, unbiased=False)]
            if c.deltas:
                import torchaudio

                d = torchaudio.functional.compute_deltas(m)
                parts.append(d.std(dim=2, unbiased=False))
            feats = torch.cat(parts, dim=1)
        return feats.double().numpy()

    def _collect(
        self, data: VideoSetLike, segments: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Features, video index and labels of ``data``'s segments (all, or N random each)."""
        import numpy as np

        feats: list[np.ndarray] = []
        index: list[np.ndarray] = []
        labels: dict[str, list[np.ndarray]] = {key: [] for _, key in HEADS}
        bs = self.config.eval_batch_size

        def add(batch: SegmentBatch) -> None:
            if batch.audio is None:
                raise ValueError("mfcc-logreg got a batch without audio")
            feats.append(self.features(batch.audio))
            index.append(np.asarray(batch.video_index, dtype=np.int64))
            for _, key in HEADS:
                labels[key].append(np.asarray(getattr(batch, key), dtype=np.int64))

        if segments == 0:
            for batch in data.iter_batches(bs):
                add(batch)
        else:
            n = len(data)
            for _ in range(segments):
                for lo in range(0, n, bs):
                    add(data.random_segments(np.arange(lo, min(lo + bs, n)), rng))
        if not feats:
            return (np.zeros((0, self.feature_dim)), np.zeros(0, dtype=np.int64),
                    {key: np.zeros(0, dtype=np.int64) for _, key in HEADS})
        return (np.concatenate(feats), np.concatenate(index),
                {k: np.concatenate(v) for k, v in labels.items()})

    # -- the model ------------------------------------------------------------------------

    def _proba(self, feats: np.ndarray, head: str) -> np.ndarray:
        z = (feats - self._state["scaler_mean"]) / self._state["scaler_scale"]
        return _sigmoid(z @ self._state[f"{head}_coef"] + self._state[f"{head}_intercept"][0])

    def fit(self, train: VideoSetLike, val: VideoSetLike, ctx: RunContext) -> FitInfo:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.preprocessing import StandardScaler

        c = self.config
        rng = np.random.default_rng(ctx.seed)
        ctx.log(f"mfcc-logreg: features of {len(train)} training videos")
        x_tr, _, y_tr = self._collect(train, c.train_segments, rng)
        if len(x_tr) == 0:
            raise TrainingError("mfcc-logreg: the training split has no segments")
        ctx.log(f"mfcc-logreg: features of {len(val)} validation videos")
        x_va, i_va, y_va = self._collect(val, 0, rng)

        scaler = StandardScaler().fit(x_tr)
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        state: dict[str, np.ndarray] = {
            "scaler_mean": scaler.mean_.astype(np.float64),
            "scaler_scale": scale.astype(np.float64),
        }
        z_tr = (x_tr - state["scaler_mean"]) / state["scaler_scale"]
        z_va = (x_va - state["scaler_mean"]) / state["scaler_scale"]

        selection: list[str] = []
        val_metrics: dict[str, Any] = {}
        notes: dict[str, Any] = {"train_segments": len(x_tr), "val_segments": len(x_va),
                                 "feature_dim": self.feature_dim, "grid": {}}
        any_selected = False
        for head, key in HEADS:
            y = y_tr[key]
            if len(np.unique(y)) < 2:
                msg = f"{head}: '{key}' has one class in the training split; head not trained"
                if head == "score":
                    raise TrainingError(f"mfcc-logreg: {msg}")
                notes[f"{head}_skipped"] = msg
                selection.append(msg)
                continue
            # labels are constant within a video: each video's first segment gives its label
            # (np.unique orders videos as _video_means does)
            first = np.unique(i_va, return_index=True)[1]
            y_vid = y_va[key][first]
            can_rank = len(np.unique(y_vid)) == 2
            grid = sorted(set(c.c_grid)) if can_rank else [c.c_default]
            best: tuple[float, float, Any] | None = None
            aucs: dict[str, float] = {}
            for C in grid:
                model = LogisticRegression(C=C, class_weight="balanced", max_iter=c.max_iter)
                model.fit(z_tr, y)
                if can_rank:
                    p = _sigmoid(z_va @ model.coef_[0] + model.intercept_[0])
                    _, p_vid = _video_means(i_va, p)
                    auc = float(roc_auc_score(y_vid, p_vid))
                    aucs[f"{C:g}"] = auc
                    if best is None or auc > best[1]:
                        best = (C, auc, model)
                else:
                    best = (C, float("nan"), model)
            assert best is not None
            C, auc, model = best
            state[f"{head}_coef"] = model.coef_[0].astype(np.float64)
            state[f"{head}_intercept"] = np.asarray(model.intercept_, dtype=np.float64)
            state[f"{head}_C"] = np.asarray([C], dtype=np.float64)
            metric = "auc" if head == "score" else "auc_a"
            if can_rank:
                any_selected = True
                val_metrics[metric] = auc
                notes["grid"][head] = aucs
                selection.append(f"{head}: C={C:g} by video-level val {metric.upper()} "
                                 f"{auc:.4f} over C in {{{', '.join(aucs)}}}")
            else:
                selection.append(f"{head}: C={C:g} (c_default; val '{key}' has one class)")
        self._state = state
        ctx.log("mfcc-logreg: " + "; ".join(selection))
        return FitInfo(
            checkpoint="best-val" if any_selected else "last",
            selection="; ".join(selection),
            val_metrics=val_metrics,
            notes=notes,
        )

    def predict(self, batch: SegmentBatch, ctx: RunContext) -> dict[str, np.ndarray]:
        import numpy as np

        if "score_coef" not in self._state:
            raise RuntimeError("mfcc-logreg: predict before fit or load_state_dict")
        if batch.audio is None:
            raise ValueError("mfcc-logreg needs audio in the batch")
        feats = self.features(batch.audio)
        out = {"score": self._proba(feats, "score")}
        if "score_a_coef" in self._state:
            out["score_a"] = self._proba(feats, "score_a")
        return {k: np.clip(v, 0.0, 1.0) for k, v in out.items()}

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {k: v.copy() for k, v in self._state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import numpy as np

        st = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
        need = {"scaler_mean", "scaler_scale", "score_coef", "score_intercept", "score_C"}
        allowed = need | {"score_a_coef", "score_a_intercept", "score_a_C"}
        missing = need - set(st)
        unknown = set(st) - allowed
        if missing or unknown:
            raise ValueError(f"mfcc-logreg state: missing {sorted(missing)}, "
                             f"unknown {sorted(unknown)}")
        d = self.feature_dim
        for k in ("scaler_mean", "scaler_scale", "score_coef", "score_a_coef"):
            if k in st and st[k].shape != (d,):
                raise ValueError(f"mfcc-logreg state: {k} has shape {st[k].shape}, the config "
                                 f"(n_mfcc={self.config.n_mfcc}, deltas={self.config.deltas}) "
                                 f"gives ({d},)")
        has_a = {"score_a_coef", "score_a_intercept", "score_a_C"} & set(st)
        if has_a and len(has_a) != 3:
            raise ValueError("mfcc-logreg state: score_a head is incomplete")
        self._state = st

    def describe(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {
            "modalities": "audio only",
            "features": (f"{self.feature_dim} per segment: mean and std of {c.n_mfcc} MFCCs"
                         + (" + std of their deltas" if c.deltas else "")),
            "classifier": "StandardScaler + LogisticRegression(class_weight='balanced'), "
                          "one per head",
            "outputs": ["score (trained on label)", "score_a (trained on label_a)"],
            "selection": f"C from {list(c.c_grid)} by video-level validation AUC",
            "training_segments": ("every segment of each training video"
                                  if c.train_segments == 0
                                  else f"{c.train_segments} random per training video"),
            "parameters": 2 * (self.feature_dim + 1),
        }
        if self._state:
            out["chosen_C"] = {h: float(self._state[f"{h}_C"][0]) for h, _ in HEADS
                               if f"{h}_C" in self._state}
        return out
