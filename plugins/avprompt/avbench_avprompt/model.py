"""The avprompt network: prompts around two frozen towers, alignment and three heads.

Equation numbers refer to Miao et al., AAAI 2025 ("Multi-modal Deepfake Detection via
Multi-task Audio-Visual Prompt Learning"). Only the prompts, the audio FC layers, the global
audio token, the two alignment convolutions and the heads learn; the towers are frozen.

This module is the method as the paper writes it, on plain open_clip and whisper calls: the
visual prompts (Eq. 6), the audio prompts (Eq. 8), the features (Eqs. 10-11), the alignment
(Eqs. 12-13) and the heads. The losses (Eqs. 14-16) are in :mod:`avbench_avprompt.losses`
and :meth:`AVPromptDetector.loss`. With ``fast=True`` (the default) the model runs the same
functions through the faster code of :mod:`avbench_avprompt._fast`.

Shapes: B segments of T frames; the visual tower has width D_v (768 for ViT-B/32), the audio
encoder width D_a (512 for Whisper base); N_a = N_t / 2 = 2T audio tokens per segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor, nn

from avbench_avprompt.config import AVPromptConfig


def classification_head(in_dim: int, hidden: int) -> nn.Sequential:
    """Two linear layers with a ReLU, giving real/fake logits (the paper's three heads)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))


class SequentialVisualPrompts(nn.Module):
    """CLIP's frozen image tower with sequential visual prompts (Eqs. 1-3, 6, 10).

    Before layer l, ``n_vpt`` learnable tokens P_v^l are inserted right after the class token
    and the tokens inserted before earlier layers are kept, so the sequence grows by ``n_vpt``
    per layer (Eq. 6): 1 + N patches, then 1 + n_vpt + N before layer 1, ..., 1 + L n_vpt + N
    before layer L. The frame's feature is the last layer's output at position 1, the first of
    the prompts inserted last, through the tower's frozen ``ln_post``.

    With ``mode="replace"`` (VPT-deep, Table 5 "VPT-replacing"), the outputs at the previous
    layer's prompt positions are discarded and P_v^l takes their place: the length stays
    1 + n_vpt + N.
    """

    def __init__(self, tower: nn.Module, n_vpt: int = 1, mode: str = "sequential"):
        super().__init__()
        if mode not in ("sequential", "replace"):
            raise ValueError(f"unknown prompt mode {mode!r}")
        self.tower = tower  # open_clip.transformer.VisionTransformer, frozen
        self.n_vpt = n_vpt
        self.mode = mode
        self.width = tower.class_embedding.shape[-1]
        self.layers = len(tower.transformer.resblocks)
        # open_clip 3.x runs its blocks batch-first, (N, L, D) (``transformer.batch_first``);
        # older releases ran them sequence-first, (L, N, D).
        self.batch_first = getattr(tower.transformer, "batch_first", False)
        patch = tower.conv1.kernel_size[0]
        # P_v^1..L, initialised as in VPT (Jia et al. 2022): uniform, Xavier-style.
        bound = math.sqrt(6.0 / float(3 * patch * patch + self.width))
        self.prompts = nn.Parameter(
            torch.empty(
                self.layers, n_vpt, self.width, device=tower.class_embedding.device
            ).uniform_(-bound, bound)
        )

    def embed(self, images: Tensor) -> Tensor:
        """z_v^0 = [z_cls, E x_v^1..N] + p_v, then ln_pre (Eqs. 1-2): (N_img, 1 + N, D_v)."""
        t = self.tower
        x = t.conv1(images)  # (N_img, D_v, grid, grid): the patch projection E
        x = x.flatten(2).transpose(1, 2)
        cls = t.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + t.positional_embedding.to(x.dtype)
        return t.ln_pre(x)

    def kept_from(self, layer: int) -> int:
        """The first position of the previous layer's output kept before ``layer`` (counting
        from 0): 1 (every earlier prompt and the patches, Eq. 6), or, for VPT-deep, 1 + n_vpt
        (the previous layer's prompt outputs dropped)."""
        return 1 if self.mode == "sequential" or layer == 0 else 1 + self.n_vpt

    def insert_prompts(self, x: Tensor, layer: int) -> Tensor:
        """The input of CLIP layer ``layer``: [z^{l-1,0}, P_v^l, z^{l-1,1...}] (Eq. 6)."""
        prompt = self.prompts[layer].to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :1], prompt, x[:, self.kept_from(layer) :]], dim=1)

    def run_block(self, block: nn.Module, x: Tensor) -> Tensor:
        """One frozen CLIP layer L_v^l on batch-first tokens (N_img, length, D_v)."""
        return block(x) if self.batch_first else block(x.transpose(0, 1)).transpose(0, 1)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images (N_img, 3, H, W) -> frame features z_{v,t}^{L,1} (N_img, D_v)."""
        x = self.embed(images)
        for layer, block in enumerate(self.tower.transformer.resblocks):
            x = self.run_block(block, self.insert_prompts(x, layer))  # Eq. 6
        return self.tower.ln_post(x[:, 1])  # Eq. 10: the output at position 1


class ShortTimeAudioPrompts(nn.Module):
    """Whisper's frozen encoder with short-time audio prompts (Eqs. 4-5, 8, 11).

    The stock encoder asserts 1,500 positions (30 s of audio); this forward runs its frozen
    conv stem and the first N_a positional embeddings on a short segment (Eq. 4). Before layer
    l, a learnable P_a^l (N_a x D_p) is concatenated with the N_a tokens along the feature
    dimension and a learnable FC_l maps the result back to D_a; a learnable global token z_ag
    is prepended before layer 1 and, from then on, passed on outside the concatenation
    (Eq. 8). The output f_a is the N_a tokens after the last layer and the encoder's frozen
    ``ln_post``, the global token left out (Eq. 11).
    """

    def __init__(self, encoder: nn.Module, n_tokens: int, prompt_dim: int):
        super().__init__()
        self.encoder = encoder  # whisper.model.AudioEncoder, frozen
        self.n_tokens = n_tokens
        self.n_mels = encoder.conv1.in_channels
        self.width = encoder.conv2.out_channels
        if n_tokens > encoder.positional_embedding.shape[0]:
            raise ValueError(
                f"{n_tokens} audio tokens exceed whisper's "
                f"{encoder.positional_embedding.shape[0]} positions"
            )
        layers = len(encoder.blocks)
        device = encoder.conv1.weight.device
        self.prompts = nn.Parameter(0.02 * torch.randn(layers, n_tokens, prompt_dim, device=device))
        self.global_token = nn.Parameter(0.02 * torch.randn(1, 1, self.width, device=device))
        self.fc = nn.ModuleList(
            nn.Linear(prompt_dim + self.width, self.width, device=device) for _ in range(layers)
        )
        with torch.no_grad():
            # Our choice (the paper is silent): FC_l starts as the identity on the audio
            # tokens, so training starts from the frozen encoder's own features; the prompt
            # columns keep nn.Linear's small random init so that P_a^l gets gradients at once.
            for fc in self.fc:
                fc.weight[:, prompt_dim:].copy_(torch.eye(self.width, device=device))
                fc.bias.zero_()

    def log_mel(self, audio: Tensor) -> Tensor:
        """Waveforms (B, S) at 16 kHz -> whisper log-mel spectrograms (B, n_mels, S / 160).

        ``whisper.log_mel_spectrogram`` of each segment on its own, in fp32: whisper clamps the
        log-mel at 8 below the maximum of its whole input, so one call on the batch would let
        a loud segment change a quiet one's spectrogram.
        """
        import whisper

        with torch.autocast(device_type=audio.device.type, enabled=False):
            return torch.stack(
                [whisper.log_mel_spectrogram(a, n_mels=self.n_mels) for a in audio.float()]
            )

    def embed(self, audio: Tensor) -> Tensor:
        """z_a^0: whisper's frozen conv stem on the log-mel, plus the first N_a positional
        embeddings (Eq. 4): waveforms (B, S) -> (B, N_a, D_a)."""
        enc = self.encoder
        x = F.gelu(enc.conv1(self.log_mel(audio)))
        x = F.gelu(enc.conv2(x)).transpose(1, 2)  # (B, N_a, D_a)
        if x.shape[1] != self.n_tokens:
            raise ValueError(
                f"audio of {audio.shape[-1]} samples gives {x.shape[1]} tokens, "
                f"expected {self.n_tokens}"
            )
        return x + enc.positional_embedding[: self.n_tokens].to(x.dtype)

    def forward(self, audio: Tensor) -> Tensor:
        """Waveforms (B, S) -> f_a (B, N_a, D_a)."""
        enc = self.encoder
        x = self.embed(audio)  # Eq. 4
        batch = x.shape[0]
        glob = self.global_token.to(x.dtype).expand(batch, -1, -1)
        for layer, block in enumerate(enc.blocks):
            if layer > 0:
                glob, x = x[:, :1], x[:, 1:]  # z_a^{l-1,0} and z_a^{l-1,1..N_a}
            prompt = self.prompts[layer].to(x.dtype).expand(batch, -1, -1)
            tokens = self.fc[layer](torch.cat([prompt, x], dim=-1))  # FC_l(cat(P_a^l, z))
            x = block(torch.cat([glob, tokens], dim=1))  # Eq. 8
        return enc.ln_post(x)[:, 1:]  # Eq. 11: the N_a tokens, the global token left out


@dataclass
class AVPromptOutput:
    """What :class:`AVPromptModel` computes; a field is None when its part does not exist."""

    f_v: Tensor | None = None  # (B, T, D_v), Eq. 10
    f_a: Tensor | None = None  # (B, N_a, D_a), Eq. 11
    f_v_aligned: Tensor | None = None  # f'_v (B, T, D_f), Eq. 12
    f_a_aligned: Tensor | None = None  # f'_a (B, T, D_f), Eq. 13
    logits_v: Tensor | None = None  # visual head on mean_t f_v (Eq. 7)
    logits_a: Tensor | None = None  # audio head on mean_i f_a (Eq. 9)
    logits_f: Tensor | None = None  # fusion head on mean_t [f'_v, f'_a]


class AVPromptModel(nn.Module):
    """The two-stream, multi-task model of Fig. 2 (either stream may be left out).

    Inputs are the engine's tensors: ``video`` uint8 (B, T, 3, H, W) and ``audio`` float32
    (B, T x 640). The visual branch sees each frame on its own (B x T images); the audio branch
    the segment's whole waveform. ``conv_v`` (kernel = stride = 1) and ``conv_a`` (kernel =
    stride = N_a / T = 2) bring both to T steps of width D_f (Eqs. 12-13); their concatenation,
    averaged over time, feeds the fusion head. ``config.fast`` picks the subclasses of
    :mod:`avbench_avprompt._fast` for the two prompt modules (same parameters, same functions).
    """

    def __init__(
        self,
        config: AVPromptConfig,
        visual_tower: nn.Module | None = None,
        audio_encoder: nn.Module | None = None,
    ):
        super().__init__()
        c = config
        visual_prompts, audio_prompts = SequentialVisualPrompts, ShortTimeAudioPrompts
        if c.fast:  # the same functions, computed faster
            from avbench_avprompt._fast import FastAudioPrompts, FastVisualPrompts

            visual_prompts, audio_prompts = FastVisualPrompts, FastAudioPrompts
        self.visual: SequentialVisualPrompts | None = None
        self.audio: ShortTimeAudioPrompts | None = None
        self.head_v = self.head_a = self.head_f = None
        self.conv_v = self.conv_a = None
        if c.visual_branch:
            if visual_tower is None:
                raise ValueError("visual_branch needs a visual tower")
            self.visual = visual_prompts(visual_tower, c.n_vpt, c.vpt)
            if c.loss_v:
                self.head_v = classification_head(self.visual.width, c.head_hidden)
            self.image_size = tuple(visual_tower.image_size)  # (H, W) the tower was built for
            mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
            self.register_buffer("pixel_mean", mean * 255.0, persistent=False)
            self.register_buffer("pixel_std", std * 255.0, persistent=False)
        if c.audio_branch:
            if audio_encoder is None:
                raise ValueError("audio_branch needs an audio encoder")
            self.audio = audio_prompts(audio_encoder, c.audio_tokens, c.prompt_dim)
            if c.loss_a:
                self.head_a = classification_head(self.audio.width, c.head_hidden)
        if self.visual is not None and self.audio is not None:
            stride = c.audio_tokens // c.frames
            self.conv_v = nn.Conv1d(self.visual.width, c.fusion_dim, kernel_size=1, stride=1)
            self.conv_a = nn.Conv1d(
                self.audio.width, c.fusion_dim, kernel_size=stride, stride=stride
            )
            self.head_f = classification_head(2 * c.fusion_dim, c.head_hidden)

    # The towers are frozen: keep them in eval mode whatever mode the model is put in.
    def train(self, mode: bool = True) -> AVPromptModel:
        super().train(mode)
        for tower in self.backbones().values():
            tower.eval()
        return self

    def images(self, video: Tensor) -> Tensor:
        """uint8 frames (B, T, 3, H, W) -> CLIP-normalised images (B x T, 3, H, W)."""
        b, t, c, h, w = video.shape
        if (h, w) != self.image_size or c != 3:
            raise ValueError(
                f"frames of shape {tuple(video.shape[2:])}, expected "
                f"(3, {self.image_size[0]}, {self.image_size[1]})"
            )
        return (video.reshape(b * t, c, h, w).float() - self.pixel_mean) / self.pixel_std

    def visual_features(self, video: Tensor) -> Tensor:
        """uint8 frames (B, T, 3, H, W) -> f_v (B, T, D_v) (Eq. 10)."""
        assert self.visual is not None
        return self.visual(self.images(video)).reshape(video.shape[0], video.shape[1], -1)

    def forward(self, video: Tensor | None = None, audio: Tensor | None = None) -> AVPromptOutput:
        out = AVPromptOutput()
        if self.visual is not None:
            if video is None:
                raise ValueError("this model reads video, but the batch has none")
            out.f_v = self.visual_features(video)
            if self.head_v is not None:
                out.logits_v = self.head_v(out.f_v.mean(dim=1))  # Eq. 7 + visual head
        if self.audio is not None:
            if audio is None:
                raise ValueError("this model reads audio, but the batch has none")
            out.f_a = self.audio(audio)
            if self.head_a is not None:
                out.logits_a = self.head_a(out.f_a.mean(dim=1))  # Eq. 9 + audio head
        if self.conv_v is not None and self.conv_a is not None:
            assert out.f_v is not None and out.f_a is not None
            out.f_v_aligned = self.conv_v(out.f_v.transpose(1, 2)).transpose(1, 2)  # Eq. 12
            out.f_a_aligned = self.conv_a(out.f_a.transpose(1, 2)).transpose(1, 2)  # Eq. 13
            fused = torch.cat([out.f_v_aligned, out.f_a_aligned], dim=-1)  # f_f (B, T, 2 D_f)
            out.logits_f = self.head_f(fused.mean(dim=1))
        return out

    def backbones(self) -> dict[str, nn.Module]:
        """The frozen towers by name (``clip``, ``whisper``)."""
        out: dict[str, nn.Module] = {}
        if self.visual is not None:
            out["clip"] = self.visual.tower
        if self.audio is not None:
            out["whisper"] = self.audio.encoder
        return out
