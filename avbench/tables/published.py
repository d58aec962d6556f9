"""The paper's published numbers (Tables 1 to 5), shipped as ``avbench/data/published.toml``.

These rows are always marked ``reported``: avbench did not compute them.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from avbench.tables.model import REPORTED, SOURCE_COLUMN, Cell, Row

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MISSING = "-"


@functools.cache
def load_published() -> dict[str, Any]:
    """The parsed ``published.toml`` (cached; do not mutate it)."""
    text = resources.files("avbench").joinpath("data/published.toml").read_text("utf-8")
    data = tomllib.loads(text)
    for n in range(1, 6):
        t = data[f"table{n}"]
        for row in t["rows"]:
            if len(row["values"]) != len(t["columns"]):
                raise ValueError(f"published.toml table{n} row {row['printed']!r}: "
                                 f"{len(row['values'])} values for {len(t['columns'])} columns")
    return data


def citation() -> str:
    return str(load_published()["paper"]["short"])


def published_table(number: int) -> dict[str, Any]:
    return load_published()[f"table{number}"]


def published_rows(number: int, text_of: Any) -> list[Row]:
    """Rows of Table ``number`` as printed in the paper. ``text_of(entry)`` gives a row's
    text columns (each table shows different ones)."""
    t = published_table(number)
    rows = []
    for entry in t["rows"]:
        cells = {}
        for key, v in zip(t["columns"], entry["values"], strict=True):
            if v == MISSING:
                cells[key] = Cell(reported_missing=True)
            else:
                cells[key] = Cell(value=float(v))
        text = dict(text_of(entry))
        text[SOURCE_COLUMN] = REPORTED
        rows.append(Row(text=text, cells=cells, source=REPORTED))
    return rows


def published_footnote(number: int) -> str:
    t = published_table(number)
    return (f"Rows marked 'reported' are copied from {citation()}, Table {number}; avbench did "
            f"not compute them and their protocol details may differ. {t['note']}")
