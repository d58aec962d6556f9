"""Where datasets come from, and turning a name and a value into a :class:`DatasetIndex`.

A dataset's *source* is found, first match wins, in

1. the command line: ``--data NAME=VALUE`` (:func:`parse_data_items`);
2. the environment: ``AVBENCH_DATA_<NAME>`` (name upper-cased, ``-`` written ``_``);
3. the ``[data]`` table of ``avbench.toml`` in the current folder (``NAME = "VALUE"``).

A *value* is either a folder (relative paths are taken from the current folder, ``~`` is
expanded) or the name of a generated dataset, optionally with parameters in query form:
``synthetic``, ``synthetic?scale=2``, ``synthetic-kodf?scale=1&seed=3``. A generated dataset
is written once into the user cache (``$AVBENCH_CACHE`` if set, else the platform's user cache
folder for ``avbench``) under ``datasets/<name>-scale<S>-seed<N>-v<generator version>`` and
reused afterwards; it is generated into a temporary folder and renamed into place, under a
file lock, so two processes asking at once neither generate it twice nor see half of it. To
use a folder that happens to be called like a generated dataset, write ``./synthetic``.

Either way the dataset is then indexed by the ordinary adapter (``reads_as`` for a generated
one), exactly as real data would be.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from avbench.datasets.base import DatasetAdapter, DatasetIndex
from avbench.errors import ConfigError, DataError, PluginError
from avbench.paths import ensure_inside
from avbench.registry import DatasetInfo

log = logging.getLogger(__name__)

ENV_PREFIX = "AVBENCH_DATA_"
CACHE_ENV = "AVBENCH_CACHE"
SETTINGS_FILE = "avbench.toml"
MARKER = ".avbench-generated.json"
_GENERATOR_PARAMS = {"scale": 1, "seed": 0}


def env_var(name: str) -> str:
    """The environment variable that can hold dataset ``name``'s source."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def parse_data_items(items: list[str] | None) -> dict[str, str]:
    """``["fakeavceleb=PATH", "kodf=synthetic-kodf"]`` -> dict; a later name wins."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ConfigError(f"bad --data {item!r}: expected NAME=PATH (or NAME=synthetic)")
        out[name] = value
    return out


def _read_settings(settings: Path) -> dict[str, str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError(
                f"{settings}: reading it needs Python 3.11 or the tomli package") from None
    try:
        with open(settings, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{settings}: not valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(f"{settings}: cannot read it ({e.strerror})") from None
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise ConfigError(f"{settings}: [data] must be a table of NAME = \"PATH\" entries")
    out = {}
    for name, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"{settings}: [data] {name} must be a non-empty string (a path or a generated"
                f" dataset's name), not {value!r}")
        out[name] = value.strip()
    return out


def find_dataset_sources(
    cli: Mapping[str, str] | None,
    *,
    settings: Path | None = Path(SETTINGS_FILE),
    env: Mapping[str, str] = os.environ,
    names: tuple[str, ...] | list[str] = (),
) -> dict[str, str]:
    """Each dataset's source, by precedence CLI > environment > ``[data]`` of avbench.toml.

    ``names`` (e.g. the registered datasets) are looked up in the environment by their exact
    variable; any other ``AVBENCH_DATA_X_Y`` is read as dataset ``x-y``.
    """
    out: dict[str, str] = {}
    if settings is not None and Path(settings).is_file():
        out.update(_read_settings(Path(settings)))
    known = set(names) | set(out) | set(cli or {})
    by_var = {env_var(n): n for n in known}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or not value.strip():
            continue
        name = by_var.get(var)
        if name is None:
            suffix = var[len(ENV_PREFIX):]
            if not suffix:
                continue
            name = suffix.lower().replace("_", "-")
        out[name] = value.strip()
    out.update({k: v for k, v in (cli or {}).items()})
    return out


def check_dataset_names(given: Mapping[str, str], datasets: Mapping[str, DatasetInfo]) -> None:
    """Every name given with ``--data`` is a registered dataset (a misspelt one is named, with
    the closest known name, instead of being ignored)."""
    import difflib

    for name in given:
        if name not in datasets:
            close = difflib.get_close_matches(name, list(datasets), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(datasets)) or "(none)"
            raise PluginError(f"--data {name}=...: unknown dataset {name!r}{hint}; known "
                              f"datasets: {known}")


def missing_dataset_message(name: str, datasets: Mapping[str, DatasetInfo] | None = None) -> str:
    """One line telling the user the three ways to provide dataset ``name``."""
    msg = (
        f"dataset {name!r} is not configured: pass --data {name}=PATH, or set "
        f"{env_var(name)}=PATH, or add {name} = \"PATH\" to the [data] table of {SETTINGS_FILE}"
    )
    generated = [d.name for d in (datasets or {}).values()
                 if d.generator is not None and d.reads_as == name]
    if generated:
        msg += f" (or use the generated benchmark: --data {name}={generated[0]})"
    return msg


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    """Where generated datasets (and other caches) live."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("avbench"))


def parse_generated(value: str, datasets: Mapping[str, DatasetInfo]
                    ) -> tuple[DatasetInfo, dict[str, int]] | None:
    """``"synthetic?scale=2&seed=1"`` -> (its DatasetInfo, {"scale": 2, "seed": 1}), or None
    when ``value`` does not name a generated dataset."""
    base, _, query = value.partition("?")
    info = datasets.get(base.strip())
    if info is None or info.generator is None:
        return None
    params = dict(_GENERATOR_PARAMS)
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ConfigError(
                f"bad generated dataset {value!r}: write {base}?scale=N&seed=N") from None
        for key, raw in pairs:
            if key not in params:
                raise ConfigError(
                    f"bad generated dataset {value!r}: unknown parameter {key!r} (use "
                    f"{', '.join(params)})")
            try:
                params[key] = int(raw)
            except ValueError:
                raise ConfigError(
                    f"bad generated dataset {value!r}: {key} must be an integer") from None
    if params["scale"] < 1 or params["seed"] < 0:
        raise ConfigError(f"bad generated dataset {value!r}: scale >= 1 and seed >= 0")
    return info, params


def generator_version(generator: Any) -> str:
    v = getattr(generator, "version", None)
    if v is None:
        module = sys.modules.get(getattr(generator, "__module__", ""), None)
        v = getattr(module, "GENERATOR_VERSION", "0")
    return str(v)


def ensure_generated(info: DatasetInfo, *, scale: int = 1, seed: int = 0,
                     cache: Path | None = None, workers: int = 0) -> Path:
    """The folder of generated dataset ``info`` at (scale, seed), generating it if needed.

    Safe when several processes ask at once: one generates (into a temporary folder renamed
    into place when complete), the others wait on the lock and reuse the result.
    """
    generator = info.load_generator()
    version = generator_version(generator)
    base = (cache or cache_root()) / "datasets"
    base.mkdir(parents=True, exist_ok=True)
    key = f"{info.name}-scale{scale}-seed{seed}-v{version}"
    final = ensure_inside(base, key, what="generated dataset folder", error=DataError)
    if (final / MARKER).is_file():
        return final
    with open(base / f"{key}.lock", "a+") as lock:
        _lock(lock)
        try:
            if (final / MARKER).is_file():
                return final
            for stale in base.glob(f".tmp-{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if final.exists():  # not ours: no marker, so never completed
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=base))
            try:
                start = time.perf_counter()
                with _generation_progress(info.name, scale, seed, generator) as kwargs:
                    generator(tmp, scale=scale, seed=seed, workers=workers, **kwargs)
                (tmp / MARKER).write_text(json.dumps(
                    {"name": info.name, "scale": scale, "seed": seed, "version": version,
                     "reads_as": info.reads_as,
                     "seconds": round(time.perf_counter() - start, 2)}, indent=1) + "\n",
                    encoding="utf-8")
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not (final / MARKER).is_file():  # not another process's finished copy
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return final
        finally:
            _unlock(lock)


@contextlib.contextmanager
def _generation_progress(name: str, scale: int, seed: int, generator: Any) -> Any:
    """Tell the user on stderr that a dataset is being generated (a first run waits for it):
    a bar on a terminal, when the generator reports progress; a line before and after on a
    pipe. Yields the keyword arguments to pass the generator."""
    import inspect

    from rich.console import Console

    console = Console(stderr=True)
    what = f"generating dataset {name} (scale {scale}, seed {seed}) into the cache, once"
    try:
        takes_progress = "progress" in inspect.signature(generator).parameters
    except (TypeError, ValueError):
        takes_progress = False
    start = time.perf_counter()
    if not console.is_terminal or not takes_progress:
        console.print(f"{what} ...", markup=False, highlight=False)
        yield {}
        console.print(f"generated dataset {name} in {time.perf_counter() - start:.0f} s",
                      markup=False, highlight=False)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(what, total=None)
        yield {"progress": lambda done, total: bar.update(task, completed=done, total=total)}


def _lock(fh) -> None:
    """Exclusive lock on ``fh``. Without fcntl (not POSIX) or where the file system refuses
    locks, go on unlocked: the rename alone still keeps a half-written set invisible (two
    processes may then both generate it, and one rename wins)."""
    try:
        import fcntl
    except ImportError:
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    except OSError as e:
        log.warning("cannot lock %s (%s); generating without a lock", fh.name, e)


def _unlock(fh) -> None:
    try:
        import fcntl
    except ImportError:
        return
    with contextlib.suppress(OSError):
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _adapter(info: DatasetInfo) -> DatasetAdapter:
    obj = info.load()
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, DatasetAdapter):
        raise PluginError(f"dataset {info.name!r}: {info.factory!r} is not a DatasetAdapter")
    return obj


def index_line(name: str, value: str, index: DatasetIndex, first: int = 3) -> str:
    """The line a run prints for an indexed dataset (rich markup): its video count and, when
    indexing noted problems, the first ``first`` of them (``where: reason``) and the command
    that lists them all."""
    from rich.markup import escape

    line = f"[bold]{escape(name)}[/]: {len(index.records)} videos indexed"
    if not index.problems:
        return line
    shown = "; ".join(f"{p.where}: {p.reason}" for p in index.problems[:first])
    more = len(index.problems) - first
    shown += f"; and {more} more" if more > 0 else ""
    cmd = f"avbench data check --data {shlex.quote(f'{name}={value}')}"
    return line + escape(f", {len(index.problems)} problem(s) noted: {shown} (all of them: {cmd})")


def resolve_dataset(name: str, value: str, datasets: Mapping[str, DatasetInfo], *,
                    cache: Path | None = None, workers: int = 0) -> DatasetIndex:
    """Index dataset ``name`` from ``value`` (a folder or a generated dataset's name)."""
    value = value.strip()
    generated = parse_generated(value, datasets)
    if generated is not None:
        ginfo, params = generated
        reads_as = ginfo.reads_as or name
        own = datasets.get(name)
        if own is not None and own.generator is None and reads_as != name:
            raise ConfigError(
                f"dataset {name!r} cannot come from {ginfo.name!r}, which is read as "
                f"{reads_as!r}")
        if own is not None and own.generator is not None and own.reads_as != reads_as:
            raise ConfigError(
                f"dataset {name!r} cannot come from {ginfo.name!r}, which is read as "
                f"{reads_as!r}, not {own.reads_as!r}")
        root = ensure_generated(ginfo, scale=params["scale"], seed=params["seed"], cache=cache,
                                workers=workers)
        adapter_name = reads_as
    else:
        info = datasets.get(name)
        if info is None:
            known = ", ".join(sorted(datasets)) or "(none)"
            raise PluginError(f"unknown dataset {name!r}; known datasets: {known}")
        root = Path(value).expanduser()
        if not root.is_absolute():
            root = Path.cwd() / root
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            shown = value if Path(value).expanduser() == root else f"{value} ({root})"
            raise DataError(f"dataset {name!r}: root {shown} {what}")
        adapter_name = name if info.factory is not None else (info.reads_as or name)
    ainfo = datasets.get(adapter_name)
    if ainfo is None or ainfo.factory is None:
        raise PluginError(f"dataset {name!r}: no adapter {adapter_name!r} is registered")
    index = _adapter(ainfo).index(root)
    index.name = name
    return index
