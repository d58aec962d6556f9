"""Protocols as data: TOML files in ``protocols/`` (and any a plugin or user supplies).

A protocol names the datasets it needs, its splits (train, val, test) as filters over
:class:`~avbench.records.VideoRecord` fields, optional folds that refine the splits, seeded
sampling, per-split evaluation settings (``max_seconds``) and the table it feeds. See
``protocols/cross-manip.toml`` for a commented example and docs/protocols.md for the format.

Sampling is defined without any random-number library: the candidates of each label are
ranked by ``sha256(f"{seed}:{video id}")`` and the first ``per_label`` are kept, so the
subset is the same on every machine and with every numpy version.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from avbench.errors import LeakageError, ProtocolError
from avbench.paths import check_name
from avbench.records import FILTER_FIELDS, VideoRecord

SPLITS = ("train", "val", "test")
_TOP_KEYS = {"name", "version", "description", "table", "metrics", "datasets", "balance",
             "splits", "folds", "checks", "notes"}
_SPLIT_KEYS = {"dataset", "where", "sample", "max_seconds"}
_SAMPLE_KEYS = {"per_label", "seed"}
_CHECK_KEYS = {"disjoint_identities"}
_METRICS = {"acc", "ap", "auc", "acc_v", "auc_v", "acc_a", "auc_a"}
_BALANCE = {"class", "none"}


def builtin_protocol_dir() -> Path:
    """The protocol files shipped with the core (in the wheel, or the repo's protocols/)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_protocols", here.parent / "protocols"):
        if cand.is_dir():
            return cand
    raise ProtocolError("the built-in protocol files are missing from this installation")


@dataclass(frozen=True)
class SplitSpec:
    dataset: str
    where: Mapping[str, tuple[Any, ...]]
    per_label: int | None = None
    seed: int | None = None
    max_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dataset": self.dataset,
                             "where": {k: list(v) for k, v in self.where.items()}}
        if self.per_label is not None:
            d["sample"] = {"per_label": self.per_label, "seed": self.seed}
        if self.max_seconds is not None:
            d["max_seconds"] = self.max_seconds
        return d


@dataclass
class Protocol:
    name: str
    version: str
    description: str
    path: Path
    datasets: tuple[str, ...]
    table: int | None
    metrics: tuple[str, ...]
    balance: str
    raw_splits: dict[str, Any]
    folds: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    file_hash: str = ""
    plugin: str = ""

    @property
    def fold_names(self) -> list[str]:
        return list(self.folds)

    def check_fold(self, fold: str | None) -> None:
        if fold is None:
            return
        if not self.folds:
            raise ProtocolError(f"protocol {self.name!r} has no folds; drop --fold")
        if fold not in self.folds:
            raise ProtocolError(
                f"protocol {self.name!r} has no fold {fold!r}; folds: {', '.join(self.folds)}"
            )

    def split_specs(self, fold: str | None = None) -> dict[str, SplitSpec]:
        """The three split specs, with the fold's refinements merged in."""
        self.check_fold(fold)
        if self.folds and fold is None:
            raise ProtocolError(
                f"protocol {self.name!r} has folds ({', '.join(self.folds)}); name one"
            )
        merged = copy.deepcopy(self.raw_splits)
        for split, extra in (self.folds.get(fold, {}) if fold else {}).items():
            _deep_merge(merged.setdefault(split, {}), extra)
        return {s: _split_spec(self, s, merged[s], fold) for s in SPLITS}


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def _where(p: Protocol, where: Any, ctx: str) -> dict[str, tuple[Any, ...]]:
    if not isinstance(where, Mapping):
        raise ProtocolError(f"{p.path.name}: {ctx}: 'where' must be a table")
    out: dict[str, tuple[Any, ...]] = {}
    for k, v in where.items():
        if k not in FILTER_FIELDS:
            raise ProtocolError(
                f"{p.path.name}: {ctx}: cannot filter on {k!r}; fields: {', '.join(FILTER_FIELDS)}"
            )
        vals = tuple(v) if isinstance(v, list | tuple) else (v,)
        if not vals:
            raise ProtocolError(f"{p.path.name}: {ctx}: empty value list for {k!r}")
        if k.startswith("label") and any(x not in (0, 1) for x in vals):
            raise ProtocolError(f"{p.path.name}: {ctx}: {k} takes 0 (real) or 1 (fake)")
        out[k] = vals
    return out


def _split_spec(p: Protocol, name: str, raw: Any, fold: str | None) -> SplitSpec:
    ctx = f"split {name}" + (f" of fold {fold}" if fold else "")
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{p.path.name}: {ctx} is missing")
    unknown = set(raw) - _SPLIT_KEYS
    if unknown:
        raise ProtocolError(
            f"{p.path.name}: {ctx}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_SPLIT_KEYS))}"
        )
    dataset = raw.get("dataset", p.datasets[0] if len(p.datasets) == 1 else None)
    if dataset not in p.datasets:
        raise ProtocolError(
            f"{p.path.name}: {ctx}: dataset {dataset!r} is not among the protocol's datasets "
            f"({', '.join(p.datasets)})"
        )
    sample = raw.get("sample")
    per_label = seed = None
    if sample is not None:
        if not isinstance(sample, Mapping) or set(sample) - _SAMPLE_KEYS:
            raise ProtocolError(f"{p.path.name}: {ctx}: 'sample' takes per_label and seed")
        per_label, seed = sample.get("per_label"), sample.get("seed")
        if not isinstance(per_label, int) or per_label < 1 or not isinstance(seed, int):
            raise ProtocolError(
                f"{p.path.name}: {ctx}: sample needs an integer per_label >= 1 and an integer seed"
            )
    max_seconds = raw.get("max_seconds")
    if max_seconds is not None and (not isinstance(max_seconds, int | float) or max_seconds <= 0):
        raise ProtocolError(f"{p.path.name}: {ctx}: max_seconds must be a positive number")
    return SplitSpec(
        dataset=dataset,
        where=_where(p, raw.get("where", {}), ctx),
        per_label=per_label,
        seed=seed,
        max_seconds=float(max_seconds) if max_seconds is not None else None,
    )


def load_protocol(path: str | Path, plugin: str = "") -> Protocol:
    """Parse and check a protocol file (the splits of every fold are checked too)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
        data = tomllib.loads(blob.decode("utf-8"))
    except FileNotFoundError:
        raise ProtocolError(f"protocol file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"{path}: not valid TOML ({e})") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProtocolError(
            f"{path.name}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    for key in ("name", "version", "datasets", "splits"):
        if key not in data:
            raise ProtocolError(f"{path.name}: missing required key {key!r}")
    # the name (and each fold name, _check_folds) becomes a folder of the results store
    check_name("protocol", data["name"], where=path.name, error=ProtocolError)
    datasets = data["datasets"]
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise ProtocolError(f"{path.name}: 'datasets' must be a non-empty list of names")
    metrics = tuple(data.get("metrics", ["acc", "ap", "auc"]))
    bad = set(metrics) - _METRICS
    if bad:
        raise ProtocolError(f"{path.name}: unknown metric(s) {', '.join(sorted(bad))}")
    balance = data.get("balance", "none")
    if balance not in _BALANCE:
        raise ProtocolError(f"{path.name}: balance must be one of {', '.join(sorted(_BALANCE))}")
    checks = data.get("checks", {})
    if not isinstance(checks, Mapping) or set(checks) - _CHECK_KEYS:
        raise ProtocolError(f"{path.name}: [checks] takes {', '.join(sorted(_CHECK_KEYS))}")
    splits = data["splits"]
    if not isinstance(splits, Mapping) or set(splits) != set(SPLITS):
        raise ProtocolError(f"{path.name}: [splits] must define exactly train, val and test")
    folds = data.get("folds", {})
    _check_folds(folds, path)
    table = data.get("table")
    if table is not None and table not in (1, 2, 3, 4, 5):
        raise ProtocolError(f"{path.name}: table must be 1..5")
    p = Protocol(
        name=data["name"],
        version=str(data["version"]),
        description=str(data.get("description", "")),
        path=path,
        datasets=tuple(datasets),
        table=table,
        metrics=metrics,
        balance=balance,
        raw_splits=dict(splits),
        folds={str(k): dict(v) for k, v in folds.items()},
        checks=dict(checks),
        file_hash=hashlib.sha256(blob).hexdigest()[:16],
        plugin=plugin,
    )
    for fold in p.folds or [None]:
        p.split_specs(fold)
    return p


def _check_folds(folds: Any, path: Path) -> None:
    """[folds] is a table of fold tables that refine only the splits; the fold names become
    folders of the results store, so they are names and differ in more than case."""
    if not isinstance(folds, Mapping):
        raise ProtocolError(f"{path.name}: [folds] must be a table of fold tables")
    seen_folds: dict[str, str] = {}
    for fname, fold in folds.items():
        check_name("fold", fname, where=path.name, error=ProtocolError)
        if fname.lower() in seen_folds:  # one folder on a case-insensitive file system
            raise ProtocolError(f"{path.name}: folds {seen_folds[fname.lower()]!r} and {fname!r} "
                                "differ only in case")
        seen_folds[fname.lower()] = fname
        if not isinstance(fold, Mapping) or set(fold) - set(SPLITS):
            raise ProtocolError(f"{path.name}: fold {fname!r} may only refine train, val, test")


def all_protocols(plugins: Any) -> dict[str, Protocol]:
    """Every registered protocol by name (first registration of a name wins)."""
    out: dict[str, Protocol] = {}
    for src in plugins.protocol_sources:
        # parsed once, when it was registered
        p = src.protocol if src.protocol is not None else load_protocol(src.path, plugin=src.plugin)
        out.setdefault(p.name, p)
    return out


def get_protocol(name_or_path: str, plugins: Any) -> Protocol:
    """A registered protocol by name, or a protocol file given by path."""
    if name_or_path.endswith(".toml") or Path(name_or_path).is_file():
        return load_protocol(name_or_path, plugin="file")
    protos = all_protocols(plugins)
    if name_or_path not in protos:
        raise ProtocolError(
            f"unknown protocol {name_or_path!r}; known: {', '.join(sorted(protos))} "
            "(or give a protocol file's path)"
        )
    return protos[name_or_path]


# -- building splits --------------------------------------------------------------------------


@dataclass
class Split:
    name: str
    dataset: str
    records: list[VideoRecord]
    spec: SplitSpec
    candidates: int = 0

    @property
    def hash(self) -> str:
        return split_hash(self.records)

    def counts(self) -> dict[str, int]:
        n_fake = sum(r.label for r in self.records)
        return {"n": len(self.records), "real": len(self.records) - n_fake, "fake": n_fake}

    def summary(self) -> dict[str, Any]:
        return {"dataset": self.dataset, **self.counts(), "hash": self.hash,
                "candidates": self.candidates}


def split_hash(records: list[VideoRecord]) -> str:
    blob = "\n".join(sorted(f"{r.dataset}:{r.id}" for r in records)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _rank(seed: int, vid: str) -> str:
    return hashlib.sha256(f"{seed}:{vid}".encode()).hexdigest()


def _matches(r: VideoRecord, where: Mapping[str, tuple[Any, ...]]) -> bool:
    return all(getattr(r, k) in vals for k, vals in where.items())


def select(records: list[VideoRecord], spec: SplitSpec) -> tuple[list[VideoRecord], int]:
    """Records matching ``spec`` (seeded per-label sample applied); returns (kept, candidates)."""
    cands = sorted((r for r in records if _matches(r, spec.where)), key=lambda r: r.id)
    if spec.per_label is None:
        return cands, len(cands)
    kept: list[VideoRecord] = []
    for label in (0, 1):
        pool = [r for r in cands if r.label == label]
        pool.sort(key=lambda r: _rank(int(spec.seed or 0), r.id))
        kept.extend(pool[: spec.per_label])
    kept.sort(key=lambda r: r.id)
    return kept, len(cands)


def check_vocabulary(protocol: Protocol, fold: str | None, adapters: Mapping[str, Any]) -> None:
    """Reject filter values a dataset cannot hold (a typo would give an empty split)."""
    for split, spec in protocol.split_specs(fold).items():
        vocab = getattr(adapters.get(spec.dataset), "vocabulary", {}) or {}
        for key, vals in spec.where.items():
            known = vocab.get(key)
            if not known:
                continue
            bad = [v for v in vals if v not in known]
            if bad:
                where = f"fold {fold}, " if fold else ""
                raise ProtocolError(
                    f"protocol {protocol.name}: {where}split {split}: {key} "
                    f"{', '.join(map(repr, bad))} does not occur in {spec.dataset} "
                    f"(known: {', '.join(map(str, known))})"
                )


def build_splits(
    protocol: Protocol, fold: str | None, indexes: Mapping[str, Any]
) -> dict[str, Split]:
    """Train/val/test records of a fold, checked for leakage; each split must hold real and
    fake videos (one class alone cannot be trained on, and gives no AUC)."""
    out: dict[str, Split] = {}
    where = f" (fold {fold})" if fold else ""
    for name, spec in protocol.split_specs(fold).items():
        if spec.dataset not in indexes:
            raise ProtocolError(f"protocol {protocol.name}: dataset {spec.dataset!r} not provided")
        kept, n = select(indexes[spec.dataset].records, spec)
        if not kept:
            raise ProtocolError(
                f"protocol {protocol.name}{where}: split {name} selects no video of "
                f"{spec.dataset}; check the dataset and the protocol's filters"
            )
        n_fake = sum(r.label for r in kept)
        if n_fake in (0, len(kept)):
            only = "fake" if n_fake else "real"
            raise ProtocolError(
                f"protocol {protocol.name}{where}: split {name} holds only {only} videos "
                f"({len(kept)} of {spec.dataset}); a split needs both real and fake videos"
            )
        out[name] = Split(name, spec.dataset, kept, spec, candidates=n)
    check_disjoint(out, identities=bool(protocol.checks.get("disjoint_identities")))
    return out


def check_disjoint(splits: Mapping[str, Split], *, identities: bool = False) -> None:
    """No video in two splits; optionally no identity (source or target) in two splits."""
    seen: dict[tuple[str, str], str] = {}
    for name, s in splits.items():
        for r in s.records:
            key = (r.dataset, r.id)
            if key in seen:
                raise LeakageError(f"video {r.id} of {r.dataset} is in both {seen[key]} and {name}")
            seen[key] = name
    if not identities:
        return
    owner: dict[tuple[str, str], str] = {}
    for name, s in splits.items():
        ids = set()
        for r in s.records:
            ids.update(x for x in (r.identity, *r.targets) if x and x.startswith("id"))
        for i in sorted(ids):  # the identity named must not depend on hash() order
            key = (s.dataset, i)
            if key in owner and owner[key] != name:
                raise LeakageError(
                    f"identity {i} of {s.dataset} appears in both {owner[key]} and {name}"
                )
            owner[key] = name
