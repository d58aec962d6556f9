"""The avprompt plugin: registers the paper's detector and its ablation variants.

This module is what the entry point names, so it must stay light: it imports neither torch nor
the detector. Each name points at the same class through an import string, and the variants
differ only by ``defaults`` (config overrides applied before the user's ``--set``), so there is
one implementation and each ablation is a configuration of it. Which row of the paper's
Tables 4 and 5 each name fills is said by those tables' files (protocols/tables/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avbench import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from avbench.registry import DetectorRegister

FACTORY = "avbench_avprompt.detector:AVPromptDetector"


#: name -> (description, modality, config defaults)
VARIANTS: dict[str, tuple[str, str, dict[str, object]]] = {
    "avprompt": (
        "Multi-task audio-visual prompt learning (Miao et al., AAAI 2025): frozen CLIP "
        "ViT-B/32 + Whisper-base with sequential visual / short-time audio prompts and the "
        "frame-level CMFM loss",
        "AV",
        {},
    ),
    "avprompt-audio-only": (
        "avprompt's audio branch alone (short-time audio prompts + audio head, L_a)",
        "A",
        {"visual_branch": False, "cmfm": "off"},
    ),
    "avprompt-visual-only": (
        "avprompt's visual branch alone (sequential visual prompts + visual head, L_v)",
        "V",
        {"audio_branch": False, "cmfm": "off"},
    ),
    "avprompt-no-cmfm": (
        "avprompt without the cross-modal feature matching loss (L = L_v + L_a + L_f)",
        "AV",
        {"cmfm": "off"},
    ),
    "avprompt-no-la": (
        "avprompt without the audio task: no audio head, no L_a",
        "AV",
        {"loss_a": False},
    ),
    "avprompt-no-lv": (
        "avprompt without the visual task: no visual head, no L_v",
        "AV",
        {"loss_v": False},
    ),
    "avprompt-vpt-replace": (
        "avprompt with VPT-deep prompts: each layer's prompts replace the previous ones",
        "AV",
        {"vpt": "replace"},
    ),
    "avprompt-segment-loss": (
        "avprompt with the CMFM loss on segment-level (time-averaged) features",
        "AV",
        {"cmfm": "segment"},
    ),
}


@hookimpl
def avbench_register_detectors(register: DetectorRegister) -> None:
    for name, (description, modality, defaults) in VARIANTS.items():
        register(
            name,
            FACTORY,
            description=description,
            modality=modality,
            defaults=defaults,
        )
