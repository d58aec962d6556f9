"""``avbench report`` (one static HTML page about a results folder, :mod:`avbench.report`) and
``avbench figure av-distance`` (the paper's Fig. 3 from a trained run, :mod:`avbench.figures`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avbench.errors import AvbenchError, ResultsError


def report_cmd(results: Path, out: Path, plugins: Any, data: list[str] | None = None, *,
               device: str = "cpu", cache_dir: Path | None = None, workers: int = -1) -> Path:
    """Write ``out/index.html`` from the runs below ``results``, with Fig. 3 for runs whose
    detector offers ``frame_features`` (drawn when ``data`` gives their test videos);
    returns the file."""
    from avbench.figures import report_section
    from avbench.protocols import all_protocols
    from avbench.report import write_report

    if not results.is_dir():
        what = "is not a folder" if results.exists() else "results folder not found"
        raise ResultsError(f"--results {results}: {what}")
    if out.exists() and not out.is_dir():
        raise AvbenchError(f"--out {out}: exists and is not a folder")
    return write_report(results, out, protocols=all_protocols(plugins),
                        extras=lambda sel: report_section(sel, plugins, list(data or []),
                                                          device=device, cache_dir=cache_dir,
                                                          workers=workers))


def av_distance_cmd(run_dir: Path, out: Path, data: list[str], plugins: Any, console: Any, *,
                    csv: Path | None = None, device: str = "cpu", cache_dir: Path | None = None,
                    workers: int = -1, quiet: bool = False) -> Path:
    """``avbench figure av-distance``: Fig. 3 of a trained run as PNG or SVG."""
    from rich.table import Table

    from avbench import figures
    from avbench.io import atomic_write_bytes, atomic_write_text

    fmt = figures.figure_format(out)
    if not (Path(run_dir) / "run.json").is_file():
        raise ResultsError(f"--from {run_dir}: no run.json (not a run folder)")
    figures.check_offers(run_dir, plugins)  # before any heavy work
    if not data:
        raise AvbenchError("give --data NAME=PATH (or NAME=synthetic): the run's test videos "
                           "are read again")
    trained = figures.load_trained(run_dir, plugins)
    df = figures.av_distances(trained, data, plugins, device=device, cache_dir=cache_dir,
                              workers=workers, progress=not quiet, console=console)
    atomic_write_bytes(out, figures.av_distance_figure(df, figures.title_of(trained.record),
                                                       fmt))
    if csv is not None:
        atomic_write_text(csv, df.to_csv(index=False, float_format="%.10g"))
    t = Table(title="mean frame-level audio-visual cosine distance per video")
    for col in ("category", "videos", "mean", "median"):
        t.add_column(col, justify="left" if col == "category" else "right")
    for cat, n, mean, median in figures.summary(df):
        t.add_row(cat, str(n), f"{mean:.4f}", f"{median:.4f}")
    console.print(t)
    if df.attrs.get("skipped"):
        console.print(f"{df.attrs['skipped']} test video(s) could not be decoded and are left "
                      f"out")
    return out
