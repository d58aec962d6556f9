"""Batched evaluation of torch detectors over every segment of every test video."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avbench.detector import RunContext, check_scores
from avbench.engine import distributed
from avbench.engine.device import (
    autocast_for,
    dist_of,
    make_loader,
    resolve_workers,
    to_device,
)


def evaluate_torch(det: Any, data: Any, ctx: RunContext, *, segments: Any = None,
                   desc: str = "evaluate") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores of every segment (or of ``segments``, indices into the eval index).

    Under DDP each rank scores a contiguous share and the shares are gathered in order, so
    the result equals a one-process run.
    """
    from avbench.engine.progress import Progress
    from avbench.media.torchdata import eval_segments

    cfg = det.config
    dist = dist_of(ctx)
    dataset = eval_segments(data)
    order = np.arange(len(dataset)) if segments is None else np.asarray(segments)
    share = np.array_split(order, dist.world_size)[dist.rank]
    batches = [share[i : i + cfg.eval_batch_size].tolist()
               for i in range(0, len(share), cfg.eval_batch_size)]
    loader = make_loader(dataset, batch_sampler=batches, workers=resolve_workers(cfg.num_workers),
                         device=ctx.device)
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
            vidx = batch["video_index"].cpu().numpy()
            check_scores(arrays, n, det, method="scores",
                         ids=[data.records[int(i)].id for i in vidx])
            index.append(vidx)
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
