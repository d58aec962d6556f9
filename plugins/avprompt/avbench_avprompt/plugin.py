"""The avprompt plugin: registers the paper's detector and its ablation variants.

This module is what the entry point names, so it must stay light: it imports neither torch nor
the detector. Each name points at the same class through an import string, and the variants
differ only by ``defaults`` (config overrides applied before the user's ``--set``), so there is
one implementation and each ablation is a configuration of it. ``tables`` records the row each
name stands for in the paper's Table 4 (which branches, whether L_CMFM is used) and Table 5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avbench import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from avbench.registry import DetectorRegister

FACTORY = "avbench_avprompt.detector:AVPromptDetector"


def _table4(audio: bool, visual: bool, cmfm: bool) -> dict[str, bool]:
    return {"audio": audio, "visual": visual, "cmfm": cmfm}


#: name -> (description, modality, config defaults, paper table rows)
VARIANTS: dict[str, tuple[str, str, dict[str, object], dict[str, object]]] = {
    "avprompt": (
        "Multi-task audio-visual prompt learning (Miao et al., AAAI 2025): frozen CLIP "
        "ViT-B/32 + Whisper-base with sequential visual / short-time audio prompts and the "
        "frame-level CMFM loss",
        "AV",
        {},
        {"table4": _table4(True, True, True), "table5": "Ours"},
    ),
    "avprompt-audio-only": (
        "avprompt's audio branch alone (short-time audio prompts + audio head, L_a)",
        "A",
        {"visual_branch": False, "cmfm": "off"},
        {"table4": _table4(True, False, False)},
    ),
    "avprompt-visual-only": (
        "avprompt's visual branch alone (sequential visual prompts + visual head, L_v)",
        "V",
        {"audio_branch": False, "cmfm": "off"},
        {"table4": _table4(False, True, False)},
    ),
    "avprompt-no-cmfm": (
        "avprompt without the cross-modal feature matching loss (L = L_v + L_a + L_f)",
        "AV",
        {"cmfm": "off"},
        {"table4": _table4(True, True, False)},
    ),
    "avprompt-no-la": (
        "avprompt without the audio task: no audio head, no L_a",
        "AV",
        {"loss_a": False},
        {"table5": "w/o L_a"},
    ),
    "avprompt-no-lv": (
        "avprompt without the visual task: no visual head, no L_v",
        "AV",
        {"loss_v": False},
        {"table5": "w/o L_v"},
    ),
    "avprompt-vpt-replace": (
        "avprompt with VPT-deep prompts: each layer's prompts replace the previous ones",
        "AV",
        {"vpt": "replace"},
        {"table5": "VPT-replacing"},
    ),
    "avprompt-segment-loss": (
        "avprompt with the CMFM loss on segment-level (time-averaged) features",
        "AV",
        {"cmfm": "segment"},
        {"table5": "segment-level loss"},
    ),
}


@hookimpl
def avbench_register_detectors(register: DetectorRegister) -> None:
    for name, (description, modality, defaults, tables) in VARIANTS.items():
        register(
            name,
            FACTORY,
            description=description,
            modality=modality,
            defaults=defaults,
            tables=tables,
        )
