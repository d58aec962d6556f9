"""``avbench eval``: score a trained run's saved detector on another test split, no training.

The work is :func:`avbench.engine.restore.evaluate_from`; this module is only the command
line (it imports nothing heavy, so that ``avbench --help`` stays quick).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def eval_command(
    source: Annotated[Path, typer.Option("--from", help="A complete run folder (<protocol>/<fold>/<detector>/<run-id>) whose saved state is scored.")],
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Protocol (name or .toml file) whose test split is scored.")],
    fold: Annotated[str | None, typer.Option(help="Score one fold's test split (default: every fold in turn).")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH of a dataset, or NAME=synthetic. Repeatable.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE for what the run's record keeps by name only (a weights file's path); anything else must stay as trained.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    on_bad_media: Annotated[str, typer.Option(help="skip (default; reported in run.json) or fail.")] = "skip",
    workers: Annotated[int, typer.Option(help="Processes for media preparation (-1: one per core on more than two cores).")] = -1,
    cache: Annotated[Path | None, typer.Option(help="Prepared-media cache folder (default: AVBENCH_CACHE or the user cache).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, for logs.")] = False,
) -> None:
    """Score a trained run on another protocol's or dataset's test split, without training.

    The new run folder is marked evaluation-only and names its source run. Refused unless the protocol trains and validates on the source run's train and val splits (cross-dataset on an intra run), and when a test video was in them.
    """
    from avbench.cli import _ARGV, _console, _plugins, _warn_plugins
    from avbench.config import parse_set_items
    from avbench.datasets.resolve import parse_data_items
    from avbench.engine.restore import evaluate_from
    from avbench.engine.run import RunOptions

    _warn_plugins(_plugins())
    opts = RunOptions(
        detector="", protocol=protocol, fold=fold, data=parse_data_items(data or []),
        overrides=parse_set_items(set_), device=device, out=out, on_bad_media=on_bad_media,
        workers=workers, quiet=quiet, cache_dir=cache, command=["avbench", *_ARGV.get()],
    )
    folders = evaluate_from(source, opts, console=_console())
    if not quiet and folders:
        _console().print(f"[green]done[/]: {len(folders)} run folder(s) written under {out}")
