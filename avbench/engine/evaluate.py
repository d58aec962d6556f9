"""Batched evaluation of torch detectors over every segment of every test video."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

from avbench.detector import RunContext, SegmentBatch, check_scores
from avbench.engine import distributed
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


def keep_freed_memory(device: str | torch.device) -> bool:
    """On the CPU, :func:`avbench.allocator.keep_freed_memory` (freed memory kept for reuse
    under glibc, so activation tensors are not page-faulted in and zero-filled on every
    step); returns whether it is on. A no-op on CUDA."""
    if torch.device(device).type != "cpu":
        return False
    from avbench.allocator import keep_freed_memory as keep

    return keep()


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


def evaluate_torch(det: Any, data: Any, ctx: RunContext, *, segments: Any = None,
                   desc: str = "evaluate") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores of every segment (or of ``segments``, indices into the eval index).

    Under DDP each rank scores a contiguous share and the shares are gathered in order, so
    the result equals a one-process run.
    """
    from avbench.engine.progress import Progress
    from avbench.media.torchdata import EvalSegments

    cfg = det.config
    dist = dist_of(ctx)
    dataset = EvalSegments(data)
    order = np.arange(len(dataset)) if segments is None else np.asarray(segments)
    share = np.array_split(order, dist.world_size)[dist.rank]
    batches = [share[i : i + cfg.eval_batch_size].tolist()
               for i in range(0, len(share), cfg.eval_batch_size)]
    loader = make_loader(dataset, batch_sampler=batches, workers=resolve_workers(cfg.num_workers),
                         device=ctx.device)
    keep_freed_memory(ctx.device)
    model = det.model.to(ctx.device)
    was_training = model.training
    model.eval()
    index: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {}
    with Progress(ctx, total=len(share), desc=desc, unit="seg") as bar, torch.inference_mode():
        for batch in loader:
            batch = to_device(batch, ctx.device)
            with autocast_for(cfg.amp, ctx.device):
                out = det.scores(model, batch)
            n = batch["video_index"].shape[0]
            arrays = {k: v.detach().float().cpu().numpy().astype(np.float64) for k, v in out.items()}
            check_scores(arrays, n, type(det).__name__)
            index.append(batch["video_index"].cpu().numpy())
            for k, v in arrays.items():
                scores.setdefault(k, []).append(v)
            bar.advance(n)
    model.train(was_training)
    local = (
        np.concatenate(index) if index else np.zeros(0, dtype=np.int64),
        {k: np.concatenate(v) for k, v in scores.items()},
    )
    if not dist.enabled:
        if not index:
            return local[0], {"score": np.zeros(0)}
        return local
    parts = distributed.all_gather_objects(dist, local)
    keys = sorted({k for _, s in parts for k in s})
    vidx = np.concatenate([p[0] for p in parts])
    return vidx, {k: np.concatenate([p[1][k] for p in parts if k in p[1]]) for k in keys}
