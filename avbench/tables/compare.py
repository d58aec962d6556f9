"""``avbench table --compare DETECTOR``: which cells differ significantly from DETECTOR's.

Each computed cell of another detector is tested against the reference detector's cell of
the same column (same protocol, fold and metric), on the videos both runs scored: the two
runs' ``scores.csv`` must hold the same test videos with the same labels, or the cell is
not tested (and a footnote says why). AUC (and the per-modality AUCs) use the paired DeLong
test; AP and Acc use the paired, class-stratified bootstrap of :mod:`avbench.significance`
(:data:`N_RESAMPLES` resamples, seeded). A cell whose two-sided p is below :data:`ALPHA`
is marked :data:`MARK`. Averages (AVG-FV) are not tested. Only the latest run of each cell
takes part, so ``--compare`` needs ``--aggregate latest``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avbench.errors import ConfigError, ResultsError
from avbench.metrics import _SPEC, _point

ALPHA = 0.05
MARK = "*"
N_RESAMPLES = 1000
SEED = 0


def footnote(reference: str) -> str:
    return (f"{MARK}: differs from {reference}'s value in the same column at p < {ALPHA} "
            f"(two-sided, on the same test videos; AUC: paired DeLong test; AP and Acc: "
            f"paired bootstrap over videos, {N_RESAMPLES} resamples stratified by class, seed "
            f"{SEED}). Averages are not tested.")


def paired_scores(ref: Any, other: Any, skey: str = "score",
                  lkey: str = "label") -> tuple[np.ndarray, ...] | str:
    """Labels and both runs' ``skey`` scores over the same test videos, paired by
    (dataset, id) in that order; or the reason the two score tables cannot be paired (the
    same videos with the same labels, or nothing)."""
    frames = []
    for df in (ref, other):
        if skey not in df or df[skey].isna().all():
            return f"no {skey} column"
        frames.append(df.assign(dataset=df.get("dataset", ""))
                      [["dataset", "id", lkey, skey]])
    a, b = frames
    both = a.merge(b, on=["dataset", "id"], suffixes=("_a", "_b"))
    if not (len(both) == len(a) == len(b)):
        return "the two runs scored different test videos"
    if not (both[f"{lkey}_a"] == both[f"{lkey}_b"]).all():
        return "the two runs give the same videos different labels"
    both = both.sort_values(["dataset", "id"], kind="stable")
    return (both[f"{lkey}_a"].to_numpy(dtype=np.int64),
            both[f"{skey}_a"].to_numpy(dtype=np.float64),
            both[f"{skey}_b"].to_numpy(dtype=np.float64))


def p_value(metric: str, ref: Any, other: Any) -> float | str:
    """Two-sided p of ``metric(other) - metric(ref)``, or the reason there is none."""
    from avbench import significance

    skey, lkey, kind = _SPEC[metric]
    got = paired_scores(ref, other, skey, lkey)
    if isinstance(got, str):
        return got
    y, s_ref, s_other = got
    try:
        if kind == "auc":
            return significance.delong(y, s_other, s_ref).p
        return significance.paired_bootstrap(
            y, s_other, s_ref, lambda yy, ss: _point(kind, yy, ss),
            n_boot=N_RESAMPLES, seed=SEED)[3]
    except ValueError as e:
        return str(e)


def mark_cells(number: int, rows: list[Any], columns: list[Any], pool: Any, reference: str,
               notes: list[str]) -> None:
    """Set ``p`` and ``significant`` on the cells of computed ``rows`` against
    ``reference``'s row (Table ``number``): the row labelled ``reference``, i.e. the
    detector's default config (a row of another config is labelled with what differs,
    ``sync-corr [max_lag=0]``, and is compared like any other row); untested cells get a
    note saying why."""
    if pool.aggregate != "latest":
        raise ConfigError("--compare tests the latest run of each cell; use it with "
                          "--aggregate latest")
    rows = [r for r in rows if r.detector is not None]
    refs = [r for r in rows if r.label == reference]
    if not refs:
        shown = ", ".join(sorted({r.label for r in rows})) or "none"
        of_it = [r.label for r in rows if r.detector == reference]
        why = (f"no computed row of {reference}'s default config" if of_it
               else f"no computed row of {reference}")
        raise ConfigError(f"--compare {reference}: {why} in Table {number} (computed rows: "
                          f"{shown})")
    ref_row = refs[0]
    frames: dict[tuple[str, str, str, str], Any] = {}

    def scores(row: Any, proto: str, fold: str) -> Any:
        key = (row.detector, row.config_hash, proto, fold)
        if key not in frames:
            used = pool.evaluate(key)
            try:
                frames[key] = used[0].run.scores() if used else None
            except ResultsError:
                frames[key] = None
        return frames[key]

    for row in rows:
        if row is ref_row:
            continue
        for col in columns:
            cell = row.cells.get(col.key)
            if col.protocol is None or cell is None or not cell.present:
                continue
            ref = scores(ref_row, col.protocol, col.fold)
            other = scores(row, col.protocol, col.fold)
            if ref is None or other is None:
                continue
            p = p_value(col.metric, ref, other)
            if isinstance(p, str):
                notes.append(f"--compare: {row.label} on {col.flat} not tested against "
                             f"{reference}: {p}.")
                continue
            cell.p = p
            cell.significant = p < ALPHA
    notes.insert(0, footnote(reference))


__all__ = ["ALPHA", "MARK", "footnote", "mark_cells", "p_value", "paired_scores"]
