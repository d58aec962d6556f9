"""``avbench data check`` and ``avbench data prepare``."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from avbench.errors import AvbenchError


def _indexes(data_items: list[str] | None, plugins: Any) -> dict[str, Any]:
    """The datasets given with ``--data``, else every one configured in the environment
    (``AVBENCH_DATA_<NAME>``) or ``avbench.toml``, as ``avbench run`` finds them."""
    from avbench.datasets.resolve import (
        SETTINGS_FILE,
        find_dataset_sources,
        parse_data_items,
        resolve_dataset,
    )

    items = parse_data_items(data_items or [])
    if not items:
        items = find_dataset_sources(None, names=list(plugins.datasets))
    if not items:
        raise AvbenchError(f"no dataset given: pass --data NAME=PATH, set AVBENCH_DATA_<NAME>=PATH, "
                           f"or add NAME = \"PATH\" to the [data] table of {SETTINGS_FILE}")
    return {name: resolve_dataset(name, value, plugins.datasets) for name, value in items.items()}


def _probe(path: str, face_crop: bool,
           detector: Any = None) -> tuple[str, str, tuple[int, int] | None]:
    """Decode one file fully: (kind, reason) of why it cannot be decoded (both empty when it
    can) and, with face cropping, (frames that showed a face, frames searched)."""
    from avbench.errors import BadMediaError
    from avbench.media.decode import Pipeline, decode

    try:
        clip = decode(Path(path), Pipeline(size=64, face_crop=face_crop), face_detector=detector)
    except BadMediaError as e:
        return e.kind, e.reason, ((0, 0) if face_crop and e.kind == "no-face" else None)
    return "", "", (clip.face_found, clip.face_searched) if face_crop else None


def check(data_items: list[str] | None, *, decode: bool, workers: int, plugins: Any, console: Any) -> int:
    """Counts per type, method, group and label; every index problem; every unreadable file;
    for face-cropped datasets, the share of frames with a face (per dataset, worst videos).
    Exit code 1 when a file cannot be decoded or shows too few faces (``no-face``)."""
    from rich.markup import escape
    from rich.table import Table

    bad_total = 0
    for name, idx in _indexes(data_items, plugins).items():
        recs = idx.records
        n_fake = sum(r.label for r in recs)
        console.print(f"[bold]{name}[/]: {len(recs)} videos ({len(recs) - n_fake} real, "
                      f"{n_fake} fake); fingerprint {idx.fingerprint}")
        for field in ("type", "method", "category", "group"):
            counts = Counter((getattr(r, field) or "-", r.label) for r in recs)
            values = sorted({v for v, _ in counts})
            if values == ["-"]:
                continue
            t = Table(title=f"by {field}", title_justify="left")
            for col in (field, "real", "fake"):
                t.add_column(col, justify="left" if col == field else "right")
            for v in values:
                t.add_row(v, str(counts[(v, 0)]), str(counts[(v, 1)]))
            console.print(t)
        if idx.problems:  # every one: the run start names this command to list them all
            reasons = Counter(p.reason.split(":")[0] for p in idx.problems)
            console.print(f"[yellow]{len(idx.problems)} problem(s) while indexing[/]: "
                          + escape("; ".join(f"{k} ({v})" for k, v in reasons.most_common())))
            for p in idx.problems:
                console.print(escape(f"  {p.where}: {p.reason}"))
        if decode:
            bad_total += _decode_all(name, idx, workers, console)
    return 1 if bad_total else 0


def _decode_all(name: str, idx: Any, workers: int, console: Any) -> int:
    """Decode every indexed file (in ``workers`` processes, or this one for 0), print the
    ones that cannot be decoded or show a face in too few frames, and the face summary;
    return how many are bad."""
    from avbench.detector import RunContext
    from avbench.engine.progress import Progress
    from avbench.media import face

    recs = idx.records
    paths = [str(idx.root / r.id) for r in recs]
    detector = face.default_face_detector() if idx.face_crop else None
    threshold = face.min_face_share() if idx.face_crop else 0.0
    bad: list[tuple[str, str, str]] = []
    shares: dict[str, float] = {}
    ctx = RunContext(console=console)
    with (Progress(ctx, total=len(paths), desc=f"decoding {name}", unit="video") as bar,
          contextlib.ExitStack() as stack):
        args = (paths, [idx.face_crop] * len(paths), [detector] * len(paths))
        if workers > 0:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            results = pool.map(_probe, *args, chunksize=4)
        else:
            results = map(_probe, *args)
        for r, (kind, reason, faces) in zip(recs, results, strict=True):
            if faces is not None:
                shares[r.id] = faces[0] / faces[1] if faces[1] else 0.0
                if not kind and shares[r.id] < threshold:
                    kind, reason = "no-face", face.few_faces_reason(*faces, threshold)
            if kind:
                bad.append((r.id, kind, reason))
            bar.advance(1)
    if bad:
        why = " or show too few faces" if idx.face_crop else ""
        console.print(f"[bold red]{len(bad)} of {len(paths)} file(s) cannot be decoded{why}[/] "
                      f"({', '.join(f'{k}: {v}' for k, v in Counter(b[1] for b in bad).items())})")
        for vid, kind, reason in bad:
            console.print(f"  {vid}: {kind}: {reason}")
    else:
        console.print(f"all {len(paths)} file(s) decode")
    if idx.face_crop:
        print_faces(console, face.face_summary(shares, threshold=threshold,
                                               detector=face.detector_key(detector)))
    return len(bad)


def print_faces(console: Any, summary: dict[str, Any]) -> None:
    """One dataset's :func:`avbench.media.face.face_summary`: a line and the worst videos."""
    from rich.markup import escape
    from rich.table import Table

    n = summary["videos"]
    if not n:
        return
    console.print(
        f"faces ({escape(summary['detector'])}): over {n} video(s) a face in "
        f"{summary['mean_share']:.1%} of the searched frames on average (median "
        f"{summary['median_share']:.1%}); {summary['no_face']} under the minimum share "
        f"{summary['min_share']:g} are no-face ({summary['without_any_face']} without any face)")
    t = Table(title="fewest faces", title_justify="left")
    t.add_column("video")
    t.add_column("share of frames with a face", justify="right")
    for row in summary["worst"]:
        t.add_row(escape(row["id"]), f"{row['share']:.1%}")
    console.print(t)


def prepare_cmd(data_items: list[str] | None, *, size: int, max_seconds: float | None, workers: int,
                cache_dir: Path | None, timing: bool, plugins: Any, console: Any) -> int:
    from avbench.media.cache import PreparedCache, faces_entry, prepare
    from avbench.media.decode import Pipeline

    cache = PreparedCache(cache_dir)
    code = 0
    for name, idx in _indexes(data_items, plugins).items():
        pipeline = Pipeline(size=size, max_seconds=max_seconds, face_crop=idx.face_crop)
        items = [(r.id, idx.root / r.id) for r in idx.records]
        res = prepare(items, pipeline, cache, workers=workers, progress=True, console=console)
        console.print(f"[bold]{name}[/]: {len(res.entries)} of {len(items)} video(s) prepared "
                      f"({res.n_decoded} decoded now, {res.n_cached} already cached) in "
                      f"{res.seconds:.1f} s; cache: {cache.root}")
        if res.problems:
            code = 1
            console.print(f"[bold red]{len(res.problems)} video(s) could not be prepared:[/]")
            for p in res.problems:
                console.print(f"  {p.id}: {p.kind}: {p.reason}")
        for faces in faces_entry([(name, res)]).get("faces", {}).values():
            print_faces(console, faces)
        if timing and res.entries:
            _timing(idx, res, cache, pipeline, console)
    return code


def _timing(idx: Any, res: Any, cache: Any, pipeline: Any, console: Any, n: int = 20) -> None:
    """Time a random 16-frame segment read from the cache against decoding its source."""
    import numpy as np

    from avbench.detector import InputSpec
    from avbench.media.decode import decode
    from avbench.media.videoset import VideoSet

    rng = np.random.default_rng(0)
    recs = [r for r in idx.records if r.id in res.entries]
    pick = [recs[i] for i in rng.choice(len(recs), size=min(n, len(recs)), replace=False)]
    spec = InputSpec(size=pipeline.size or 224)
    vs = VideoSet(pick, {r.id: res.entries[r.id] for r in pick}, cache, spec)
    t = time.perf_counter()
    for r in pick:
        decode(idx.root / r.id, pipeline)
    t_decode = (time.perf_counter() - t) / len(pick)
    t = time.perf_counter()
    vs.random_segments(np.arange(len(pick)), rng)
    t_cache = (time.perf_counter() - t) / len(pick)
    console.print(f"timing over {len(pick)} videos: decode source {1000 * t_decode:.1f} ms/video, "
                  f"random segment from cache {1000 * t_cache:.2f} ms "
                  f"-> {t_decode / max(t_cache, 1e-9):.0f}x faster")
