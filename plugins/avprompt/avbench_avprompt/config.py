"""Configuration of the avprompt detector and its backbone presets (no torch here).

Every ablation variant of the paper is a setting of :class:`AVPromptConfig` (see
``avbench_avprompt.plugin``), and every field can be changed on the command line with
``--set key=value``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avbench.config import bounded
from avbench.torch_detector import TorchConfig

#: video frames per second and audio samples per second (paper, Implementation Details).
FPS = 25
SAMPLE_RATE = 16000
#: whisper's STFT hop: 160 samples = 10 ms per mel frame; its conv stem halves the frame rate.
MEL_HOP = 160


@dataclass(frozen=True)
class BackbonePreset:
    """The two frozen towers a preset builds.

    ``full`` is the paper's: the image tower of OpenAI CLIP ViT-B/32 (as open_clip's
    ``ViT-B-32`` with QuickGELU, the activation OpenAI trained it with) and the encoder of
    Whisper ``base``. ``tiny`` builds the same classes at toy sizes with random weights, for
    CPU smoke runs and tests; no published weights exist for it.
    """

    name: str
    #: open_clip model config name, or None for the explicit tiny vision config below.
    clip_arch: str | None
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_head_width: int
    #: whisper.model.ModelDimensions of the checkpoint (decoder sizes only matter for loading).
    whisper_dims: dict[str, int]
    #: what ``clip_weights=auto`` / ``whisper_weights=auto`` mean for this preset.
    clip_auto: str
    whisper_auto: str


PRESETS: dict[str, BackbonePreset] = {
    "full": BackbonePreset(
        name="full",
        clip_arch="ViT-B-32",
        image_size=224,
        patch_size=32,
        vision_width=768,
        vision_layers=12,
        vision_head_width=64,
        whisper_dims={
            "n_mels": 80,
            "n_audio_ctx": 1500,
            "n_audio_state": 512,
            "n_audio_head": 8,
            "n_audio_layer": 6,
            "n_vocab": 51865,
            "n_text_ctx": 448,
            "n_text_state": 512,
            "n_text_head": 8,
            "n_text_layer": 6,
        },
        clip_auto="openai",
        whisper_auto="base",
    ),
    "tiny": BackbonePreset(
        name="tiny",
        clip_arch=None,
        image_size=64,
        patch_size=16,
        vision_width=64,
        vision_layers=2,
        vision_head_width=32,
        whisper_dims={
            "n_mels": 80,
            "n_audio_ctx": 1500,
            "n_audio_state": 64,
            "n_audio_head": 2,
            "n_audio_layer": 2,
            "n_vocab": 64,
            "n_text_ctx": 8,
            "n_text_state": 64,
            "n_text_head": 2,
            "n_text_layer": 1,
        },
        clip_auto="random",
        whisper_auto="random",
    ),
}

#: encoder dimensions a whisper checkpoint must have to serve a preset.
WHISPER_ENCODER_KEYS = ("n_mels", "n_audio_state", "n_audio_head", "n_audio_layer")


@dataclass
class AVPromptConfig(TorchConfig):
    """Settings of avprompt; the defaults are the paper's (Implementation Details).

    Optimisation (Eq. 16 is minimised with Adam): ``lr`` 1e-4 for ``epochs`` = 15, multiplied by
    ``lr_decay`` = 0.1 from epoch ``lr_decay_epoch`` = 12 on (epochs count from 1: epochs 1-11
    run at 1e-4, 12-15 at 1e-5). The engine draws one random segment of every training video
    per epoch, as the paper samples.

    ``batch_size`` defaults to 16 segments (256 frames through ViT-B/32), our choice: the paper
    does not state its batch size. One 16-frame segment keeps about 0.45 GB of fp32 activations
    for the backward pass into the per-layer prompts (measured at full size), so 16 segments
    need about 7 GB in fp32 and roughly half with the engine's bf16 autocast on CUDA, next to
    0.45 GB of frozen weights: that fits the single 12 GB RTX 3080 Ti the paper trained on,
    and gives the CMFM loss 15 other segments to contrast each segment with. Lower it (with
    ``grad_accum`` to keep the effective batch) on smaller GPUs.

    Backbones and weights: ``backbone=full`` is CLIP ViT-B/32 + Whisper-base; ``backbone=tiny``
    builds toy towers with random weights for smoke runs. ``clip_weights`` is ``openai``, a
    file path (an open_clip state dict of the whole CLIP model, ``.bin``/``.pt``/
    ``.safetensors``), or ``random``; ``whisper_weights`` is ``base``, a file path (a whisper
    checkpoint ``{"dims": ..., "model_state_dict": ...}``), or ``random``. ``auto`` means the
    paper's weights (openai, base) for ``full`` and ``random`` for ``tiny``. Named weights are
    taken from the libraries' own caches (the Hugging Face hub cache for open_clip, the
    ``whisper`` folder of ``$XDG_CACHE_HOME`` or ``~/.cache`` for whisper) or downloaded when
    online; with ``HF_HUB_OFFLINE=1`` nothing is downloaded (for either library) and missing
    files end the run with one line saying how to provide them. Random weights are only ever
    used when asked for (``random``, or ``auto`` with ``tiny``); every run records which
    backbones and weights it used (``describe()["provenance"]``).

    Computation: ``fast`` (on by default) runs the network through the speed paths of
    ``avbench_avprompt._fast``, which compute what ``model.py``'s plain open_clip and whisper
    calls compute, with the same parameters and saved state, in less time and memory;
    ``fast=False`` runs the plain code (outputs agree up to floating-point rounding). The
    switch is part of the config, so runs with and without it have different config hashes.
    """

    batch_size: int = 16

    # -- backbones ---------------------------------------------------------------------
    #: ``full`` (CLIP ViT-B/32 + Whisper base) or ``tiny`` (toy sizes, random weights).
    backbone: Literal["full", "tiny"] = "full"
    #: ``auto`` | ``openai`` | ``random`` | a path to an open_clip checkpoint file of the
    #: whole CLIP model; its tower is built with QuickGELU, as OpenAI's weights need.
    clip_weights: str = "auto"
    #: ``auto`` | ``base`` | ``random`` | a path to a whisper checkpoint file.
    whisper_weights: str = "auto"
    #: seed of randomly initialised (frozen) towers, fixed apart from the run's seed so that
    #: a saved state (prompts and heads only) always meets the same backbone again.
    backbone_seed: int = bounded(0, ge=0)
    #: frames per segment T (16 in the paper); the audio segment is T x 640 samples.
    frames: int = bounded(16, ge=1)

    # -- which parts exist (Tables 4 and 5) --------------------------------------------
    #: the audio branch (Whisper + short-time audio prompts, Eq. 8-9).
    audio_branch: bool = True
    #: the visual branch (CLIP + sequential visual prompts, Eq. 6-7).
    visual_branch: bool = True
    #: L_v: the visual head and its cross-entropy on ``label_v`` (Table 5 "w/o L_v": False).
    loss_v: bool = True
    #: L_a: the audio head and its cross-entropy on ``label_a`` (Table 5 "w/o L_a": False).
    loss_a: bool = True
    #: L_CMFM on frame-level features (Eq. 14-15), on segment-level ones, or not at all.
    cmfm: Literal["frame", "segment", "off"] = "frame"
    #: ``sequential``: prompts are inserted and kept (Eq. 6); ``replace``: VPT-deep.
    vpt: Literal["sequential", "replace"] = "sequential"

    # -- sizes -------------------------------------------------------------------------
    #: N_vpt, visual prompt tokens inserted before each CLIP layer.
    n_vpt: int = bounded(1, ge=1)
    #: D_p, width of the short-time audio prompts P_a^l.
    prompt_dim: int = bounded(512, ge=1)
    #: D_f, width of the aligned features f'_v, f'_a (Eq. 12-13).
    fusion_dim: int = bounded(512, ge=1)
    #: hidden width of the visual, audio and fusion heads (linear-ReLU-linear).
    head_hidden: int = bounded(128, ge=1)

    # -- loss and schedule -------------------------------------------------------------
    #: weights of the CMFM loss (Eq. 15): matched real pairs, fake pairs, cross-segment pairs.
    alpha: float = bounded(2.0, ge=0)
    beta: float = bounded(2.0, ge=0)
    gamma: float = bounded(1.0, ge=0)
    #: the first epoch (counting from 1) run at ``lr * lr_decay``.
    lr_decay_epoch: int = bounded(12, ge=1, note="after the last epoch: no decay")
    #: the factor the learning rate is multiplied by from ``lr_decay_epoch`` on.
    lr_decay: float = bounded(0.1, gt=0, le=1, note="1: no decay")

    # -- computation -------------------------------------------------------------------
    #: run the network through ``avbench_avprompt._fast``: the functions of ``model.py``
    #: computed faster (fused attention, the last CLIP layer at the one position read,
    #: cheaper prompt insertion, batched log-mel); False runs ``model.py``'s plain code.
    fast: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.audio_branch or self.visual_branch):
            raise ValueError("avprompt needs at least one of audio_branch and visual_branch")
        both = self.audio_branch and self.visual_branch
        if self.cmfm != "off" and not both:
            raise ValueError(
                f"cmfm={self.cmfm} matches audio and visual features: "
                "it needs both branches (set cmfm=off)"
            )
        if self.visual_branch and not self.audio_branch and not self.loss_v:
            raise ValueError("a visual-only model needs loss_v (its only loss)")
        if self.audio_branch and not self.visual_branch and not self.loss_a:
            raise ValueError("an audio-only model needs loss_a (its only loss)")
        for key in ("frames", "n_vpt", "prompt_dim", "fusion_dim", "head_hidden", "lr_decay_epoch"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1")
        positions = self.preset.whisper_dims["n_audio_ctx"]
        if self.audio_branch and self.audio_tokens > positions:
            raise ValueError(
                f"frames={self.frames} gives {self.audio_tokens} audio tokens, more "
                f"than whisper's {positions} positions"
            )
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise ValueError("alpha, beta and gamma must be >= 0")
        preset = self.preset
        for key, named in (("clip_weights", "openai"), ("whisper_weights", "base")):
            if getattr(self, key) == named and preset.name != "full":
                raise ValueError(
                    f"{key}={named} are weights of the full backbone, not of "
                    f"backbone={preset.name} (use auto, random or a file)"
                )

    @property
    def preset(self) -> BackbonePreset:
        return PRESETS[self.backbone]

    @property
    def samples(self) -> int:
        """Audio samples per segment (640 per frame: 10,240 for 16 frames)."""
        return self.frames * SAMPLE_RATE // FPS

    @property
    def audio_tokens(self) -> int:
        """N_t / 2: whisper tokens per segment (a mel frame per 160 samples, halved by the stem)."""
        return self.samples // MEL_HOP // 2

    @property
    def resolved_clip_weights(self) -> str:
        return self.preset.clip_auto if self.clip_weights == "auto" else self.clip_weights

    @property
    def resolved_whisper_weights(self) -> str:
        return self.preset.whisper_auto if self.whisper_weights == "auto" else self.whisper_weights
