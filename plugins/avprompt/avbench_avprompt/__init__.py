"""avbench-avprompt: the reference detector plugin of avbench.

It implements "Multi-modal Deepfake Detection via Multi-task Audio-Visual Prompt Learning"
(Miao et al., AAAI 2025) and its ablation variants (Tables 4 and 5 of the paper). Modules:

- :mod:`avbench_avprompt.plugin`: the entry point; registers the detector names (no torch);
- :mod:`avbench_avprompt.config`: the configuration dataclass and the backbone presets (no torch);
- :mod:`avbench_avprompt.backbones`: building the frozen CLIP and Whisper towers and finding
  their weights;
- :mod:`avbench_avprompt.model`: the prompts, heads and alignment (Eqs. 1-13);
- :mod:`avbench_avprompt.losses`: the cross-modal feature matching loss (Eqs. 14-15);
- :mod:`avbench_avprompt.detector`: the :class:`~avbench.torch_detector.TorchDetector` tying
  them together (Eq. 16, optimiser, scores).

Importing this package is cheap: nothing here imports torch.
"""

__version__ = "0.1.0"
