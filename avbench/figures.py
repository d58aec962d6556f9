"""The paper's Fig. 3 from a trained run: frame-level audio-visual cosine distance per category.

For every test video of the run's own test split, the run's detector (rebuilt from
``run.json`` with its saved state, as ``avbench eval`` rebuilds it:
:mod:`avbench.engine.restore`) gives aligned per-frame features of each non-overlapping
segment through its optional ``frame_features(batch, ctx) -> (video_feats, audio_feats)``
method, both (B, T, D). A frame's distance is the cosine distance ``1 - cos(v_t, a_t)`` of
its two features (0 when they point the same way, 2 when opposite); a segment's is the mean
over its T frames, a video's the mean over its segments (every segment has T frames, so
this is the mean over the video's frames; a video shorter than one segment counts its
loop padding, as its scores do). The figure shows the distribution of the per-video
distances of each category (real, RVFA, FVRA-WL, ...), as Fig. 3 of Miao et al. does.

Only the test split the run was scored on is used: the split built from ``--data`` must
hash to the one the run records, so the figure is of the same videos as the run's scores.
Nothing here is imported by ``avbench --help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avbench.errors import AvbenchError, ResultsError

METHOD = "frame_features"
BATCH = 8


@dataclass
class Trained:
    """A run whose detector can be asked for frame features: its record, its registered
    detector and the rebuilt detector (state loaded)."""

    record: Any
    info: Any
    detector: Any


def offers_frame_features(detector_class: type) -> bool:
    """Whether a detector class implements the optional ``frame_features`` method."""
    return callable(getattr(detector_class, METHOD, None))


def check_offers(run_dir: Path, plugins: Any) -> tuple[Any, Any]:
    """``(record, detector info)`` of the run in ``run_dir`` when its detector offers frame
    features and reads both streams; an :class:`AvbenchError` (one line) otherwise. Reads
    only ``run.json`` and the detector's class."""
    from avbench.results import read_run

    rec = read_run(run_dir)
    if not rec.complete:
        raise ResultsError(f"--from {run_dir}: the run is {rec.status}; only a complete run "
                           f"has the state to draw from")
    if rec.extra.get("evaluation_only"):
        raise ResultsError(f"--from {run_dir}: an evaluation-only run; give the run it scored "
                           f"({rec.extra.get('source_run', {}).get('folder', '?')})")
    info = plugins.detector(rec.detector)
    cls = info.load()
    if not offers_frame_features(cls):
        raise AvbenchError(f"detector {info.name!r} of {run_dir} offers no frame_features "
                           f"method, so it has no per-frame audio-visual features to compare")
    spec = rec.detector_info.get("input_spec") or {}
    modalities = spec.get("modalities") if isinstance(spec, dict) else None
    if isinstance(modalities, list) and not {"video", "audio"} <= set(modalities):
        raise AvbenchError(f"detector {info.name!r} of {run_dir} reads only "
                           f"{', '.join(modalities)}: no audio-visual features to compare")
    return rec, info


def load_trained(run_dir: Path, plugins: Any) -> Trained:
    """The run's detector rebuilt from its record with its saved state, through
    :mod:`avbench.engine.restore` (the config must hash as recorded)."""
    from avbench.engine.restore import (
        STATE_FILES,
        Source,
        restore_detector,
        source_config,
    )

    rec, info = check_offers(run_dir, plugins)
    states = [Path(run_dir) / n for n in STATE_FILES if (Path(run_dir) / n).is_file()]
    if not states:
        raise ResultsError(f"--from {run_dir}: no {' or '.join(STATE_FILES)}; the trained "
                           f"state is needed")
    source = Source(record=rec, state_file=states[0], fit_videos={})
    config = source_config(source, info, {})
    return Trained(rec, info, restore_detector(source, info, config, rec.seed))


def scored_split(trained: Trained, data: list[str], plugins: Any) -> Any:
    """The run's test split built from ``data``; it must hash to the recorded one."""
    from avbench.commands.protocols import resolve_indexes
    from avbench.protocols import build_splits, get_protocol

    rec = trained.record
    protocol = get_protocol(rec.protocol, plugins)
    if protocol.version != rec.protocol_version:
        raise AvbenchError(f"the run is of {rec.protocol} version {rec.protocol_version}, the "
                           f"registered one is version {protocol.version}")
    fold = rec.protocol_info.get("fold")
    indexes = resolve_indexes(protocol, data, plugins, required=True)
    split = build_splits(protocol, fold, indexes)["test"]
    recorded = (rec.splits.get("test") or {}).get("hash")
    if split.hash != recorded:
        raise AvbenchError(f"the test split built from --data (hash {split.hash}) is not the "
                           f"run's (hash {recorded}): give the dataset the run was tested on")
    return split, indexes[split.dataset]


def frame_distances(video: Any, audio: Any) -> Any:
    """Per-frame cosine distance ``1 - cos`` of aligned features (B, T, D) -> (B, T)."""
    import numpy as np

    v = np.asarray(video, dtype=np.float64)
    a = np.asarray(audio, dtype=np.float64)
    if v.shape != a.shape or v.ndim != 3:
        raise ValueError(f"frame_features gave video features {v.shape} and audio features "
                         f"{a.shape}; both must be (B, T, D), the same shape")
    dot = (v * a).sum(axis=-1)
    norm = np.linalg.norm(v, axis=-1) * np.linalg.norm(a, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, dot / norm, 0.0)
    return 1.0 - np.clip(cos, -1.0, 1.0)


def av_distances(trained: Trained, data: list[str], plugins: Any, *, device: str = "cpu",
                 cache_dir: Path | None = None, workers: int = -1, progress: bool = False,
                 console: Any = None) -> Any:
    """Per test video: id, label, category and its mean frame-level audio-visual cosine
    distance, in the order of the test split (a pandas DataFrame). Videos that cannot be
    decoded are left out (``.attrs['skipped']`` counts them)."""
    import numpy as np
    import pandas as pd

    from avbench.detector import RunContext
    from avbench.engine.run import resolve_device
    from avbench.media.cache import PreparedCache, prepare
    from avbench.media.videoset import VideoSet, pipeline_for_spec
    from avbench.report.plots import category_of

    det = trained.detector
    split, index = scored_split(trained, data, plugins)
    spec = det.input_spec()
    cache = PreparedCache(cache_dir)
    pipeline = pipeline_for_spec(spec, max_seconds=split.spec.max_seconds,
                                 face_crop=index.face_crop)
    res = prepare([(r.id, index.root / r.id) for r in split.records], pipeline, cache,
                  workers=workers, progress=progress, console=console)
    records = [r for r in split.records if r.id in res.entries]
    if not records:
        raise AvbenchError("no test video of the run could be decoded")
    videos = VideoSet(records, res.entries, cache, spec)
    ctx = RunContext(seed=trained.record.seed, device=resolve_device(device), quiet=True)
    sums = np.zeros(len(records))
    counts = np.zeros(len(records), dtype=np.int64)
    for batch in videos.iter_batches(BATCH):
        v, a = getattr(det, METHOD)(batch, ctx)
        d = frame_distances(v, a).mean(axis=1)
        if d.shape != (len(batch),):
            raise AvbenchError(f"{trained.info.name}.frame_features gave features of "
                               f"{d.shape[0]} segments for a batch of {len(batch)}")
        np.add.at(sums, batch.video_index, d)
        np.add.at(counts, batch.video_index, 1)
    rows = [{"id": r.id, "label": r.label, "category": r.category, "type": r.type,
             "method": r.method} for r in records]
    df = pd.DataFrame(rows)
    df["category"] = df.apply(category_of, axis=1)
    df["distance"] = sums / np.maximum(counts, 1)
    df["n_segments"] = counts
    df.attrs["skipped"] = len(split.records) - len(records)
    return df[["id", "label", "category", "distance", "n_segments"]]


def title_of(rec: Any) -> str:
    fold = rec.protocol_info.get("fold")
    return f"{rec.detector} on {rec.protocol}" + (f" / {fold}" if fold else "")


def av_distance_figure(df: Any, title: str, fmt: str = "png") -> bytes:
    """Fig. 3: the distribution of the per-video distances of each category (each category's
    bars sum to 1; dashed lines at the categories' medians), over the range of the data."""
    import matplotlib
    import numpy as np

    from avbench.report.plots import category_sort_key, drawing, new_figure, to_bytes

    values = df["distance"].to_numpy(dtype=float)
    lo, hi = float(values.min()), float(values.max())
    pad = max((hi - lo) * 0.05, 1e-3)
    bins = np.linspace(lo - pad, hi + pad, 26)
    names = sorted(df["category"].unique(), key=category_sort_key)
    with drawing():
        colours = matplotlib.colormaps["tab10"]
        fig = new_figure(6.4, 4.0)
        ax = fig.add_subplot()
        for k, name in enumerate(names):
            v = values[(df["category"] == name).to_numpy()]
            colour = colours(k % 10)
            ax.hist(v, bins=bins, weights=np.full(len(v), 1.0 / len(v)), histtype="step",
                    linewidth=1.6, color=colour,
                    label=f"{name} (n={len(v)}, median {np.median(v):.3f})")
            ax.axvline(float(np.median(v)), color=colour, linestyle="--", linewidth=1)
        ax.set_xlabel("per-video mean over frames of 1 - cos(f'_v, f'_a)")
        ax.set_ylabel("share of the category's videos")
        ax.set_title(f"Frame-level audio-visual cosine distance\n{title}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return to_bytes(fig, fmt)


def summary(df: Any) -> list[tuple[str, int, float, float]]:
    """(category, videos, mean, median) of the distances, categories in the figure's order."""
    from avbench.report.plots import category_sort_key

    out = []
    for cat in sorted(df["category"].unique(), key=category_sort_key):
        d = df.loc[df["category"] == cat, "distance"]
        out.append((str(cat), len(d), float(d.mean()), float(d.median())))
    return out


def figure_format(out: Path) -> str:
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise AvbenchError(f"--out {out}: give a .png or .svg file")
    return fmt


def report_section(selection: Any, plugins: Any, data: list[str], *, device: str = "cpu",
                   cache_dir: Path | None = None, workers: int = -1) -> list[Any]:
    """The report's Fig. 3 section: a figure per shown run whose detector offers
    ``frame_features`` (with ``data``, the datasets its test videos are read from), else
    a note naming those runs; no section when no shown run's detector offers it."""
    from avbench.report import Extra, Figure

    offering, notes = [], []
    for fold in selection.folds:
        for shown in fold.runs:
            try:
                info = plugins.detector(shown.detector)
                if offers_frame_features(info.load()):
                    offering.append((fold, shown))
            except AvbenchError:
                continue  # not registered now, or its plugin fails: nothing to draw from
    if not offering:
        return []
    section = Extra(
        title="Fig. 3: frame-level audio-visual cosine distance",
        anchor="av-distance",
        intro="As Fig. 3 of Miao et al.: for each test video, the cosine distance between the "
              "detector's aligned visual and audio features of each frame (its "
              "frame_features), averaged over the video's frames; one distribution per "
              "category. Drawn from the run's saved state on its own test split.")
    if not data:
        section.notes.append(
            "Not drawn: the test videos are needed. Run avbench report again with --data "
            "NAME=PATH for the runs " + ", ".join(s.where for _, s in offering) + ".")
        return [section]
    for fold, shown in offering:
        try:
            trained = load_trained(shown.run.path, plugins)
            df = av_distances(trained, data, plugins, device=device, cache_dir=cache_dir,
                              workers=workers)
        except (AvbenchError, ValueError) as e:
            notes.append(f"{shown.where}: not drawn, {' '.join(str(e).split())}")
            continue
        stats = "; ".join(f"{c}: n={n}, mean {m:.3f}, median {md:.3f}"
                          for c, n, m, md in summary(df))
        skipped = df.attrs.get("skipped", 0)
        section.figures.append(Figure(
            title=f"{fold.title}: {shown.detector}",
            png=av_distance_figure(df, title_of(trained.record)),
            caption=f"Run {shown.where}. {stats}."
                    + (f" {skipped} test video(s) could not be decoded and are left out."
                       if skipped else ""),
            anchor=f"av-distance-{fold.anchor}-{shown.detector}"))
    section.notes.extend(notes)
    return [section]
