"""avbench: a plugin-based benchmark harness for audio-visual deepfake detectors.

This module stays import-light on purpose: the CLI imports it to print help and to list
plugins, which must never pull in torch.
"""

from avbench.hookspecs import AVBENCH_API_VERSION, hookimpl

__version__ = "0.1.0"

__all__ = ["AVBENCH_API_VERSION", "__version__", "hookimpl"]
