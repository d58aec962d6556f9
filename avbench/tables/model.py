"""The table model shared by the builders and the renderers.

A :class:`Table` is a list of rows over a fixed list of columns. Numbers are percentages, as
in the paper. Each row says where its numbers come from (``source``: ``reported`` for numbers
copied from the paper, ``computed`` for numbers avbench computed from ``scores.csv``), so no
renderer can mix the two unannounced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPORTED = "reported"
COMPUTED = "computed"
COMPUTED_INCOMPLETE = "computed (incomplete)"
EXTERNAL = "external"  # scores computed outside avbench, recorded by `avbench score`
SOURCE_COLUMN = "Source"


@dataclass(frozen=True)
class Column:
    """A numeric column: ``metric`` of runs of ``protocol`` (fold ``fold``) under ``group``.

    ``protocol`` is None for a derived column (Table 2's AVG-FV).
    """

    key: str
    label: str
    group: str = ""
    protocol: str | None = None
    fold: str = "all"
    metric: str = ""

    @property
    def flat(self) -> str:
        """One-line header, e.g. ``RVFA AP``."""
        return f"{self.group} {self.label}" if self.group else self.label


@dataclass
class Cell:
    """One number of a table (a percentage), or why there is none.

    ``value`` None with ``undefined`` set: the metric is undefined on the data (shown
    ``n/a``); with ``reported_missing``: the paper prints ``-``; otherwise no run gave it
    (shown blank). ``rank`` is 1 for the best value of its column, 2 for the second best.
    ``p`` is the p-value of the paired test against ``table --compare``'s detector, and
    ``significant`` whether it is below the table's threshold.
    """

    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    std: float | None = None
    n_runs: int = 0
    undefined: str | None = None
    reported_missing: bool = False
    incomplete: bool = False
    rank: int = 0
    p: float | None = None
    significant: bool = False

    @property
    def present(self) -> bool:
        return self.value is not None


@dataclass
class Row:
    """``text`` maps each text column to a string (or a bool for a check-mark column).

    A computed row is one (``detector``, ``config_hash``); ``label`` is its name in the
    table (the detector's, with the config keys that differ from its default when it is not
    the default config). ``notes`` are the row's own notes (cells that scored fewer test
    videos than the split), also among the table's footnotes."""

    text: dict[str, Any]
    cells: dict[str, Cell]
    source: str
    detector: str | None = None
    config_hash: str = ""
    label: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Table:
    number: int
    title: str
    text_columns: list[str]
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)
    decimals: int = 1
    ci: bool = False
    aggregate: str = "latest"
    check_columns: tuple[str, ...] = ()
    compare: str | None = None  # the detector cells were tested against (table --compare)

    def rank(self) -> None:
        """Mark the best (1) and second-best (2) cell of each column over all rows shown.

        Higher is better for every metric here. Values are compared as printed (rounded to
        the table's decimals), so equal printed values share a rank, as in the paper. A
        column with fewer than two values has no best one: nothing is marked.
        """
        for col in self.columns:
            cells = [r.cells[col.key] for r in self.rows if col.key in r.cells]
            for c in cells:
                c.rank = 0
            if sum(c.value is not None for c in cells) < 2:
                continue
            shown = sorted({round(c.value, self.decimals) for c in cells if c.value is not None},
                           reverse=True)
            for rank, v in enumerate(shown[:2], start=1):
                for c in cells:
                    if c.value is not None and round(c.value, self.decimals) == v:
                        c.rank = rank

    def frame(self) -> Any:
        """The table as a pandas DataFrame: text columns, then one column per metric with a
        two-level header (group, metric); values are percentages, NaN where there is none."""
        import pandas as pd

        data: dict[tuple[str, str], list[Any]] = {}
        for name in self.text_columns:
            data[(name, "")] = [r.text.get(name, "") for r in self.rows]
        for col in self.columns:
            data[(col.group, col.label)] = [
                r.cells[col.key].value if col.key in r.cells and r.cells[col.key].present
                else float("nan") for r in self.rows
            ]
        df = pd.DataFrame(data)
        df.columns = pd.MultiIndex.from_tuples(list(data))
        return df

    def cell(self, row: int, key: str) -> Cell:
        return self.rows[row].cells[key]
