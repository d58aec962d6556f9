"""pytest setup for the avprompt tests: offline, few threads (helpers: avprompt_testkit)."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub (it reads the switch once, at import).
os.environ["HF_HUB_OFFLINE"] = "1"

import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
