"""Table descriptions: one TOML file per table, in a ``tables/`` folder beside protocol files.

The core's tables live in ``protocols/tables/`` (shipped with the protocols); a plugin that
registers a protocol directory or file gets the tables of the ``tables/`` folder beside it,
so a new protocol brings its own table without editing the core. A file gives ``number``,
``title``, ``text`` (text columns), ``groups`` (a protocol, its metrics, one group per fold
with ``per_fold``; the fold names are read from the protocol), optional ``averages`` (the
mean over a protocol's folds whose name starts with ``fold_prefix``), optional ``rows`` (only
these rows, in this order: each names its ``detector`` and gives its ``text``),
``published`` (a table of
``avbench/data/published.toml``), ``published_text`` and ``detector_text``. The first file
registered for a number wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.errors import ConfigError
from avbench.results import ALL_FOLDS
from avbench.tables.model import Column

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LABELS = {"acc": "Acc.", "auc": "AUC", "ap": "AP", "acc_v": "Acc._v", "auc_v": "AUC_v",
          "acc_a": "Acc._a", "auc_a": "AUC_a"}


@dataclass(frozen=True)
class Average:
    name: str
    protocol: str
    folds: tuple[str, ...]
    metrics: tuple[str, ...]
    footnote: str = ""
    prefix: str = ""


@dataclass
class TableSpec:
    number: int
    title: str
    path: Path
    text: list[str]
    columns: list[Column]
    averages: list[Average] = field(default_factory=list)
    rows: list[tuple[str, dict[str, Any]]] | None = None
    decimals: int = 1
    check_columns: tuple[str, ...] = ()
    published: str | None = None
    published_text: dict[str, str] = field(default_factory=dict)
    detector_text: dict[str, str] = field(default_factory=dict)

    @property
    def protocols(self) -> list[str]:
        return [p for p in dict.fromkeys(c.protocol for c in self.columns) if p]


def _folds(protocols: Mapping[str, Any], name: str, where: str) -> list[str]:
    if name not in protocols:
        raise ConfigError(f"{where}: protocol {name!r} is not registered")
    return list(protocols[name].fold_names)


def load_table_spec(path: Path, protocols: Mapping[str, Any]) -> TableSpec:
    """Parse one table file; its fold columns come from the registered ``protocols``."""
    where = path.name
    try:
        d = tomllib.loads(path.read_text("utf-8"))
        columns: list[Column] = []
        for g in d["groups"]:
            proto, metrics = g["protocol"], g["metrics"]
            if g.get("per_fold"):
                columns += [Column(f"{f}.{m}", LABELS[m], f, proto, f, m)
                            for f in _folds(protocols, proto, where) for m in metrics]
            else:
                label = g.get("label", "")
                columns += [Column(f"{label}.{m}" if label else m, LABELS[m], label, proto,
                                   ALL_FOLDS, m) for m in metrics]
        averages = []
        for a in d.get("averages", []):
            folds = [f for f in _folds(protocols, a["protocol"], where)
                     if f.startswith(a["fold_prefix"])]
            averages.append(Average(a["name"], a["protocol"], tuple(folds),
                                    tuple(a["metrics"]), a.get("footnote", ""),
                                    a["fold_prefix"]))
            columns += [Column(f"{a['name']}.{m}", LABELS[m], a["name"], None, ALL_FOLDS, m)
                        for m in a["metrics"]]
        rows = None
        if "rows" in d:
            rows = []
            for i, r in enumerate(d["rows"]):
                if not isinstance(r.get("detector"), str) or set(r) - {"detector", "text"}:
                    raise ConfigError(f"{where}: rows[{i}] needs detector = NAME and an "
                                      f"optional text table, got keys {sorted(r)}")
                rows.append((r["detector"], dict(r.get("text", {}))))
        return TableSpec(
            number=int(d["number"]), title=str(d["title"]), path=path, text=list(d["text"]),
            columns=columns, averages=averages, rows=rows, decimals=int(d.get("decimals", 1)),
            check_columns=tuple(d.get("check_columns", ())), published=d.get("published"),
            published_text=dict(d.get("published_text", {})),
            detector_text=dict(d.get("detector_text", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"table file {path}: {type(e).__name__}: {e}") from None


def table_files(plugins: Any) -> list[Path]:
    """The table files beside every registered protocol file, in registration order."""
    dirs = dict.fromkeys(Path(src.path).parent / "tables" for src in plugins.protocol_sources)
    return [p for d in dirs if d.is_dir() for p in sorted(d.glob("*.toml"))]


def all_table_specs(plugins: Any, protocols: Mapping[str, Any]) -> dict[int, TableSpec]:
    """Every registered table by number (first file of a number wins)."""
    out: dict[int, TableSpec] = {}
    for path in table_files(plugins):
        spec = load_table_spec(path, protocols)
        out.setdefault(spec.number, spec)
    return dict(sorted(out.items()))
