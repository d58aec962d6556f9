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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avbench.detector import FitInfo, RunContext
from avbench.engine import distributed
from avbench.engine.evaluate import (
    autocast_for,
    dist_of,
    evaluate_torch,
    keep_freed_memory,
    make_loader,
    resolve_workers,
    to_device,
)
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


def fit_torch(det: Any, train: Any, val: Any, ctx: RunContext) -> FitInfo:
    from avbench.media.torchdata import TrainSegments

    cfg = det.config
    dist = dist_of(ctx)
    device = torch.device(ctx.device)
    keep_freed_memory(device)
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
    interval = getattr(det, "scheduler_interval", "epoch")
    workers = resolve_workers(cfg.num_workers)
    val_subset = _val_segment_subset(val, cfg.val_segments, ctx.seed)
    ckpt_dir = (ctx.run_dir / "checkpoints") if ctx.run_dir is not None else None
    select = cfg.select

    start_epoch = 0
    best: dict[str, Any] = {"auc": -math.inf, "epoch": None, "state": None}
    history: list[dict[str, Any]] = []
    last = ckpt_dir / "last.pt" if ckpt_dir is not None else None
    if ctx.resume and last is not None and last.exists():
        ck = _resume_from(last, det, optimizer, scheduler)
        start_epoch = int(ck["epoch"]) + 1
        best = {"auc": ck["best_auc"], "epoch": ck["best_epoch"], "state": ck.get("best_state")}
        history = list(ck.get("history", []))
        if ctx.rank == 0:
            ctx.log(f"resuming after epoch {start_epoch} from {last.name}")
            if ctx.log_path is not None:  # drop lines of the epoch that was cut short
                ctx.log_path.write_text("".join(json.dumps(h) + "\n" for h in history))
    elif ctx.rank == 0 and ctx.log_path is not None and ctx.log_path.exists():
        ctx.log_path.unlink()
    frozen_ref = _frozen_buffers(det)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        seed_e = int(np.random.default_rng([ctx.seed, epoch]).integers(0, 2**31 - 1))
        torch.manual_seed(seed_e)
        draws = epoch_draws(labels, n_draws, ctx.seed, epoch, balance)
        dataset = TrainSegments(train, draws, seed_e)
        micro = _micro_batches(len(draws), cfg.batch_size, cfg.grad_accum, dist.world_size, dist.rank)
        loader = make_loader(dataset, batch_sampler=micro, workers=workers, device=ctx.device)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        n_seen = 0
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        with Progress(ctx, total=len(micro) * cfg.batch_size, desc=desc, unit="seg") as bar:
            for i, batch in enumerate(loader):
                batch = to_device(batch, device)
                try:
                    with autocast_for(cfg.amp, ctx.device):
                        loss, logs = det.loss(model, batch)
                    if not torch.isfinite(loss.detach()).all():
                        raise TrainingError(
                            f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {i + 1}; "
                            + (f"the last good checkpoint (epoch {epoch}) is kept in {ckpt_dir}; "
                               if epoch > 0 and ckpt_dir is not None else "")
                            + "try a lower lr (--set lr=...) or --set clip_grad=1.0"
                        )
                    (loss / cfg.grad_accum).backward()
                except torch.cuda.OutOfMemoryError:
                    raise TrainingError(
                        f"CUDA out of memory with batch_size={cfg.batch_size}: lower it, e.g. "
                        f"--set batch_size={max(1, cfg.batch_size // 2)} "
                        f"--set grad_accum={cfg.grad_accum * 2} keeps the effective batch"
                    ) from None
                if (i + 1) % cfg.grad_accum == 0:
                    _sync_grads(params, dist)
                    if cfg.clip_grad:
                        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if scheduler is not None and interval == "step":
                        scheduler.step()
                n = batch["label"].shape[0]
                n_seen += n
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
                for k, v in (logs or {}).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                bar.advance(n * dist.world_size, loss=sums["loss"] / n_seen)
            rate = bar.rate
        if scheduler is not None and interval == "epoch":
            scheduler.step()
        train_s = time.perf_counter() - t0
        _check_frozen_unchanged(det, frozen_ref, epoch)
        vm = _val_metrics(det, val, ctx, val_subset)
        row = {"epoch": epoch + 1,
               **{f"train_{k}": distributed.all_reduce_mean(dist, v / max(n_seen, 1))
                  for k, v in sums.items()},
               **{f"val_{k}": v for k, v in vm.items()},
               "lr": optimizer.param_groups[0]["lr"], "train_s": round(train_s, 3),
               "segments_per_s": round(rate, 2), "seconds": round(time.perf_counter() - t0, 3)}
        history.append(row)
        auc = vm.get("auc")
        if auc is not None and auc > best["auc"]:
            best = {"auc": auc, "epoch": epoch + 1,
                    "state": {k: v.clone() for k, v in det.state_dict().items()}}
        if ctx.rank == 0:
            if ctx.log_path is not None:
                with open(ctx.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            if ckpt_dir is not None:
                _save(ckpt_dir / "last.pt", {
                    "version": CHECKPOINT_VERSION, "epoch": epoch, "model": det.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": _rng_state(), "best_auc": best["auc"], "best_epoch": best["epoch"],
                    "best_state": best["state"], "history": history,
                    "sampler": {"balance": balance, "draws_per_epoch": n_draws, "seed": ctx.seed},
                })
            _epoch_line(ctx, row)
        distributed.barrier(dist)

    if select == "best" and best["state"] is not None:
        det.load_state_dict(best["state"])
        return FitInfo(checkpoint="best-val", epoch=best["epoch"], selection="validation AUC",
                       val_metrics={"auc": best["auc"]},
                       notes={"balance": balance, "draws_per_epoch": n_draws,
                              "history": history})
    note = "" if select == "last" else "validation AUC undefined; kept the last epoch"
    return FitInfo(checkpoint="last", epoch=cfg.epochs, selection=note or "last epoch",
                   val_metrics=history[-1] if history else {},
                   notes={"balance": balance, "draws_per_epoch": n_draws, "history": history})


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
