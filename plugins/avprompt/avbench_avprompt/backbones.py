"""The frozen foundation models: CLIP's image tower (open_clip) and Whisper's encoder.

Both are built through the libraries' own classes, so a real checkpoint and a test's tiny one
load the same way: ``open_clip.load_checkpoint`` (what ``open_clip.create_model(...,
pretrained=FILE)`` calls) for CLIP, ``whisper.load_model`` for Whisper.

Where the weights come from, in order: a file path given with ``--set clip_weights=PATH`` /
``whisper_weights=PATH``; the libraries' standard caches; a download when online. When none
works, :class:`MissingWeightsError` says, in one line, which file is needed and how to hand it
over. Random weights are used only when asked for. What was used is recorded in a
*provenance* dict (names, file names and SHA-256 digests, library versions; never a path).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avbench.errors import ConfigError
from avbench_avprompt.config import WHISPER_ENCODER_KEYS, AVPromptConfig, BackbonePreset

#: Hugging Face repository open_clip takes OpenAI's ViT-B/32 weights from.
CLIP_OPENAI_REPO = "timm/vit_base_patch32_clip_224.openai"


class MissingWeightsError(ConfigError):
    """Pretrained weights that cannot be found, downloaded or loaded (one-line message)."""


@dataclass
class Backbones:
    """The frozen towers a config asks for (None for a branch it leaves out)."""

    visual: nn.Module | None = None
    audio: nn.Module | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set: then no library may download (whisper included)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def whisper_cache_dir() -> Path:
    """Where ``whisper.load_model`` keeps downloads (its own rule: ``$XDG_CACHE_HOME/whisper``)."""
    default = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.getenv("XDG_CACHE_HOME", default)) / "whisper"


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def build_backbones(config: AVPromptConfig, *, weights: bool = True) -> Backbones:
    """Build the towers ``config`` needs, frozen.

    With ``weights=False`` only the architecture is built, on the ``meta`` device (no memory,
    no weights): this is how :meth:`AVPromptDetector.describe` counts parameters cheaply.
    """
    out = Backbones()
    if config.visual_branch:
        out.visual, out.provenance["clip"] = build_clip_visual(config, weights=weights)
    if config.audio_branch:
        out.audio, out.provenance["whisper"] = build_whisper_encoder(config, weights=weights)
    return out


# -- CLIP -------------------------------------------------------------------------------------
def _clip_architecture(preset: BackbonePreset) -> nn.Module:
    """The whole open_clip CLIP model of a preset, randomly initialised."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    if preset.clip_arch is not None:
        # What open_clip.create_model builds for this name; QuickGELU as in OpenAI's training.
        cfg = {**open_clip.get_model_config(preset.clip_arch), "quick_gelu": True}
        return open_clip.CLIP(**cfg)
    vision = CLIPVisionCfg(
        layers=preset.vision_layers,
        width=preset.vision_width,
        head_width=preset.vision_head_width,
        patch_size=preset.patch_size,
        image_size=preset.image_size,
    )
    text = CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    return open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text, quick_gelu=True)


def _resolve_clip_file(choice: str) -> tuple[str, str]:
    """(local file, how it was found) for ``clip_weights`` = ``openai`` or a path."""
    if choice != "openai":
        if not os.path.isfile(choice):
            raise MissingWeightsError(
                f"clip_weights={choice}: no such file (give openai, random, or the path of an "
                "open_clip checkpoint file)"
            )
        return choice, "file"
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    try:
        # The Hugging Face hub cache first, then a download (unless HF_HUB_OFFLINE=1).
        path = download_pretrained(get_pretrained_cfg("ViT-B-32", "openai"))
    except Exception as e:
        how = (
            "downloads are off (HF_HUB_OFFLINE=1)"
            if offline()
            else f"downloading failed ({_one_line(e)[:200]})"
        )
        raise MissingWeightsError(
            "CLIP ViT-B-32 'openai' weights are not in the Hugging Face cache and "
            f"{how}: download open_clip_model.safetensors (or open_clip_pytorch_model.bin) "
            f"from https://huggingface.co/{CLIP_OPENAI_REPO} and pass --set clip_weights=PATH, "
            "or fill the cache on a connected machine (open_clip.create_model('ViT-B-32', "
            "pretrained='openai')) and copy its hub folder into $HF_HOME"
        ) from None
    if not path:  # pragma: no cover - open_clip returns '' only for unknown tags
        raise MissingWeightsError("open_clip knows no 'openai' weights for ViT-B-32")
    return str(path), f"huggingface:{CLIP_OPENAI_REPO}"


def build_clip_visual(config: AVPromptConfig, *, weights: bool = True) -> tuple[nn.Module, dict]:
    """The frozen image tower (an ``open_clip.transformer.VisionTransformer``) and its provenance."""
    import open_clip

    preset = config.preset
    choice = config.resolved_clip_weights
    prov: dict[str, Any] = {
        "library": f"open_clip {open_clip.__version__}",
        "model": preset.clip_arch or "tiny CLIPVisionCfg",
        "preset": preset.name,
        "quick_gelu": True,
        "image_size": preset.image_size,
        "weights": choice if choice in ("openai", "random") else "file",
    }
    if not weights:
        with torch.device("meta"):
            return _freeze(_clip_architecture(preset).visual), prov
    path = None
    if choice != "random":
        path, source = _resolve_clip_file(choice)
        prov.update(source=source, file=Path(path).name, sha256=file_digest(path))
    with seeded(config.backbone_seed):
        clip = _clip_architecture(preset)
    if path is not None:
        try:
            open_clip.load_checkpoint(clip, path, strict=True)
        except Exception as e:
            raise MissingWeightsError(
                f"clip_weights: {Path(path).name} is not an open_clip checkpoint of "
                f"{prov['model']} (backbone={preset.name}): {_one_line(e)[:300]}"
            ) from None
    else:
        prov["source"] = f"random initialisation (backbone_seed={config.backbone_seed})"
    return _freeze(clip.visual), prov


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build with torch's global RNG at ``seed`` and leave the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- Whisper ----------------------------------------------------------------------------------
def _whisper_checkpoint(choice: str) -> tuple[str, str, str]:
    """(name or file for whisper.load_model, how it was found, sha256) for base or a path."""
    import whisper

    if choice != "base":
        if not os.path.isfile(choice):
            raise MissingWeightsError(
                f"whisper_weights={choice}: no such file (give base, random, or the path of a "
                "whisper checkpoint such as base.pt)"
            )
        return choice, "file", file_digest(choice)
    url = whisper._MODELS["base"]
    expected = url.split("/")[-2]  # whisper names each file's URL after its SHA-256
    cached = whisper_cache_dir() / "base.pt"
    if not cached.is_file() and offline():
        raise MissingWeightsError(
            "Whisper 'base' weights are not in the whisper cache ($XDG_CACHE_HOME/whisper or "
            f"~/.cache/whisper) and downloads are off (HF_HUB_OFFLINE=1): download {url} "
            "and put it there as base.pt, or pass --set whisper_weights=PATH"
        )
    return "base", "whisper-cache" if cached.is_file() else "download", expected


def build_whisper_encoder(
    config: AVPromptConfig, *, weights: bool = True
) -> tuple[nn.Module, dict]:
    """The frozen ``whisper.model.AudioEncoder`` and its provenance."""
    import whisper
    from whisper.model import AudioEncoder, ModelDimensions, Whisper

    preset = config.preset
    choice = config.resolved_whisper_weights
    dims = preset.whisper_dims
    prov: dict[str, Any] = {
        "library": f"openai-whisper {getattr(whisper, '__version__', '?')}",
        "model": "base" if preset.name == "full" else "tiny ModelDimensions",
        "preset": preset.name,
        "weights": choice if choice in ("base", "random") else "file",
    }
    if not weights:
        # Whisper(dims) cannot be built on meta (a sparse buffer); the encoder alone can.
        with torch.device("meta"):
            enc = AudioEncoder(
                dims["n_mels"],
                dims["n_audio_ctx"],
                dims["n_audio_state"],
                dims["n_audio_head"],
                dims["n_audio_layer"],
            )
        return _freeze(enc), prov
    if choice == "random":
        prov["source"] = f"random initialisation (backbone_seed={config.backbone_seed})"
        with seeded(config.backbone_seed):
            return _freeze(Whisper(ModelDimensions(**dims)).encoder), prov

    name, source, digest = _whisper_checkpoint(choice)
    try:
        model = whisper.load_model(name, device="cpu", download_root=str(whisper_cache_dir()))
    except Exception as e:
        if name == "base":
            raise MissingWeightsError(
                f"Whisper 'base' weights could not be downloaded ({_one_line(e)[:200]}): "
                f"download {whisper._MODELS['base']} into $XDG_CACHE_HOME/whisper (or "
                "~/.cache/whisper) as base.pt, or pass --set whisper_weights=PATH"
            ) from None
        raise MissingWeightsError(
            f"whisper_weights: {Path(name).name} is not a whisper checkpoint "
            f"({{'dims': ..., 'model_state_dict': ...}}): {_one_line(e)[:300]}"
        ) from None
    got = {k: getattr(model.dims, k) for k in WHISPER_ENCODER_KEYS}
    want = {k: dims[k] for k in WHISPER_ENCODER_KEYS}
    if got != want:
        raise MissingWeightsError(
            f"whisper_weights: {Path(name).name} has encoder {got}, but backbone={preset.name} "
            f"needs {want}"
        )
    prov.update(
        source=source, file=Path(name).name if source == "file" else "base.pt", sha256=digest
    )
    return _freeze(model.encoder), prov
