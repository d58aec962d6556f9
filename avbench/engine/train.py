"""The training loop every ``TorchDetector`` gets.

Per epoch: draw the epoch's training segments (by default every training video once, in a
seeded order, one random segment each; ``balance=class`` draws reals and fakes with equal
probability instead), run micro-batches with
gradient accumulation and optional bf16 autocast, average gradients across ranks, clip,
step; then score the validation split, keep the best state by validation AUC, and write a
checkpoint (atomically: a crash leaves the previous one) holding the detector's state (its
model's whole state_dict, buffers included, minus its frozen modules) plus the best state,
optimiser, scheduler, RNG and sampler state. A checkpoint that cannot be read or does not fit
raises ``CheckpointError`` naming the file and the cause.

Everything random in an epoch derives from ``(seed, epoch)``, so a run resumed from the
checkpoint of epoch k redoes epoch k+1 exactly as an uninterrupted run would.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avbench.detector import FitInfo, RunContext
from avbench.engine import distributed
from avbench.engine.device import (
    autocast_for,
    dist_of,
    make_loader,
    resolve_workers,
    to_device,
)
from avbench.engine.evaluate import evaluate_torch
from avbench.engine.progress import Progress
from avbench.errors import CheckpointError, TrainingError
from avbench.io import atomic_write_bytes

CHECKPOINT_VERSION = 1


def epoch_draws(labels: np.ndarray, n: int, seed: int, epoch: int, balance: str) -> np.ndarray:
    """Indices of the videos drawn for an epoch (one random segment is taken per draw).

    ``none`` (the default, as the paper samples): a seeded permutation of every training
    video, so each video is drawn exactly once when ``n`` is the number of videos; a smaller
    ``n`` takes the permutation's first ``n``, a larger one appends further permutations.
    ``class``: each draw picks real or fake with probability 1/2, then a video of that class
    uniformly (with replacement), so ~300 reals weigh as much as ~12,000 fakes.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    if balance == "none":
        rounds = -(-n // len(labels)) if len(labels) else 0
        out = np.concatenate([rng.permutation(len(labels)) for _ in range(rounds)] or [[]])
        return out[:n].astype(np.int64)
    if balance != "class":
        raise TrainingError(f"balance {balance!r} is not one of class, none")
    real = np.flatnonzero(labels == 0)
    fake = np.flatnonzero(labels == 1)
    if len(real) == 0 or len(fake) == 0:
        raise TrainingError("class-balanced sampling (balance=class) needs real and fake "
                            f"training videos; found {len(real)} real and {len(fake)} fake")
    pick_fake = rng.random(n) < 0.5
    out = np.where(pick_fake, fake[rng.integers(0, len(fake), n)], real[rng.integers(0, len(real), n)])
    return out.astype(np.int64)


def _micro_batches(n_draws: int, batch: int, accum: int, world: int, rank: int) -> list[list[int]]:
    """This rank's micro-batches; each global micro-batch of ``batch`` is split over ranks."""
    if batch % world:
        raise TrainingError(f"batch_size {batch} must be divisible by the {world} processes")
    per = batch // world
    steps = n_draws // (batch * accum)
    out = []
    for s in range(steps * accum):
        base = s * batch + rank * per
        out.append(list(range(base, base + per)))
    return out


def _rng_state() -> dict[str, Any]:
    # Plain types and tensors only, so the checkpoint loads with weights_only=True.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"python": random.getstate(),
          "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                    float(cached)),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path) -> Any:
    # weights_only=True: a checkpoint is tensors, numbers and strings, never code.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, garbage, not a torch file, unreadable
        raise CheckpointError(path, _unreadable(Path(path), e)) from None


def _unreadable(path: Path, e: Exception) -> str:
    if isinstance(e, OSError):  # the file itself unreadable, or torch's reader on a bad one
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e2:
            return f"cannot be read ({e2.strerror or e2})"
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "is empty (0 bytes)"
    # a cut-off zip, garbage, or a pickle of other objects (refused by weights_only=True)
    return f"is truncated or not a torch checkpoint ({size} bytes; {_cause(e)})"


def _cause(e: BaseException) -> str:
    """``Type: first sentence of the message`` (torch's messages run on for lines)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    text = lines[0].split(". ")[0].rstrip(".")[:160] if lines else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


_CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "rng", "best_auc", "best_epoch")


def _resume_from(path: Path, det: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load ``path`` into the detector, optimiser, scheduler and RNGs; return the checkpoint.

    Everything is checked before the run goes on: a bad part raises ``CheckpointError``
    naming the file and the part (the best-validation snapshot included, which is used only
    at the end of the run)."""
    ck = _load(path)
    if not isinstance(ck, dict):
        raise CheckpointError(path, f"is a {type(ck).__name__}, not an avbench checkpoint")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(path, f"checkpoint version {ck.get('version')!r} is not supported "
                                    f"(this avbench writes {CHECKPOINT_VERSION})")
    absent = [k for k in _CHECKPOINT_KEYS if k not in ck]
    if absent:
        raise CheckpointError(path, f"has no {absent[0]!r} (incomplete checkpoint)")

    def part(what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(path, f"{what}: {_cause(e)}") from None

    part("model state", det.load_state_dict, ck["model"])
    if ck.get("best_state") is not None:
        part("best-validation state", det.check_state, ck["best_state"])
    part("optimizer state", optimizer.load_state_dict, ck["optimizer"])
    if scheduler is not None and ck.get("scheduler") is not None:
        part("scheduler state", scheduler.load_state_dict, ck["scheduler"])
    part("RNG state", _set_rng_state, ck["rng"])
    try:
        int(ck["epoch"])
        list(ck.get("history", []))
    except Exception as e:
        raise CheckpointError(path, f"epoch or history: {_cause(e)}") from None
    return ck


def _frozen_buffers(det: Any) -> dict[str, torch.Tensor]:
    """Copies of the buffers of the detector's frozen parts (not saved, so they must not
    change while training)."""
    saved = set(det.saved_keys())
    params = {n for n, _ in det.model.named_parameters(remove_duplicate=False)}
    return {k: v.detach().clone() for k, v in det.model.state_dict().items()
            if k not in saved and k not in params}


def _check_frozen_unchanged(det: Any, ref: dict[str, torch.Tensor], epoch: int) -> None:
    now = det.model.state_dict()
    for k, v in ref.items():
        if not torch.equal(now[k].detach(), v):
            raise TrainingError(
                f"{type(det).__name__}: buffer {k!r} of a frozen module changed in epoch "
                f"{epoch + 1}, but frozen modules are not saved; keep that module in eval mode "
                "while training, or leave it out of frozen_modules()"
            )


def _val_metrics(det: Any, val: Any, ctx: RunContext, val_segments: np.ndarray | None) -> dict[str, Any]:
    from avbench.metrics import compute_metrics

    vidx, scores = evaluate_torch(det, val, ctx, segments=val_segments, desc="validate")
    n = len(val)
    counts = np.bincount(vidx, minlength=n)
    seen = counts > 0
    mean = {k: (np.bincount(vidx, weights=v, minlength=n)[seen] / counts[seen])
            for k, v in scores.items()}
    labels = {k: np.array([getattr(r, k) for r in val.records])[seen]
              for k in ("label", "label_v", "label_a")}
    m = compute_metrics(labels, mean, n_boot=0, which=("acc", "ap", "auc"))
    return {k: v.value for k, v in m.items()}


def _val_segment_subset(val: Any, per_video: int, seed: int) -> np.ndarray | None:
    """A fixed, seeded choice of ``per_video`` eval segments per validation video (0 = all)."""
    if per_video <= 0:
        return None
    vidx, _ = val.eval_index()  # segments in video order, so each video's are contiguous
    bounds = np.searchsorted(vidx, np.arange(len(val) + 1))
    rng = np.random.default_rng([seed, 99])
    keep = []
    for lo, hi in itertools.pairwise(bounds):
        segs = np.arange(lo, hi)
        if len(segs) <= per_video:
            keep.extend(segs.tolist())
        else:
            keep.extend(sorted(rng.choice(segs, per_video, replace=False).tolist()))
    return np.asarray(keep, dtype=np.int64)


@dataclass
class _Best:
    """The best epoch so far by validation AUC, and the detector's state after it."""

    auc: float = -math.inf
    epoch: int | None = None
    state: dict[str, Any] | None = None


@dataclass
class _Training:
    """What the loop works with (set up by :func:`_setup`) and what it carries from epoch to
    epoch: where to start, the best epoch, the history of epoch rows."""

    det: Any
    ctx: RunContext
    dist: Any
    device: torch.device
    model: Any
    params: list[torch.nn.Parameter]
    labels: np.ndarray
    n_draws: int
    balance: str
    optimizer: Any
    scheduler: Any
    interval: str
    workers: int
    val_subset: np.ndarray | None
    ckpt_dir: Path | None
    start_epoch: int = 0
    best: _Best = field(default_factory=_Best)
    history: list[dict[str, Any]] = field(default_factory=list)
    frozen_ref: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def cfg(self) -> Any:
        return self.det.config


def fit_torch(det: Any, train: Any, val: Any, ctx: RunContext) -> FitInfo:
    """Train ``det`` on ``train``, select on ``val`` (see the module docstring)."""
    st = _setup(det, train, val, ctx)
    _resume(st)
    st.frozen_ref = _frozen_buffers(det)
    for epoch in range(st.start_epoch, st.cfg.epochs):
        row, auc = _epoch(st, train, val, epoch)
        st.history.append(row)
        if auc is not None and auc > st.best.auc:
            st.best = _Best(auc, epoch + 1, {k: v.clone() for k, v in det.state_dict().items()})
        if ctx.rank == 0:
            _log_row(ctx, row)
            _checkpoint(st, epoch)
            _epoch_line(ctx, row)
        distributed.barrier(st.dist)
    return _select(st)


def _setup(det: Any, train: Any, val: Any, ctx: RunContext) -> _Training:
    """The model on its device, the optimiser and schedule, the sampler's settings; a
    ``TrainingError`` when nothing can learn or an epoch would not fill one step."""
    cfg = det.config
    dist = dist_of(ctx)
    device = torch.device(ctx.device)
    balance = ctx.balance if cfg.balance == "protocol" else cfg.balance
    model = det.model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"{type(det).__name__} has no trainable parameter")
    labels = np.array([r.label for r in train.records], dtype=np.int64)
    n_draws = cfg.epoch_size or len(train)
    steps_per_epoch = n_draws // (cfg.batch_size * cfg.grad_accum)
    if steps_per_epoch < 1:
        raise TrainingError(
            f"only {n_draws} training segments per epoch but batch_size x grad_accum = "
            f"{cfg.batch_size * cfg.grad_accum}; lower batch_size"
        )
    opt_out = det.configure_optimizers(model, steps_per_epoch)
    optimizer, scheduler = opt_out if isinstance(opt_out, tuple) else (opt_out, None)
    return _Training(
        det=det, ctx=ctx, dist=dist, device=device, model=model, params=params, labels=labels,
        n_draws=n_draws, balance=balance, optimizer=optimizer, scheduler=scheduler,
        interval=getattr(det, "scheduler_interval", "epoch"),
        workers=resolve_workers(cfg.num_workers),
        val_subset=_val_segment_subset(val, cfg.val_segments, ctx.seed),
        ckpt_dir=(ctx.run_dir / "checkpoints") if ctx.run_dir is not None else None,
    )


def _resume(st: _Training) -> None:
    """With ``--resume`` and a checkpoint: continue after its epoch (state, optimiser, RNGs,
    best epoch and history restored; the log cut back to the epochs done). Otherwise the
    run starts afresh, and an old log is removed."""
    ctx = st.ctx
    last = st.ckpt_dir / "last.pt" if st.ckpt_dir is not None else None
    if ctx.resume and last is not None and last.exists():
        ck = _resume_from(last, st.det, st.optimizer, st.scheduler)
        st.start_epoch = int(ck["epoch"]) + 1
        st.best = _Best(ck["best_auc"], ck["best_epoch"], ck.get("best_state"))
        st.history = list(ck.get("history", []))
        if ctx.rank == 0:
            ctx.log(f"resuming after epoch {st.start_epoch} from {last.name}")
            if ctx.log_path is not None:  # drop lines of the epoch that was cut short
                ctx.log_path.write_text("".join(json.dumps(h) + "\n" for h in st.history))
    elif ctx.rank == 0 and ctx.log_path is not None and ctx.log_path.exists():
        ctx.log_path.unlink()


def _epoch(st: _Training, train: Any, val: Any, epoch: int) -> tuple[dict[str, Any], Any]:
    """Train one epoch, then validate: the epoch's row (as ``epochs.jsonl`` holds it) and
    its validation AUC (``None`` when undefined)."""
    t0 = time.perf_counter()
    sums, n_seen, rate, wait = _train_epoch(st, train, epoch)
    if st.scheduler is not None and st.interval == "epoch":
        st.scheduler.step()
    train_s = time.perf_counter() - t0
    _check_frozen_unchanged(st.det, st.frozen_ref, epoch)
    vm = _val_metrics(st.det, val, st.ctx, st.val_subset)
    row = {"epoch": epoch + 1,
           **{f"train_{k}": distributed.all_reduce_mean(st.dist, v / max(n_seen, 1))
              for k, v in sums.items()},
           **{f"val_{k}": v for k, v in vm.items()},
           "lr": st.optimizer.param_groups[0]["lr"], "train_s": round(train_s, 3),
           "segments_per_s": round(rate, 2), "data_wait_s": round(wait, 3),
           "seconds": round(time.perf_counter() - t0, 3)}
    return row, vm.get("auc")


def _train_epoch(st: _Training, train: Any,
                 epoch: int) -> tuple[dict[str, float], int, float, float]:
    """One pass over the epoch's draws: ``(summed logs weighted by batch size, segments
    seen, segments per second, seconds waited for data)`` on this rank. The wait is the
    time from asking the loader for a batch to having it on the device; each step ends in
    ``float(loss)``, which waits for the device, so the wait is time the device sat idle."""
    from avbench.media.torchdata import train_segments

    cfg, ctx = st.cfg, st.ctx
    seed_e = int(np.random.default_rng([ctx.seed, epoch]).integers(0, 2**31 - 1))
    torch.manual_seed(seed_e)
    draws = epoch_draws(st.labels, st.n_draws, ctx.seed, epoch, st.balance)
    micro = _micro_batches(len(draws), cfg.batch_size, cfg.grad_accum, st.dist.world_size,
                           st.dist.rank)
    loader = make_loader(train_segments(train, draws, seed_e), batch_sampler=micro,
                         workers=st.workers, device=ctx.device)
    st.model.train()
    st.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    n_seen, wait = 0, 0.0
    desc = f"epoch {epoch + 1}/{cfg.epochs}"
    batches = iter(loader)
    with Progress(ctx, total=len(micro) * cfg.batch_size, desc=desc, unit="seg") as bar:
        for i in itertools.count():
            t = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            batch = to_device(batch, st.device)
            wait += time.perf_counter() - t
            loss, logs = _backward(st, batch, epoch, i)
            if (i + 1) % cfg.grad_accum == 0:
                _step(st)
            n = batch["label"].shape[0]
            n_seen += n
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
            for k, v in (logs or {}).items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            bar.advance(n * st.dist.world_size, loss=sums["loss"] / n_seen)
        rate = bar.rate
    return sums, n_seen, rate, wait


def _backward(st: _Training, batch: dict[str, Any], epoch: int, i: int) -> tuple[Any, Any]:
    """The detector's loss on one micro-batch, its gradient accumulated; a
    ``TrainingError`` for a non-finite loss or CUDA running out of memory."""
    cfg = st.cfg
    try:
        with autocast_for(cfg.amp, st.ctx.device):
            loss, logs = st.det.loss(st.model, batch)
        if not torch.isfinite(loss.detach()).all():
            raise TrainingError(
                f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {i + 1}; "
                + (f"the last good checkpoint (epoch {epoch}) is kept in {st.ckpt_dir}; "
                   if epoch > 0 and st.ckpt_dir is not None else "")
                + "try a lower lr (--set lr=...) or --set clip_grad=1.0"
            )
        (loss / cfg.grad_accum).backward()
    except torch.cuda.OutOfMemoryError:
        raise TrainingError(
            f"CUDA out of memory with batch_size={cfg.batch_size}: lower it, e.g. "
            f"--set batch_size={max(1, cfg.batch_size // 2)} "
            f"--set grad_accum={cfg.grad_accum * 2} keeps the effective batch"
        ) from None
    return loss, logs


def _step(st: _Training) -> None:
    """One optimiser step on the accumulated gradients (averaged over ranks, clipped)."""
    _sync_grads(st.params, st.dist)
    if st.cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_(st.params, st.cfg.clip_grad)
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    if st.scheduler is not None and st.interval == "step":
        st.scheduler.step()


def _log_row(ctx: RunContext, row: dict[str, Any]) -> None:
    if ctx.log_path is not None:
        with open(ctx.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def _checkpoint(st: _Training, epoch: int) -> None:
    """``checkpoints/last.pt`` after ``epoch``: everything :func:`_resume_from` restores."""
    if st.ckpt_dir is None:
        return
    _save(st.ckpt_dir / "last.pt", {
        "version": CHECKPOINT_VERSION, "epoch": epoch, "model": st.det.state_dict(),
        "optimizer": st.optimizer.state_dict(),
        "scheduler": st.scheduler.state_dict() if st.scheduler is not None else None,
        "rng": _rng_state(), "best_auc": st.best.auc, "best_epoch": st.best.epoch,
        "best_state": st.best.state, "history": st.history,
        "sampler": {"balance": st.balance, "draws_per_epoch": st.n_draws, "seed": st.ctx.seed},
    })


def _select(st: _Training) -> FitInfo:
    """The state the run keeps: the best epoch's by validation AUC (``select=best``, where
    the AUC was defined), else the last epoch's."""
    notes = {"balance": st.balance, "draws_per_epoch": st.n_draws, "history": st.history}
    if st.cfg.select == "best" and st.best.state is not None:
        st.det.load_state_dict(st.best.state)
        return FitInfo(checkpoint="best-val", epoch=st.best.epoch, selection="validation AUC",
                       val_metrics={"auc": st.best.auc}, notes=notes)
    note = "" if st.cfg.select == "last" else "validation AUC undefined; kept the last epoch"
    return FitInfo(checkpoint="last", epoch=st.cfg.epochs, selection=note or "last epoch",
                   val_metrics=st.history[-1] if st.history else {}, notes=notes)


def _sync_grads(params: list[torch.nn.Parameter], dist: Any) -> None:
    """Average gradients over ranks (a no-op in one process). Parameters without a
    gradient on some rank contribute zeros, so every rank steps identically."""
    if not dist.enabled:
        return
    import torch.distributed as td

    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])
    td.all_reduce(flat)
    flat /= dist.world_size
    off = 0
    for p in params:
        n = p.numel()
        g = flat[off : off + n].view_as(p)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        off += n


def _epoch_line(ctx: RunContext, row: dict[str, Any]) -> None:
    parts = [f"epoch {row['epoch']}", f"loss {row.get('train_loss', float('nan')):.4f}"]
    for k in ("val_auc", "val_acc"):
        if row.get(k) is not None:
            parts.append(f"{k} {100 * row[k]:.2f}")
    parts.append(f"{row['segments_per_s']:.1f} seg/s")
    ctx.log(" | ".join(parts))
