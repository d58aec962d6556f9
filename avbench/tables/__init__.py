"""Tables (the paper's 1 to 5, and any a plugin registers) from a results folder, with the paper's own numbers beside them.

``build_and_render(results_root, table, fmt)`` is the single entry point the CLI uses;
``collect``, ``build_table`` and ``render`` are its pieces. Numbers are percentages, always
recomputed from each run's ``scores.csv``. Rows copied from the paper say ``reported`` in
their ``Source`` column; rows avbench computed say ``computed``. Importing this package is
cheap (no torch, no pandas until a table is built).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from avbench.errors import ConfigError
from avbench.tables.build import (
    AGGREGATES,
    Runs,
    build_table,
    collect,
    table_for_protocol,
    table_specs,
)
from avbench.tables.model import COMPUTED, REPORTED, Cell, Column, Row, Table
from avbench.tables.published import load_published
from avbench.tables.render import FORMATS, cell_text, render


def build_and_render(
    results_root: str | Path,
    table: int,
    fmt: str = "rich",
    *,
    published: bool = True,
    include_incomplete: bool = False,
    ci: bool = False,
    aggregate: str = "latest",
    mixed_versions: str = "newest",
    protocols: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] | None = None,
    compare: str | None = None,
    width: int | None = None,
) -> Any:
    """Collect the runs below ``results_root``, build Table ``table`` and render it as
    ``fmt`` (``rich`` gives a rich renderable, the others a string).

    Runs are checked against ``protocols`` (default: those registered now); ``warn`` is
    called with the one line of each run folder left out (the table's footnotes list them
    too); ``width`` splits a rich table to fit a terminal that wide."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = Path(results_root)
    if published and not root.exists():  # a first look: the paper's rows, and how to add ours
        t = build_table(table, Runs(), published=True, protocols=protocols)
        t.footnotes = [n for n in t.footnotes if not n.startswith("No computed rows")]
        t.footnotes.append(
            f"No results folder {root} yet: computed rows appear once `avbench run --detector "
            f"NAME --protocol PROTOCOL` has written runs there (`avbench detectors` and "
            f"`avbench protocols` list both; the README's first command is one).")
        return render(t, fmt, width=width)
    runs = collect(root, include_incomplete=include_incomplete, protocols=protocols)
    if warn is not None:
        for line in runs.problems:
            warn(line)
    t = build_table(table, runs, published=published, ci=ci, aggregate=aggregate,
                    mixed_versions=mixed_versions, protocols=protocols, compare=compare)
    return render(t, fmt, width=width)


__all__ = [
    "AGGREGATES",
    "COMPUTED",
    "FORMATS",
    "REPORTED",
    "Cell",
    "Column",
    "Row",
    "Runs",
    "Table",
    "build_and_render",
    "build_table",
    "cell_text",
    "collect",
    "load_published",
    "render",
    "table_for_protocol",
    "table_specs",
]
