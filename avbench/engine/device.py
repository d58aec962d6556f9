"""What training and evaluation share: batches onto the device, autocast, the DataLoader
and its workers, the memory setting of a CPU process."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

from avbench.detector import RunContext, SegmentBatch
from avbench.engine.distributed import Dist


def batch_to_tensors(batch: SegmentBatch, device: str | torch.device) -> dict[str, torch.Tensor]:
    out = {
        "label": torch.as_tensor(batch.label, dtype=torch.int64),
        "label_v": torch.as_tensor(batch.label_v, dtype=torch.int64),
        "label_a": torch.as_tensor(batch.label_a, dtype=torch.int64),
        "video_index": torch.as_tensor(batch.video_index, dtype=torch.int64),
    }
    if batch.video is not None:
        out["video"] = torch.from_numpy(np.ascontiguousarray(batch.video))
    if batch.audio is not None:
        out["audio"] = torch.from_numpy(np.ascontiguousarray(batch.audio, dtype=np.float32))
    return to_device(out, device)


def to_device(batch: dict[str, Any], device: str | torch.device) -> dict[str, Any]:
    dev = torch.device(device)
    non_blocking = dev.type == "cuda"
    return {k: (v.to(dev, non_blocking=non_blocking) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


def dist_of(ctx: RunContext) -> Dist:
    return Dist(rank=ctx.rank, world_size=ctx.world_size,
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def autocast_for(amp: str, device: str) -> Any:
    """bf16 autocast on CUDA for amp=auto; on CPU only when amp=bf16 is asked for."""
    dev = torch.device(device).type
    if amp == "bf16" or (amp == "auto" and dev == "cuda"):
        return torch.autocast(device_type=dev, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_workers(n: int) -> int:
    if n >= 0:
        return n
    from avbench.io import available_cores

    cpus = available_cores()
    return 0 if cpus <= 2 else min(8, cpus // 2)


def make_loader(dataset: Any, *, batch_size: int | None = None, batch_sampler: Any = None,
                workers: int, device: str) -> Any:
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": torch.device(device).type == "cuda",
    }
    if workers > 0:
        kwargs["persistent_workers"] = False
        kwargs["prefetch_factor"] = 4
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)
