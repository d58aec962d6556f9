"""Which runs a report shows: the runs ``avbench table`` would use, grouped by fold.

Runs are read only through :func:`avbench.tables.collect`, which checks every run folder
against its own record and the protocols registered now (:mod:`avbench.tables.verify`);
what it leaves out is listed with its reason. Per protocol only the newest protocol version
found is shown (as in the tables); per (protocol, fold, detector) the most recent complete
run is shown, and older runs of the same cell are listed as such.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from avbench.results import ALL_FOLDS, RunRecord
from avbench.tables.build import Runs, _recency, _version_key


@dataclass
class Shown:
    """One run a report shows: its record, its folder relative to the results folder and its
    ``scores.csv`` (as :meth:`RunRecord.scores` reads it)."""

    run: RunRecord
    where: str
    scores: Any

    @property
    def detector(self) -> str:
        return self.run.detector


@dataclass
class FoldRuns:
    """The runs shown for one fold of one protocol (``fold`` is ``all`` without folds), one
    per detector, in detector order."""

    protocol: str
    version: str
    fold: str
    runs: list[Shown] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.protocol if self.fold == ALL_FOLDS else f"{self.protocol} / {self.fold}"

    @property
    def anchor(self) -> str:
        return "fold-" + "".join(c if c.isalnum() else "-" for c in self.title.lower())


@dataclass
class Selection:
    """Every fold shown, every usable run (``all_runs``, with which of them are shown), and the
    runs left out with one line each saying why."""

    folds: list[FoldRuns]
    all_runs: list[tuple[RunRecord, str, str]]  # (record, folder, role)
    left_out: list[str]


def where(run: RunRecord, runs: Runs) -> str:
    """The run's folder relative to the results folder, with ``/`` separators."""
    if run.path is None:
        return run.run_id
    if runs.root is not None:
        try:
            return run.path.relative_to(runs.root).as_posix()
        except ValueError:
            pass
    return run.path.name


def select(runs: Runs, protocols: Mapping[str, Any]) -> Selection:
    """The folds and runs a report shows, from runs collected by :func:`avbench.tables.collect`
    (complete runs only)."""
    left_out = list(runs.problems)
    for r in runs.left_out:
        left_out.append(f"left out {where(r, runs)}: status is {r.status!r}, not 'complete'"
                        + (f" ({' '.join(str(r.error).split())})" if r.error else ""))
    by_protocol: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        if r.complete:
            by_protocol[r.protocol].append(r)
        else:  # collected with include_incomplete: a report shows complete runs only
            left_out.append(f"left out {where(r, runs)}: status is {r.status!r}, not "
                            f"'complete'")
    folds: list[FoldRuns] = []
    roles: dict[int, str] = {}
    for proto in sorted(by_protocol):
        mine = by_protocol[proto]
        newest = max((r.protocol_version for r in mine), key=_version_key)
        cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for r in mine:
            if r.protocol_version != newest:
                roles[id(r)] = f"not shown: protocol version {r.protocol_version}, the " \
                               f"report shows version {newest}"
                continue
            cells[(r.fold, r.detector)].append(r)
        registered = protocols.get(proto)
        order = list(registered.fold_names) if registered is not None else []
        fold_names = sorted({f for f, _ in cells},
                            key=lambda f: (order.index(f) if f in order else len(order), f))
        for fold in fold_names:
            fr = FoldRuns(proto, newest, fold)
            for det in sorted(d for f, d in cells if f == fold):
                group = sorted(cells[(fold, det)], key=_recency, reverse=True)
                shown = group[0]
                roles[id(shown)] = "shown"
                for older in group[1:]:
                    roles[id(older)] = f"not shown: an older run of {det} on {fr.title}"
                fr.runs.append(Shown(shown, where(shown, runs), shown.scores()))
            folds.append(fr)
    all_runs = [(r, where(r, runs), roles.get(id(r), "shown"))
                for proto in sorted(by_protocol) for r in sorted(
                    by_protocol[proto], key=lambda r: (r.fold, r.detector, where(r, runs)))]
    return Selection(folds, all_runs, left_out)
