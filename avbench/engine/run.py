"""One run = one detector on one fold of one protocol, end to end.

``dataset adapter -> VideoRecord index -> protocol split -> media prepare (+cache)
-> detector.fit(train, val) -> detector.evaluate(test) -> per-video mean -> metrics
-> results folder``. Only the train and validation splits reach ``fit``; the test split's
VideoSet is built after ``fit`` returns, and every run checks that no video sits in two
splits.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.config import config_hash, config_to_dict
from avbench.detector import Detector, RunContext
from avbench.engine import distributed
from avbench.engine.restore import write_fit_videos
from avbench.errors import (
    AvbenchError,
    BadMediaError,
    CheckpointError,
    LeakageError,
    ResultsError,
)
from avbench.io import atomic_write_bytes
from avbench.results import (
    CHECKPOINT_ERROR,
    RunIdentity,
    RunLock,
    RunRecord,
    atomic_write_json,
    new_run_id,
    read_run,
    run_folder,
    write_scores,
)


@dataclass
class RunOptions:
    detector: str
    protocol: str
    fold: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    out: Path = Path("results")
    resume: bool = False
    on_bad_media: str = "skip"
    workers: int = -1  # preparation processes; -1: avbench.media.cache.prepare_workers
    quiet: bool = False
    cache_dir: Path | None = None
    n_boot: int = 1000
    command: list[str] = field(default_factory=list)


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise AvbenchError(f"--device {device!r}: use auto, cpu or cuda[:N]")
    if device == "cpu":
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise AvbenchError(f"--device {device}: CUDA is not available on this machine")
    return device


def _git_commit() -> str | None:
    src = Path(__file__).resolve().parents[2]
    if not (src / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions(info: Any) -> dict[str, Any]:
    from importlib import metadata

    import numpy

    import avbench

    v: dict[str, Any] = {"avbench": avbench.__version__, "python": platform.python_version(),
                         "numpy": numpy.__version__, "platform": platform.platform()}
    for mod in ("torch", "av", "sklearn", "open_clip", "whisper"):
        m = sys.modules.get(mod)
        if m is not None:
            v[mod] = getattr(m, "__version__", "?")
    plugin = info.plugin
    if plugin == "avbench.builtin":
        v["plugin"] = {"name": plugin, "version": avbench.__version__}
    elif plugin:
        for dist in ("avbench-" + plugin, plugin):
            try:
                v["plugin"] = {"name": plugin, "version": metadata.version(dist)}
                break
            except (metadata.PackageNotFoundError, ValueError):
                continue
        else:
            v["plugin"] = {"name": plugin}
    return v


_PATH_OPTIONS = ("--out", "--cache", "--plugins-dir", "--from")


def _is_path(value: str) -> bool:
    return ("/" in value or "\\" in value) and (Path(value).is_absolute() or Path(value).exists())


def portable(config: dict[str, Any]) -> dict[str, Any]:
    """A config as results record it: a value naming a file keeps only the file's name (a
    result never holds a path of the machine that produced it; weights are identified by
    name and checksum in the detector's provenance)."""
    return {k: (Path(v).name if isinstance(v, str) and _is_path(v) else v)
            for k, v in config.items()}


def protocol_entry(protocol: Any, fold: str | None) -> dict[str, Any]:
    """The ``protocol`` block of a run record: which protocol, version, file and fold."""
    return {"name": protocol.name, "version": protocol.version, "fold": fold,
            "table": protocol.table, "metrics": list(protocol.metrics),
            "file_hash": protocol.file_hash, "balance": protocol.balance}


def datasets_entry(indexes: dict[str, Any]) -> dict[str, Any]:
    """The ``datasets`` block of a run record: each dataset's fingerprint and counts."""
    return {k: {"fingerprint": v.fingerprint, "n_videos": len(v.records),
                "index_problems": len(v.problems)} for k, v in indexes.items()}


def portable_command(argv: list[str]) -> list[str]:
    """The command line with dataset roots and other paths replaced by placeholders."""
    out: list[str] = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev == "--data" and "=" in a:
            name, _, value = a.partition("=")
            a = f"{name}=<path>" if _is_path(value) or Path(value).exists() else a
        elif prev in _PATH_OPTIONS or (prev in ("--protocol", "-p") and _is_path(a)):
            a = "<path>"
        elif a.startswith(tuple(f"{o}=" for o in _PATH_OPTIONS)):
            a = a.split("=", 1)[0] + "=<path>"
        elif "=" in a and prev == "--set" and _is_path(a.partition("=")[2]):
            a = a.partition("=")[0] + "=" + Path(a.partition("=")[2]).name
        out.append(a)
    return out


@dataclass
class ResumeChoice:
    """What ``--resume`` found: the run folder to continue (``None``: start a new run) and
    the one line to print about it (``None``: nothing to say)."""

    run_dir: Path | None
    message: str | None


def find_resumable(out: Path, protocol: str, fold: str | None, detector: str,
                   identity: RunIdentity) -> ResumeChoice:
    """The newest run of the same identity on the same fold that may be continued: not
    complete, and not failed on a checkpoint that cannot be read. When there is none, the
    message says why the closest candidate was not taken (what differed), in one line."""
    base = run_folder(out, protocol, fold, detector, "x").parent
    if not base.is_dir():
        return ResumeChoice(None, None)
    differing: list[tuple[int, RunRecord]] = []
    bad_checkpoint: RunRecord | None = None
    unreadable: tuple[str, str] | None = None
    for d in sorted((p for p in base.iterdir() if p.is_dir()), reverse=True):
        if not (d / "run.json").exists():
            continue
        try:
            rec = read_run(d)
        except ResultsError as e:
            unreadable = unreadable or (d.name, str(e))
            continue
        if rec.complete:
            continue
        same = rec.identity == identity
        if same and rec.resumable:
            return ResumeChoice(d, None)
        if same:
            bad_checkpoint = bad_checkpoint or rec
        elif rec.resumable:
            differing.append((len(rec.identity.differences(identity)), rec))
    if bad_checkpoint is not None:
        why = " ".join(str(bad_checkpoint.error or "").split())
        return ResumeChoice(None, f"--resume: run {bad_checkpoint.run_id or '?'} failed on a "
                                  f"checkpoint that cannot be read ({why}); not resumed, "
                                  f"starting a new run")
    if differing:
        rec = min(differing, key=lambda x: x[0])[1]  # the closest; the newest among equals
        name = rec.path.name if rec.path else rec.run_id
        return ResumeChoice(None, f"--resume: run {name} differs in "
                                  f"{rec.identity.describe_differences(identity)}, starting "
                                  f"a new run")
    if unreadable is not None:
        return ResumeChoice(None, f"--resume: run {unreadable[0]} cannot be read "
                                  f"({unreadable[1]}); starting a new run")
    return ResumeChoice(None, None)


class _Console:
    """Prints on rank 0 only. ``--quiet`` drops progress bars, not these lines."""

    def __init__(self, console: Any, rank: int) -> None:
        self.c = console
        self.quiet = rank != 0

    def print(self, *a: Any, **k: Any) -> None:
        if not self.quiet and self.c is not None:
            self.c.print(*a, **k)


def run(opts: RunOptions, console: Any = None) -> list[Path]:
    """Run every requested fold; returns the run folders written."""
    from avbench.plugins import get_plugins
    from avbench.protocols import get_protocol

    if opts.on_bad_media not in ("skip", "fail"):
        raise AvbenchError("--on-bad-media must be skip or fail")
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
        raise AvbenchError(f"--seed {opts.seed!r}: give a whole number >= 0")
    plugins = get_plugins()
    info = plugins.detector(opts.detector)
    protocol = get_protocol(opts.protocol, plugins)
    protocol.check_fold(opts.fold)
    info.make_config(opts.overrides)  # bad --set fails now, before any heavy work

    dist = distributed.init_from_env()
    out_console = _Console(console, dist.rank)
    t0 = time.perf_counter()
    indexes, adapters = index_datasets(opts, protocol, plugins, out_console, dist)
    index_s = time.perf_counter() - t0

    folds = [opts.fold] if opts.fold else (protocol.fold_names or [None])
    written = []
    try:
        for fold in folds:
            f = FoldRun(opts=opts, info=info, protocol=protocol, fold=fold, indexes=indexes,
                        console=out_console, dist=dist, timings={"index_s": index_s})
            written.append(_run_fold(f, adapters))
    except BaseException:
        distributed.leave(dist, wait=False)
        raise
    distributed.leave(dist, wait=True)
    return [w for w in written if w is not None]


def index_datasets(opts: RunOptions, protocol: Any, plugins: Any, console: _Console,
                   dist: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(indexes, adapters)`` of the protocol's datasets, from ``opts.data`` (rank 0
    first); a line per dataset says what was indexed."""
    from avbench.datasets.resolve import (
        check_dataset_names,
        find_dataset_sources,
        index_line,
        missing_dataset_message,
        resolve_dataset,
    )

    check_dataset_names(opts.data, plugins.datasets)
    sources = find_dataset_sources(opts.data)
    indexes = {}
    adapters = {}
    for name in protocol.datasets:
        adapters[name] = plugins.dataset(name).load()
        value = sources.get(name)
        if value is None:
            raise AvbenchError(missing_dataset_message(name, plugins.datasets))
        indexes[name] = distributed.rank0_first(
            dist, lambda n=name, v=value: resolve_dataset(n, v, plugins.datasets)
        )
        # the line names the index's problems, and the command that lists them
        console.print(index_line(name, value, indexes[name]), soft_wrap=True)
    return indexes, adapters


@dataclass
class FoldRun:
    """One fold of a run as its steps go: what :func:`run` hands it, then what each step
    adds (:func:`_run_fold`: splits, detector, record and folder; media; fit; scores and
    the finished record). ``avbench eval`` takes the same steps with ``fit`` replaced by
    restoring a trained run's detector (:mod:`avbench.engine.restore`)."""

    opts: RunOptions
    info: Any  # the detector's DetectorInfo
    protocol: Any
    fold: str | None
    indexes: dict[str, Any]
    console: _Console
    dist: Any
    #: seconds per step, in step order (``index_s`` first); ``total_s`` is added at the end
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    splits: dict[str, Any] = field(default_factory=dict)
    detector: Any = None
    spec: Any = None
    device: str = "cpu"
    record: RunRecord = field(default_factory=RunRecord)
    run_dir: Path | None = None
    lock: RunLock | None = None
    cache: Any = None
    #: ``{split: (usable records, cache entries)}`` once the media are prepared
    sets: dict[str, tuple[list[Any], dict[str, Any]]] = field(default_factory=dict)
    ctx: RunContext | None = None

    @property
    def label(self) -> str:
        return f"{self.protocol.name}" + (f" / {self.fold}" if self.fold else "")


def _run_fold(f: FoldRun, adapters: dict[str, Any]) -> Path | None:
    """Train and score one fold: the run folder (``None`` on ranks other than 0)."""
    f.splits = fold_splits(f.protocol, f.fold, f.indexes, adapters)
    use_detector(f, f.info.create(f.opts.overrides))
    f.record = new_record(f)
    open_run_dir(f)

    def steps() -> Path | None:
        if f.dist.rank == 0:
            f.record.write(f.run_dir)
            write_fit_videos(f.run_dir, f.splits)
        prepare_media(f)
        _fit(f)
        return score_and_record(f)

    return guarded(f, steps)


def fold_splits(protocol: Any, fold: str | None, indexes: dict[str, Any],
                adapters: dict[str, Any]) -> dict[str, Any]:
    """The fold's splits, its filters checked against the datasets' vocabularies first."""
    from avbench.protocols import build_splits, check_vocabulary

    check_vocabulary(protocol, fold, adapters)
    return build_splits(protocol, fold, indexes)


def use_detector(f: FoldRun, detector: Detector) -> None:
    """Make ``detector`` the fold's: its input spec, its device, the seeds set, and a torch
    detector's model built now (missing weights fail before media preparation)."""
    f.detector = detector
    f.spec = detector.input_spec()
    torch_det = _needs_torch(detector)
    f.device = resolve_device(f.opts.device) if torch_det else "cpu"
    _seed_everything(f.opts.seed)
    if torch_det:
        detector.model  # noqa: B018 - build now: missing weights fail before media preparation
    if f.device.startswith("cuda") and f.dist.world_size > 1:
        f.device = f"cuda:{f.dist.local_rank}"


def new_record(f: FoldRun) -> RunRecord:
    """The fold's ``run.json`` as it starts (status ``incomplete``)."""
    from avbench.media.cache import cache_format

    spec, detector = f.spec, f.detector
    config = portable(config_to_dict(detector.config))
    default = portable(config_to_dict(f.info.make_config()))  # the detector's with no --set
    return RunRecord(
        status="incomplete",
        created=_now(),
        command=portable_command(f.opts.command),
        detector_info={
            **f.info.to_dict(),
            "config": config,
            "config_hash": config_hash(config),
            "config_changes": config_changes(config, default),
            "input_spec": {"frames": spec.frames, "size": spec.size, "fps": spec.fps,
                           "sample_rate": spec.sample_rate, "modalities": list(spec.modalities)},
        },
        protocol_info=protocol_entry(f.protocol, f.fold),
        splits={k: {**s.summary(), "spec": s.spec.to_dict()} for k, s in f.splits.items()},
        datasets=datasets_entry(f.indexes),
        seed=f.opts.seed,
        device=f.device,
        world_size=f.dist.world_size,
        torch_threads=_torch_threads() if _needs_torch(detector) else None,
        media={"cache": cache_format()},
        git_commit=_git_commit(),
        versions=_versions(f.info),  # now: the identity holds avbench's and the plugin's
    )


def config_changes(config: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """The keys whose values ``config`` changes from the detector's ``default`` (what
    ``--set`` changed; tables label a row by them: ``sync-corr [max_lag=0]``)."""
    return {k: config.get(k) for k in sorted(set(config) | set(default))
            if config.get(k) != default.get(k) or (k in config) != (k in default)}


def open_run_dir(f: FoldRun) -> None:
    """Choose and lock the fold's run folder (a resumed one with ``--resume``) and say so."""
    run_dir, f.lock, resumed = _choose_run_dir(f.opts, f.protocol, f.fold, f.info, f.record,
                                               f.console, f.dist)
    f.run_dir = run_dir
    f.record.run_id = run_dir.name
    f.record.path = run_dir
    f.record.resumed = resumed
    f.console.print(f"[bold cyan]{f.info.name}[/] on [bold]{f.label}[/] -> {run_dir}",
                    soft_wrap=True)  # one line, whatever the width: a path to copy


def guarded(f: FoldRun, steps: Any) -> Any:
    """``steps()``, with the record marked ``incomplete`` (Ctrl-C) or ``failed`` (any other
    error) when it does not finish, and the folder's lock released in any case."""
    try:
        return steps()
    except KeyboardInterrupt:
        _mark(f.record, f.run_dir, f.dist, "incomplete",
              "interrupted (Ctrl-C); continue with --resume", "interrupted")
        raise
    except BaseException as e:
        kind = CHECKPOINT_ERROR if isinstance(e, CheckpointError) else type(e).__name__
        _mark(f.record, f.run_dir, f.dist, "failed", f"{type(e).__name__}: {e}", kind)
        raise
    finally:
        if f.lock is not None:
            f.lock.release()


def prepare_media(f: FoldRun) -> None:
    """Decode every split's videos into the prepared cache (:func:`_prepare_media`)."""
    from avbench.media.cache import PreparedCache

    t = time.perf_counter()
    f.cache = PreparedCache(f.opts.cache_dir)
    f.sets = _prepare_media(f.opts, f.splits, f.indexes, f.spec, f.cache, f.record, f.console,
                            f.dist)
    f.timings["prepare_s"] = time.perf_counter() - t


def run_context(f: FoldRun, *, log: bool = True) -> RunContext:
    """What the detector is handed besides the data (``log``: an ``epochs.jsonl``)."""
    return RunContext(
        seed=f.opts.seed, device=f.device, run_dir=f.run_dir, resume=f.record.resumed,
        quiet=f.opts.quiet, console=f.console.c, rank=f.dist.rank,
        world_size=f.dist.world_size, balance=f.protocol.balance,
        log_path=f.run_dir / "epochs.jsonl" if log else None,
    )


def _fit(f: FoldRun) -> None:
    """``fit`` on the train and val splits only (no test video among them), then the
    learned state saved as ``state.pt`` / ``state.npz``."""
    from avbench.media.videoset import VideoSet

    test_ids = {(r.dataset, r.id) for r in f.sets["test"][0]}
    for name in ("train", "val"):
        leak = [r.id for r in f.sets[name][0] if (r.dataset, r.id) in test_ids]
        if leak:
            raise LeakageError(f"{len(leak)} test video(s) would reach fit via {name}: {leak[0]}")
    train = VideoSet(f.sets["train"][0], f.sets["train"][1], f.cache, f.spec)
    val = VideoSet(f.sets["val"][0], f.sets["val"][1], f.cache, f.spec)
    f.ctx = run_context(f)
    t = time.perf_counter()
    fit_info = f.detector.fit(train, val, f.ctx)
    f.timings["fit_s"] = time.perf_counter() - t
    del train, val
    f.record.checkpoint = fit_info.to_dict()
    if f.dist.rank == 0:
        _save_state(f.detector, f.run_dir)


def score_and_record(f: FoldRun) -> Path | None:
    """Score every segment of the test split (its VideoSet made only now, after ``fit``),
    write ``scores.csv`` and ``metrics.json``, then ``run.json`` as complete. Returns the
    run folder (``None`` on ranks other than 0)."""
    from avbench.media.videoset import VideoSet

    t = time.perf_counter()
    ctx = f.ctx if f.ctx is not None else run_context(f, log=False)
    test = VideoSet(f.sets["test"][0], f.sets["test"][1], f.cache, f.spec)
    vidx, seg_scores = f.detector.evaluate(test, ctx)
    f.timings["eval_s"] = time.perf_counter() - t
    if f.dist.rank != 0:
        return None
    df = _video_frame(test, vidx, seg_scores)
    rec = f.record
    metrics = write_results(f.run_dir, df, n_boot=f.opts.n_boot, seed=f.opts.seed, record=rec)
    rec.timings = {**{k: round(v, 3) for k, v in f.timings.items()},
                   "total_s": round(time.perf_counter() - f.started + f.timings["index_s"], 3)}
    rec.describe = _safe_describe(f.detector)
    rec.versions.update(_versions(f.info))  # libraries imported since the start too
    rec.n_test_videos = len(df)
    rec.status = "complete"
    rec.finished = _now()
    rec.write(f.run_dir)
    _print_metrics(f.console, metrics, f.protocol.metrics, f.label)
    return f.run_dir


def _prepare_media(opts: RunOptions, splits: dict[str, Any], indexes: dict[str, Any],
                   spec: Any, cache: Any, record: RunRecord, console: _Console,
                   dist: Any) -> dict[str, tuple[list[Any], dict[str, Any]]]:
    """Prepare every split's videos (rank 0 first): ``{split: (usable records, cache
    entries)}``. Videos that cannot be decoded are skipped and listed in
    ``record.skipped_media`` (``--on-bad-media fail``: a BadMediaError instead); each split's
    ``n_used`` is recorded."""
    from avbench.media.cache import faces_entry, prepare
    from avbench.media.videoset import pipeline_for_spec

    prepared = {}
    skipped: list[dict[str, Any]] = []
    for name, split in splits.items():
        idx = indexes[split.dataset]
        pipeline = pipeline_for_spec(spec, max_seconds=split.spec.max_seconds,
                                     face_crop=idx.face_crop)
        items = [(r.id, idx.root / r.id) for r in split.records]
        res = distributed.rank0_first(
            dist,
            lambda items=items, pipeline=pipeline: prepare(
                items, pipeline, cache, workers=opts.workers,
                progress=not opts.quiet and dist.rank == 0,
            ),
        )
        for p in res.problems:
            skipped.append({"split": name, "id": p.id, "kind": p.kind, "reason": p.reason})
        prepared[name] = res
    record.media.update(faces_entry((splits[n].dataset, r) for n, r in prepared.items()))
    kinds = dict(sorted(Counter(s["kind"] for s in skipped).items()))
    if skipped:
        summary = ", ".join(f"{k}: {v}" for k, v in kinds.items())
        first = skipped[0]
        if opts.on_bad_media == "fail":
            raise BadMediaError(first["id"], f"{first['reason']} ({len(skipped)} bad file(s) "
                                f"in all; {summary})", first["kind"])
        console.print(f"[bold red]{len(skipped)} video(s) could not be decoded and are "
                      f"skipped[/] ({summary}); listed in run.json under skipped_media")
    record.skipped_media = {"count": len(skipped), "by_kind": kinds, "items": skipped}
    sets = {}
    for name, split in splits.items():
        res = prepared[name]
        recs = [r for r in split.records if r.id in res.entries]
        record.splits[name]["n_used"] = len(recs)
        if not recs:
            raise AvbenchError(f"split {name}: no decodable video left")
        sets[name] = (recs, res.entries)
    return sets


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _needs_torch(detector: Detector) -> bool:
    """A TorchDetector (its module is loaded whenever such a detector exists)."""
    mod = sys.modules.get("avbench.torch_detector")
    return mod is not None and isinstance(detector, mod.TorchDetector)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def _save_state(detector: Detector, run_dir: Path) -> None:
    import io

    import numpy as np

    state = detector.state_dict()
    if not state:
        return
    if "torch" in sys.modules and any(type(v).__module__.startswith("torch") for v in state.values()):
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(run_dir / "state.pt", buf.getvalue())
    else:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in state.items()})
        atomic_write_bytes(run_dir / "state.npz", buf.getvalue())


def write_results(run_dir: Path, df: Any, *, n_boot: int, seed: int,
                  record: RunRecord) -> dict[str, Any]:
    """Write ``scores.csv`` (one row per test video) and ``metrics.json`` (every metric with
    its bootstrap interval over videos) into ``run_dir``, and set ``record.scores_sha256`` to
    the sha256 of the ``scores.csv`` written (the caller writes ``run.json``); returns the
    metrics. Every writer of a complete run goes through here (``avbench run``, ``eval``,
    ``score``), so every complete run records that hash."""
    from avbench.metrics import metrics_from_frame

    metrics = metrics_from_frame(df, n_boot=n_boot, seed=seed)
    record.scores_sha256 = write_scores(run_dir / "scores.csv", df)
    atomic_write_json(run_dir / "metrics.json", {
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
        "bootstrap": {"n": n_boot, "seed": seed, "unit": "video"},
        "n_videos": len(df),
    })
    return metrics


def _video_frame(test: Any, vidx: Any, seg_scores: dict[str, Any]) -> Any:
    import numpy as np
    import pandas as pd

    n = len(test)
    counts = np.bincount(vidx, minlength=n)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise AvbenchError(
            f"the detector scored no segment of {len(missing)} test video(s), e.g. "
            f"{test.records[missing[0]].id}"
        )
    rows = {
        "id": [r.id for r in test.records],
        "dataset": [r.dataset for r in test.records],
        "label": [r.label for r in test.records],
        "label_v": [r.label_v for r in test.records],
        "label_a": [r.label_a for r in test.records],
        "type": [r.type for r in test.records],
        "method": [r.method for r in test.records],
        "category": [r.category for r in test.records],
        "group": [r.group for r in test.records],
    }
    for key in ("score", "score_v", "score_a"):
        if key in seg_scores:
            sums = np.bincount(vidx, weights=np.asarray(seg_scores[key], dtype=np.float64),
                               minlength=n)
            rows[key] = sums / counts
    rows["n_segments"] = counts
    rows["padded_frames"] = [test.padded_frames(i) for i in range(n)]
    return pd.DataFrame(rows)


def _safe_describe(detector: Detector) -> dict[str, Any]:
    try:
        return detector.describe()
    except Exception as e:
        return {"error": str(e)}


def _mark(record: RunRecord, run_dir: Path, dist: Any, status: str, why: str,
          kind: str) -> None:
    """Record how the run ended; ``kind`` is ``error_kind`` (``checkpoint`` keeps the run
    from being picked by ``--resume`` again)."""
    if dist.rank != 0 or not run_dir.exists():
        return
    record.status = status
    record.error = why
    record.error_kind = kind
    record.finished = _now()
    with contextlib.suppress(OSError):  # best effort: the original error is what matters
        record.write(run_dir)


def _choose_run_dir(opts: RunOptions, protocol: Any, fold: str | None, info: Any,
                    record: RunRecord, console: Any, dist: Any
                    ) -> tuple[Path, RunLock | None, bool]:
    """The folder this run writes into, its lock (held on rank 0 only), and whether it is a
    run continued with ``--resume``. Another process in the folder is a RunLockedError."""
    identity = record.identity
    run_dir: Path | None = None
    message = None
    if opts.resume and dist.rank == 0:
        choice = find_resumable(opts.out, protocol.name, fold, info.name, identity)
        run_dir, message = choice.run_dir, choice.message
        if run_dir is None and message is None:
            message = ("--resume: no incomplete run of this detector, config and seed to "
                       "resume; starting a new run")
    lock = None
    if run_dir is not None:  # rank 0, resuming: lock it, then check it is still resumable
        lock = RunLock(run_dir).acquire()
        try:
            again = read_run(run_dir)
        except ResultsError as e:
            again, message = None, f"--resume: run {run_dir.name} cannot be read now ({e})"
        if again is not None and (not again.resumable or again.identity != identity):
            message = f"--resume: run {run_dir.name} changed meanwhile ({again.status})"
            again = None
        if again is None:
            lock.release()
            lock, run_dir = None, None
            message += "; starting a new run"
        else:
            record.created = again.created or record.created
    if message:
        from rich.markup import escape

        console.print(f"[yellow]{escape(message)}[/]")
    chosen = run_dir.name if run_dir is not None else (new_run_id() if dist.rank == 0 else None)
    run_id = distributed.broadcast_object(dist, chosen)
    resumed = distributed.broadcast_object(dist, lock is not None)
    run_dir = run_folder(opts.out, protocol.name, fold, info.name, run_id)
    if dist.rank == 0 and lock is None:
        lock = RunLock(run_dir).acquire()
    return run_dir, lock, bool(resumed)


def _print_metrics(console: _Console, metrics: dict, wanted: tuple, label: str) -> None:
    if console.quiet:
        return
    from rich.table import Table

    console.print(f"[bold]{label}[/]: test metrics, video level (95% bootstrap interval)")
    t = Table()
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("n", justify="right")
    for k, m in metrics.items():
        style = "bold" if k in wanted else ""
        if m.value is None:
            t.add_row(k, "n/a", m.undefined or "", str(m.n), style=style)
        else:
            ci = f"[{100 * m.lo:.1f}, {100 * m.hi:.1f}]" if m.lo is not None else ""
            t.add_row(k, f"{100 * m.value:.2f}", ci, str(m.n), style=style)
    console.print(t)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

