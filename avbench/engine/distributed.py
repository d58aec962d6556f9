"""torch.distributed glue. Nothing here imports torch unless the process runs under torchrun.

Launch with ``torchrun --nproc-per-node N -m avbench run ...``: each rank runs the same
command; rank 0 prepares media first (the others then read the cache), only rank 0 writes
result files, and evaluation scores are gathered so that results equal a one-process run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    #: this process joined the group itself (and so leaves it: :func:`leave`)
    owned: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env() -> Dist:
    """Join the process group torchrun describes (``WORLD_SIZE``/``RANK``), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as td

    local = int(os.environ.get("LOCAL_RANK", "0"))
    owned = not td.is_initialized()
    if owned:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        td.init_process_group(backend=backend)
    return Dist(td.get_rank(), td.get_world_size(), local, td.get_backend(), owned)


def leave(dist: Dist, *, wait: bool) -> None:
    """Leave the group :func:`init_from_env` joined. With ``wait``, first wait for every rank:
    a rank that exits while another still works (rank 0 writes the results alone) tears down
    the gloo threads under it, and the process aborts ("terminate called without an active
    exception"). Without it (on an error), leave at once: another rank may never arrive."""
    if not (dist.enabled and dist.owned):
        return
    import torch.distributed as td

    if wait:
        td.barrier()
    td.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as td

        td.barrier()


def rank0_first(dist: Dist, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then on the other ranks (which find rank 0's cache)."""
    if not dist.enabled:
        return fn()
    if dist.rank == 0:
        try:
            out = fn()
        finally:
            barrier(dist)
        return out
    barrier(dist)
    return fn()


def broadcast_object(dist: Dist, obj: Any) -> Any:
    if not dist.enabled:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(dist: Dist, obj: Any) -> list[Any]:
    if not dist.enabled:
        return [obj]
    import torch.distributed as td

    out: list[Any] = [None] * dist.world_size
    td.all_gather_object(out, obj)
    return out


def all_reduce_mean(dist: Dist, value: float) -> float:
    if not dist.enabled:
        return value
    import torch
    import torch.distributed as td

    t = torch.tensor([float(value)], dtype=torch.float64)
    td.all_reduce(t)
    return float(t.item()) / dist.world_size
