"""``avbench protocols show``: a protocol's splits, and their counts on real data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from avbench.errors import AvbenchError


def resolve_indexes(protocol: Any, data_items: list[str], plugins: Any, *, required: bool) -> dict:
    from avbench.datasets.resolve import (
        check_dataset_names,
        find_dataset_sources,
        missing_dataset_message,
        parse_data_items,
        resolve_dataset,
    )

    given = parse_data_items(data_items)
    check_dataset_names(given, plugins.datasets)
    sources = find_dataset_sources(given)
    out = {}
    for name in protocol.datasets:
        if name not in sources:
            if required:
                raise AvbenchError(missing_dataset_message(name))
            continue
        out[name] = resolve_dataset(name, sources[name], plugins.datasets)
    return out


def show_protocol(name: str, data_items: list[str], fold: str | None, write_lists: Path | None,
                  plugins: Any, console: Any) -> None:
    from rich.table import Table

    from avbench.protocols import build_splits, check_vocabulary, get_protocol

    protocol = get_protocol(name, plugins)
    protocol.check_fold(fold)
    indexes = resolve_indexes(protocol, data_items, plugins, required=bool(data_items))
    console.print(f"[bold]{protocol.name}[/] v{protocol.version} ({protocol.path.name}, "
                  f"sha256 {protocol.file_hash}): {protocol.description}")
    console.print(f"datasets: {', '.join(protocol.datasets)}; training balance: "
                  f"{protocol.balance}; metrics: {', '.join(protocol.metrics)}"
                  + (f"; feeds Table {protocol.table}" if protocol.table else ""))
    folds = [fold] if fold else (protocol.fold_names or [None])
    if not indexes:
        for f in folds:
            t = Table(title=f"fold {f}" if f else "splits", title_justify="left")
            for col in ("split", "dataset", "filters", "sample", "max seconds"):
                t.add_column(col)
            for split, spec in protocol.split_specs(f).items():
                filters = "; ".join(f"{k} in {', '.join(map(str, v))}" for k, v in spec.where.items())
                sample = (f"{spec.per_label} per label, seed {spec.seed}"
                          if spec.per_label else "all")
                t.add_row(split, spec.dataset, filters, sample, str(spec.max_seconds or "-"))
            console.print(t)
        console.print("give --data NAME=PATH (or NAME=synthetic) to count the videos of each split")
        return
    adapters = {n: plugins.dataset(n).load() for n in protocol.datasets}
    for f in folds:
        check_vocabulary(protocol, f, adapters)
        splits = build_splits(protocol, f, indexes)
        title = f"fold {f}" if f else "splits"
        console.print(f"[bold]{title}[/]: " + "; ".join(
            f"{k} = {s.counts()['real']} real + {s.counts()['fake']} fake of {s.dataset} "
            f"(hash {s.hash})" for k, s in splits.items()))
        for field in ("category", "group"):
            counts = {k: Counter((getattr(r, field) or "-", r.label) for r in s.records)
                      for k, s in splits.items()}
            values = sorted({v for c in counts.values() for v, _ in c},
                            key=lambda v: (v != "real", v))
            # a category is all real or all fake: one number; a group holds both
            both = field == "group"
            console.print(f"{title}: videos by {field}" + (" (real / fake)" if both else ""))
            t = Table()
            t.add_column(field)
            for k in splits:
                t.add_column(k, justify="right")
            for v in values:
                t.add_row(v, *(_cell(counts[k], v, both) for k in splits))
            console.print(t)
        if write_lists is not None:
            from avbench.paths import ensure_inside
            from avbench.results import atomic_write_text

            for split, sp in splits.items():
                name_ = f"{protocol.name}{'-' + f if f else ''}-{split}.txt"
                target = ensure_inside(write_lists, name_, what="video list")
                atomic_write_text(target, "".join(f"{r.id}\n" for r in sp.records))
    if write_lists is not None:
        console.print(f"video lists written to {write_lists}")


def _cell(counts: Counter, value: str, both: bool) -> str:
    real, fake = counts[(value, 0)], counts[(value, 1)]
    if not real and not fake:
        return "-"
    return f"{real} / {fake}" if both else str(real + fake)
