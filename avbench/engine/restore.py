"""Scoring a trained run again, on another protocol's or dataset's test split (``avbench eval``).

Every ``avbench run`` leaves what this needs in its folder: ``run.json`` (the detector's name
and resolved config), the learned state (``state.pt``, or ``state.npz`` for a numpy
detector) and ``fit_videos.json``, the ids of every video of the splits ``fit`` saw (train
and validation), which must hash to the split hashes of the record.

``avbench eval --from RUN_DIR --protocol P`` takes a *complete* run, rebuilds its detector
from the record (the rebuilt config must hash as recorded; ``--set`` may only give what the
record keeps by name, such as the path of a weights file), loads the state, and refuses when
any test video of P's split (same dataset, same id) was among the videos the source run
trained or selected on, or when P's train and validation splits (built from the same
``--data``) do not hash as the source's: scoring without training is P's experiment only
when P trains and validates on what the source did (``cross-dataset`` on an ``intra`` run,
not a ``cross-manip`` fold, whose held-out manipulation an ``intra`` model saw). It then takes the steps of ``avbench run`` without ``fit``: the test
split's media, every segment scored, ``scores.csv``, ``metrics.json`` and ``run.json``, in a
run folder of P like any other, which tables verify as usual. That record says
``"evaluation_only": true``, keeps the source run's ``checkpoint`` block (which state
produced the scores), and names the source in a ``source_run`` block: its run id and folder,
its identity (detector, config hash, protocol, version, fold, seed, dataset fingerprints,
versions), the hashes of its train and validation splits, and the sha256 of its state file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avbench.errors import (
    AvbenchError,
    CheckpointError,
    ConfigError,
    LeakageError,
    ProtocolError,
    ResultsError,
)

FIT_VIDEOS = "fit_videos.json"
STATE_FILES = ("state.pt", "state.npz")


# -- what a run leaves for this ------------------------------------------------------------------


def write_fit_videos(run_dir: Path, splits: dict[str, Any]) -> None:
    """``fit_videos.json`` in ``run_dir``: for every split but ``test``, its dataset, its hash
    and the sorted ids of all its videos (those skipped as undecodable too)."""
    from avbench.results import atomic_write_json

    atomic_write_json(Path(run_dir) / FIT_VIDEOS, {
        name: {"dataset": s.dataset, "hash": s.hash, "ids": sorted(r.id for r in s.records)}
        for name, s in splits.items() if name != "test"
    })


def read_fit_videos(run_dir: Path, record: Any) -> dict[str, tuple[str, set[str]]]:
    """``{split: (dataset, ids)}`` from ``fit_videos.json``, each split's ids checked against
    the split hash ``record`` keeps; a ``ResultsError`` naming the file otherwise."""
    from avbench.protocols import split_hash
    from avbench.records import VideoRecord

    f = Path(run_dir) / FIT_VIDEOS
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{f}: missing (the run is older than the file), so the videos it "
                           f"trained on cannot be checked against the new test split; run it "
                           f"again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{f}: unreadable ({type(e).__name__}: {e})") from None
    wanted = [k for k in record.splits if k != "test"]
    if not isinstance(doc, dict) or sorted(doc) != sorted(wanted):
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise ResultsError(f"{f}: holds splits {got}, the run's record {sorted(wanted)}")
    out = {}
    for name in wanted:
        entry = doc[name]
        ids = entry.get("ids") if isinstance(entry, dict) else None
        dataset = entry.get("dataset") if isinstance(entry, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) \
                or not isinstance(dataset, str):
            raise ResultsError(f"{f}: split {name!r} has no dataset and list of ids")
        found = split_hash([VideoRecord(id=i, dataset=dataset, label=0, label_v=0, label_a=0)
                            for i in ids])
        recorded = record.splits[name].get("hash") if isinstance(record.splits[name], dict) \
            else None
        if found != recorded:
            raise ResultsError(f"{f}: the ids of split {name!r} hash to {found}, the run "
                               f"records {recorded}")
        out[name] = (dataset, set(ids))
    return out


# -- the source run ------------------------------------------------------------------------------


@dataclass
class Source:
    """A complete trained run to be scored again."""

    record: Any  # its RunRecord
    state_file: Path
    fit_videos: dict[str, tuple[str, set[str]]]

    @property
    def folder(self) -> str:
        """``<protocol>/<fold>/<detector>/<run-id>`` (what a record may name: no machine path)."""
        return "/".join(Path(self.record.path).parts[-4:])

    def block(self) -> dict[str, Any]:
        """The eval record's ``source_run`` block."""
        rec = self.record
        return {
            "run_id": rec.run_id, "folder": self.folder, "identity": rec.identity.to_dict(),
            "splits": {k: {"dataset": d, "hash": rec.splits[k].get("hash"), "n": len(ids)}
                       for k, (d, ids) in self.fit_videos.items()},
            "state": {"file": self.state_file.name,
                      "sha256": hashlib.sha256(self.state_file.read_bytes()).hexdigest()},
        }


def load_source(run_dir: Path) -> Source:
    """The run in ``run_dir``, if it may be scored again: complete, not itself an
    evaluation-only run, with its state file and ``fit_videos.json``."""
    from avbench.results import read_run

    run_dir = Path(run_dir)
    rec = read_run(run_dir)
    where = f"--from {run_dir}"
    if not rec.complete:
        why = f" ({' '.join(str(rec.error).split())})" if rec.error else ""
        raise ResultsError(f"{where}: the run is {rec.status}{why}; only a complete run can "
                           f"be scored again")
    if rec.extra.get("evaluation_only"):
        src = rec.extra.get("source_run", {})
        raise ResultsError(f"{where}: an evaluation-only run holds no trained state; give the "
                           f"run it scored ({src.get('folder', '?')})")
    states = [run_dir / n for n in STATE_FILES if (run_dir / n).is_file()]
    if not states:
        what = ("the detector is training-free: score it with avbench run on the protocol"
                if (rec.checkpoint or {}).get("checkpoint") == "none"
                else "it cannot be restored")
        raise ResultsError(f"{where}: no {' or '.join(STATE_FILES)} ({what})")
    return Source(record=rec, state_file=states[0], fit_videos=read_fit_videos(run_dir, rec))


def source_config(source: Source, info: Any, overrides: dict[str, str]) -> Any:
    """The source run's detector config, rebuilt from its record (keys the record holds at
    their defaults keep the default's value), ``overrides`` applied; a ``ConfigError`` when
    it does not hash as the record says (a ``--set`` that changes the detector, or a detector
    that changed since the run)."""
    from avbench.config import apply_overrides, config_hash, config_to_dict
    from avbench.engine.run import portable

    def as_json(config: Any) -> dict[str, Any]:  # as run.json holds it: tuples as lists
        return json.loads(json.dumps(portable(config_to_dict(config)), default=str))

    recorded = source.record.detector_info.get("config") or {}
    base = info.make_config()
    now = as_json(base)
    unknown = sorted(set(recorded) - set(now))
    if unknown:
        raise ResultsError(f"{source.record.path}/run.json: detector {info.name!r} has no "
                           f"config key {unknown[0]!r} now (the detector changed since the run)")
    changed = {k: v for k, v in recorded.items() if now[k] != v}
    config = apply_overrides(apply_overrides(base, changed, who=f"detector {info.name!r}"),
                             overrides, who=f"detector {info.name!r}")
    rebuilt = as_json(config)
    want = source.record.config_hash
    if config_hash(rebuilt) != want:
        diff = [k for k in rebuilt if rebuilt[k] != recorded.get(k)]
        key = diff[0] if diff else "?"
        if key not in recorded and key != "?":
            raise ConfigError(f"detector {info.name!r} now has config key {key!r} "
                               f"({rebuilt[key]!r}), which the run's record lacks (the "
                               f"detector changed since the run); run it again")
        cause = f"--set {key}" if key in overrides else f"rebuilding detector {info.name!r}"
        raise ConfigError(f"{cause} changes {key} of the run's detector ({recorded.get(key)!r} "
                          f"-> {rebuilt.get(key)!r}; config hash {want} -> "
                          f"{config_hash(rebuilt)}); eval scores the detector as trained")
    return config


def restore_detector(source: Source, info: Any, config: Any, seed: int) -> Any:
    """The source run's detector, built with ``config`` and its saved state loaded (a
    ``CheckpointError`` naming the state file when it cannot be read or does not fit)."""
    from avbench.engine.run import _needs_torch, _seed_everything

    cls = info.load()
    try:
        det = cls(config)
    except (ValueError, TypeError) as e:
        raise AvbenchError(f"detector {info.name!r}: {e}") from None
    det.name = info.name
    _seed_everything(seed)  # as `avbench run` builds it
    if _needs_torch(det):
        det.model  # noqa: B018 - built now, so that the state has a model to fit
    state = _read_state(source.state_file)
    try:
        det.load_state_dict(state)
    except Exception as e:
        raise CheckpointError(source.state_file, f"does not fit {info.name}: "
                                                 f"{type(e).__name__}: {e}") from None
    return det


def _read_state(path: Path) -> dict[str, Any]:
    if path.suffix == ".pt":
        from avbench.engine.train import _load  # tensors only (weights_only=True)

        state = _load(path)
        if not isinstance(state, dict):
            raise CheckpointError(path, f"is a {type(state).__name__}, not a state dict")
        return state
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # truncated, not a zip, pickled objects
        raise CheckpointError(path, f"is not a readable state ({type(e).__name__})") from None


def check_no_overlap(source: Source, test: Any, where: str) -> None:
    """A ``LeakageError`` when a video of ``test`` (same dataset and id) was in a split the
    source run fitted on."""
    for name, (dataset, ids) in source.fit_videos.items():
        shared = sorted(r.id for r in test.records if r.dataset == dataset and r.id in ids)
        if shared:
            raise LeakageError(f"{len(shared)} test video(s) of {where} were in the {name} "
                               f"split of the source run {source.record.run_id} (e.g. "
                               f"{dataset}:{shared[0]}); its scores on them would be no test")


_FIT_VERBS = {"train": ("trained", "trains"), "val": ("validated", "validates")}


def check_same_training(source: Source, splits: dict[str, Any], target: str,
                        run_args: str) -> None:
    """A ``ProtocolError`` unless every split of ``splits`` but ``test`` (those ``fit`` sees
    under ``target``, ``<protocol>/<fold>``) hashes as the source run recorded it: only then
    are the source model's scores on the target's test split that protocol's scores.
    ``cross-dataset`` trains and validates as ``intra`` does; a ``cross-manip`` fold holds
    one manipulation out of training, which an ``intra`` model saw (and the fold's model
    did not see it, so it is not ``intra``'s model either). ``run_args`` are the ``avbench
    run`` options (``-p P [--fold F]``) the message suggests instead."""
    rec = source.record
    names = sorted({*rec.splits, *splits} - {"test"}, key=lambda n: (n != "train", n))
    for name in names:
        entry = rec.splits.get(name)
        had = entry.get("hash") if isinstance(entry, dict) else None
        want = splits[name].hash if name in splits else None
        if had != want:
            did, does = _FIT_VERBS.get(name, ("fitted", "fits"))
            changed = rec.detector_info.get("config_changes") or {}
            sets = "".join(f" --set {shlex.quote(f'{k}={_set_value(v)}')}"
                           for k, v in sorted(changed.items()))
            raise ProtocolError(
                f"--from {rec.path}: the run was {did} on {rec.protocol}/{rec.fold}'s {name} "
                f"split (hash {had or 'none'}); {target} {does} on another (hash "
                f"{want or 'none'}), so its scores would not be that protocol's: train under "
                f"it with `avbench run -d {rec.detector} {run_args}{sets}`")


def _set_value(value: Any) -> str:
    """A config value as ``--set`` reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


# -- avbench eval ----------------------------------------------------------------------------------


def evaluate_from(source_dir: Path, opts: Any, console: Any = None) -> list[Path]:
    """Score the run in ``source_dir`` on ``opts.protocol``'s test split (every fold in turn
    without ``opts.fold``); ``opts`` is a ``RunOptions`` whose detector and seed are taken
    from the source. Returns the run folders written."""
    from avbench.engine import distributed
    from avbench.engine import run as steps
    from avbench.plugins import get_plugins
    from avbench.protocols import get_protocol

    if opts.on_bad_media not in ("skip", "fail"):
        raise AvbenchError("--on-bad-media must be skip or fail")
    source = load_source(source_dir)
    plugins = get_plugins()
    info = plugins.detector(source.record.detector)
    protocol = get_protocol(opts.protocol, plugins)
    protocol.check_fold(opts.fold)
    opts = dataclasses.replace(opts, detector=info.name, seed=source.record.seed, resume=False)
    config = source_config(source, info, opts.overrides)

    dist = distributed.init_from_env()
    out = steps._Console(console, dist.rank)
    t0 = time.perf_counter()
    indexes, adapters = steps.index_datasets(opts, protocol, plugins, out, dist)
    index_s = time.perf_counter() - t0
    tests = {}
    for fold in [opts.fold] if opts.fold else (protocol.fold_names or [None]):
        splits = steps.fold_splits(protocol, fold, indexes, adapters)
        check_no_overlap(source, splits["test"], protocol.name + (f" fold {fold}" if fold else ""))
        check_same_training(source, splits, f"{protocol.name}/{fold or 'all'}",
                            f"-p {opts.protocol}" + (f" --fold {fold}" if fold else ""))
        tests[fold] = splits["test"]
    detector = restore_detector(source, info, config, opts.seed)
    written = []
    try:
        for fold, test in tests.items():
            f = steps.FoldRun(opts=opts, info=info, protocol=protocol, fold=fold,
                              indexes=indexes, console=out, dist=dist,
                              timings={"index_s": index_s})
            written.append(_score_fold(f, test, detector, source))
    except BaseException:
        distributed.leave(dist, wait=False)
        raise
    distributed.leave(dist, wait=True)
    return [w for w in written if w is not None]


def _score_fold(f: Any, test: Any, detector: Any, source: Source) -> Path | None:
    from avbench.engine import run as steps

    f.splits = {"test": test}
    steps.use_detector(f, detector)
    f.record = steps.new_record(f)
    f.record.checkpoint = dict(source.record.checkpoint or {})
    f.record.extra["evaluation_only"] = True
    f.record.extra["source_run"] = source.block()
    steps.open_run_dir(f)

    def run_steps() -> Path | None:
        if f.dist.rank == 0:
            f.record.write(f.run_dir)
        steps.prepare_media(f)
        return steps.score_and_record(f)

    return steps.guarded(f, run_steps)
