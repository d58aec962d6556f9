"""The ``avbench`` command line (Typer). Start-up stays light: heavy modules (torch, pandas,
the media stack) are imported inside the commands that need them, never to print help or
list plugins."""

from __future__ import annotations

import contextvars
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from avbench.commands.eval import eval_command
from avbench.errors import AvbenchError

app = typer.Typer(
    name="avbench",
    help="Benchmark audio-visual deepfake detectors under the field's protocols.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
detectors_app = typer.Typer(help="List detectors, or `show NAME` for one.", invoke_without_command=True)
protocols_app = typer.Typer(help="List protocols, or `show NAME` for splits and counts.",
                            invoke_without_command=True)
data_app = typer.Typer(help="Generate the synthetic benchmark, check or prepare a dataset.",
                       no_args_is_help=True)
plugin_app = typer.Typer(help="Tools for plugin authors.", no_args_is_help=True)
figure_app = typer.Typer(help="Draw the paper's figures from trained runs.", no_args_is_help=True)
app.add_typer(detectors_app, name="detectors")
app.add_typer(protocols_app, name="protocols")
app.add_typer(data_app, name="data")
app.add_typer(plugin_app, name="plugin")
app.add_typer(figure_app, name="figure")

# The argv of the invocation now running (recorded in run.json by `run`).
_ARGV: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("avbench_argv", default=())


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _plugins(ctx: typer.Context | None = None):
    """The invocation's plugin system: ``ctx.obj`` when given, else the current one."""
    from avbench.plugins import PluginSystem, get_plugins

    if ctx is not None and isinstance(ctx.obj, PluginSystem):
        return ctx.obj
    return get_plugins()


def _warn_plugins(system: Any) -> None:
    if system.warnings:
        err = _console(stderr=True)
        for w in system.warnings:
            err.print(f"[yellow]warning:[/] {w}")


def _version_cb(value: bool) -> None:
    if value:
        from avbench import AVBENCH_API_VERSION, __version__

        typer.echo(f"avbench {__version__} (plugin API {AVBENCH_API_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    plugins_dir: Annotated[
        Path | None, typer.Option("--plugins-dir", help="Load every *.py in DIR as a plugin.")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_cb, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Both options are read before the app is built (see ``_pre_parse``); declared here for
    help and so that Typer accepts them."""


# -- run ---------------------------------------------------------------------------------------


@app.command()
def run(
    detector: Annotated[str, typer.Option("--detector", "-d", help="Detector name (see `avbench detectors`).")],
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Protocol name or a protocol .toml file.")],
    fold: Annotated[str | None, typer.Option(help="Run one fold only (default: every fold in turn).")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH of a dataset, or NAME=synthetic for the embedded benchmark. Repeatable.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Detector config KEY=VALUE. Repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling, initialisation and the bootstrap.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    resume: Annotated[bool, typer.Option(help="Continue the newest incomplete run with the same detector, config and seed.")] = False,
    on_bad_media: Annotated[str, typer.Option(help="skip (default; reported in run.json) or fail.")] = "skip",
    workers: Annotated[int, typer.Option(help="Processes for media preparation: -1 (default) one per core on more than two cores, for 64 files or more; 0 none (this process). Data loading takes the detector's num_workers.")] = -1,
    cache: Annotated[Path | None, typer.Option(help="Prepared-media cache folder (default: AVBENCH_CACHE or the user cache).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, for logs.")] = False,
) -> None:
    """Train and evaluate a detector under a protocol; writes results/<protocol>/<fold>/<detector>/<run-id>/."""
    from avbench.config import parse_set_items
    from avbench.datasets.resolve import parse_data_items
    from avbench.engine.run import RunOptions
    from avbench.engine.run import run as do_run

    system = _plugins()
    _warn_plugins(system)
    opts = RunOptions(
        detector=detector, protocol=protocol, fold=fold, data=parse_data_items(data or []),
        overrides=parse_set_items(set_), seed=seed, device=device, out=out, resume=resume,
        on_bad_media=on_bad_media, workers=workers, quiet=quiet, cache_dir=cache,
        command=["avbench", *_ARGV.get()],
    )
    folders = do_run(opts, console=_console())
    if not quiet and folders:
        _console().print(f"[green]done[/]: {len(folders)} run folder(s) written under {out}")


@app.command("score")
def score(
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Protocol the scores are of.")],
    scores: Annotated[Path, typer.Option("--scores", help="CSV with id,score[,score_v][,score_a], one row per test video.")],
    name: Annotated[str, typer.Option("--name", help="Method name shown in tables.")],
    fold: Annotated[str | None, typer.Option(help="The fold the scores are of (protocols with folds).")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH of a dataset, or NAME=synthetic. Repeatable.")] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    modality: Annotated[str, typer.Option("--modality", help="What the method looks at: AV, A or V (Table 3).")] = "AV",
) -> None:
    """Record per-video scores computed elsewhere as a run (marked external) for `avbench table`."""
    from avbench.engine.external import ExternalOptions, record_external

    system = _plugins()
    _warn_plugins(system)
    opts = ExternalOptions(protocol=protocol, scores=scores, name=name, fold=fold,
                           data=list(data or []), out=out, modality=modality,
                           command=["avbench", *_ARGV.get()])
    _console().print(f"[green]recorded[/]: {record_external(opts, system)}")


app.command("eval")(eval_command)


# -- table -------------------------------------------------------------------------------------


@app.command()
def table(
    table: Annotated[int | None, typer.Option("--table", "-t", min=1, help="Table number (the paper's are 1..5).")] = None,
    protocol: Annotated[str | None, typer.Option("--protocol", "-p", help="Table of this protocol's runs.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="rich, markdown, latex or csv.")] = "rich",
    published: Annotated[bool, typer.Option("--published/--no-published", help="Show the paper's reported rows.")] = True,
    results: Annotated[Path, typer.Option("--results", help="Results folder to read.")] = Path("results"),
    include_incomplete: Annotated[bool, typer.Option(help="Also show incomplete runs (marked).")] = False,
    ci: Annotated[bool, typer.Option("--ci", help="Show 95% bootstrap intervals.")] = False,
    aggregate: Annotated[str, typer.Option(help="latest run per cell, or mean over runs (seeds).")] = "latest",
    compare: Annotated[str | None, typer.Option("--compare", help="Mark (*) the cells that differ significantly from this detector's (paired test on the same test videos).")] = None,
) -> None:
    """Print a table in the paper's format from results folders (no GPU, no training)."""
    from avbench import tables

    if fmt not in ("rich", "markdown", "latex", "csv"):
        raise AvbenchError(f"--format {fmt!r}: use rich, markdown, latex or csv")
    if aggregate not in ("latest", "mean"):
        raise AvbenchError(f"--aggregate {aggregate!r}: use latest or mean")
    if table is None and protocol is None:
        table = 1
    if protocol is not None:
        if table is not None:
            raise AvbenchError("give --table or --protocol, not both")
        table = tables.table_for_protocol(protocol)
    from avbench.protocols import all_protocols

    system = _plugins()
    _warn_plugins(system)
    out = tables.build_and_render(results, int(table), fmt, published=published,
                                  include_incomplete=include_incomplete, ci=ci,
                                  aggregate=aggregate, protocols=all_protocols(system),
                                  compare=compare, width=_console().width,
                                  warn=lambda line: typer.echo(line, err=True))  # never wrapped
    if isinstance(out, str):
        typer.echo(out, nl=not out.endswith("\n"))
        return
    from rich.console import Console
    from rich.text import Text

    console = _console()
    for part in getattr(out, "renderables", [out]):  # the table's parts, then its notes
        c = console
        if not isinstance(part, Text):  # never squeeze numbers into ellipses: a part wider
            # than the terminal (one column group alone) runs its lines long
            needed = console.measure(part, options=console.options.update_width(1000)).maximum
            if needed > console.width:
                c = Console(width=needed, highlight=False)
        c.print(part)


# -- report ------------------------------------------------------------------------------------


@app.command()
def report(
    results: Annotated[Path, typer.Option("--results", help="Results folder to read.")] = Path("results"),
    out: Annotated[Path, typer.Option("--out", help="Folder to write index.html into.")] = Path("report"),
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH of the test videos, to draw Fig. 3 for runs whose detector offers frame_features. Repeatable.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N], for Fig. 3.")] = "auto",
    cache: Annotated[Path | None, typer.Option(help="Prepared-media cache folder (default: AVBENCH_CACHE or the user cache).")] = None,
) -> None:
    """Write one static HTML page: every table, ROC curves, score histograms, significance, provenance."""
    from avbench.commands.report import report_cmd

    system = _plugins()
    _warn_plugins(system)
    page = report_cmd(results, out, system, data or [], device=device, cache_dir=cache)
    _console().print(f"wrote {page} (open it in a browser; it needs no server or network)",
                     soft_wrap=True)


@figure_app.command("av-distance")
def figure_av_distance(
    source: Annotated[Path, typer.Option("--from", help="A complete run folder of a detector that offers frame_features (avprompt).")],
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH (or NAME=synthetic) of the run's test videos. Repeatable.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Figure file, .png or .svg.")] = Path("av-distance.png"),
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the per-video distances to this CSV file.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    cache: Annotated[Path | None, typer.Option(help="Prepared-media cache folder (default: AVBENCH_CACHE or the user cache).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, for logs.")] = False,
) -> None:
    """Fig. 3: frame-level audio-visual cosine distance per category, on the run's test videos."""
    from avbench.commands.report import av_distance_cmd

    system = _plugins()
    _warn_plugins(system)
    path = av_distance_cmd(source, out, data or [], system, _console(), csv=csv, device=device,
                           cache_dir=cache, quiet=quiet)
    _console().print(f"wrote {path}", soft_wrap=True)


# -- plugins / detectors / protocols -----------------------------------------------------------


@app.command()
def plugins(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks of failed plugins.")] = False,
) -> None:
    """List loaded plugins, their hooks and versions, and any that failed to load."""
    from rich.table import Table

    system = _plugins()
    t = Table(title="avbench plugins")
    for col in ("plugin", "source", "version", "hooks", "status"):
        t.add_column(col, no_wrap=col == "plugin")  # a name is copied whole
    for s in system.statuses:
        hooks = ", ".join(h.removeprefix("avbench_") for h in s.hooks)
        status = "[green]ok[/]" if s.ok else f"[red]failed[/]: {s.error}"
        t.add_row(s.name, s.source, s.version, hooks, status)
    c = _console()
    c.print(t)
    if verbose:
        for s in system.statuses:
            if s.traceback and not s.ok:
                c.print(f"[bold]{s.name}[/]:\n{s.traceback}")
    failed = [s for s in system.statuses if not s.ok]
    if failed:
        _console(stderr=True).print(f"[yellow]warning:[/] {len(failed)} plugin(s) failed to load")


@detectors_app.callback()
def detectors(ctx: typer.Context) -> None:
    """List registered detectors."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    system = _plugins()
    _warn_plugins(system)
    t = Table(title="detectors")
    for col in ("name", "modality", "plugin", "description"):
        t.add_column(col, no_wrap=col == "name")  # a name is copied whole
    for name, info in sorted(system.detectors.items()):
        t.add_row(name, info.modality, info.plugin, info.description)
    _console().print(t)


@detectors_app.command("show")
def detectors_show(
    name: Annotated[str, typer.Argument(help="Detector name.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config KEY=VALUE to show the effect of.")] = None,
) -> None:
    """Show a detector's config (defaults, types), input spec and facts such as parameter counts."""
    import dataclasses
    import typing

    from rich.table import Table

    from avbench.config import describe_bounds, field_bounds, parse_set_items

    info = _plugins().detector(name)
    det = info.create(parse_set_items(set_))
    c = _console()
    c.print(f"[bold]{name}[/] ({info.modality}) from plugin {info.plugin}: {info.description}")
    t = Table(title="config (--set KEY=VALUE)")
    for col in ("key", "value", "type"):
        t.add_column(col)
    hints = typing.get_type_hints(type(det.config))
    for f in dataclasses.fields(det.config):
        tp = hints.get(f.name, f.type)
        bounds = describe_bounds(field_bounds(type(det.config), f.name))
        t.add_row(f.name, repr(getattr(det.config, f.name)),
                  _type_name(tp) + (f", {bounds}" if bounds else ""))
    c.print(t)
    spec = det.input_spec()
    c.print(f"input: {spec.frames} frames of {spec.size}x{spec.size} at {spec.fps} fps, "
            f"{spec.samples} audio samples at {spec.sample_rate} Hz; reads "
            f"{', '.join(spec.modalities)}")
    facts = det.describe()
    if facts:
        _print_facts(c, facts)


def _type_name(tp: Any) -> str:
    """A config field's type as a user types its values: ``int``, ``'linear' | 'log'`` for
    a Literal, ``float | None``, ``tuple[int, ...]``."""
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin in (tuple, list) and args:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    s = getattr(tp, "__name__", None) or str(tp)
    return s.replace("typing.", "")


def _print_facts(c: Any, facts: dict[str, Any], indent: str = "") -> None:
    for k, v in facts.items():
        if isinstance(v, dict):
            c.print(f"{indent}{k}:")
            _print_facts(c, v, indent + "  ")
        elif isinstance(v, int) and not isinstance(v, bool):
            c.print(f"{indent}{k}: {v:,}")
        else:
            c.print(f"{indent}{k}: {v}")


@protocols_app.callback()
def protocols(ctx: typer.Context) -> None:
    """List registered protocols."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from avbench.protocols import all_protocols

    system = _plugins()
    _warn_plugins(system)
    t = Table(title="protocols")
    for col in ("name", "version", "datasets", "folds", "table", "description"):
        t.add_column(col, no_wrap=col == "name")  # a name is copied whole
    for name, p in sorted(all_protocols(system).items()):
        t.add_row(name, p.version, ", ".join(p.datasets), ", ".join(p.fold_names) or "-",
                  str(p.table or "-"), p.description)
    _console().print(t)


@protocols_app.command("show")
def protocols_show(
    name: Annotated[str, typer.Argument(help="Protocol name or .toml path.")],
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH (or NAME=synthetic) to count the splits on.")] = None,
    fold: Annotated[str | None, typer.Option(help="Show one fold only.")] = None,
    write_lists: Annotated[Path | None, typer.Option(help="Write each split's video list to this folder.")] = None,
) -> None:
    """Print a protocol's splits; with datasets, counts of real and fake per category and group."""
    from avbench.commands.protocols import show_protocol

    show_protocol(name, data or [], fold, write_lists, _plugins(), _console())


# -- data --------------------------------------------------------------------------------------


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the benchmark into.")],
    kind: Annotated[str, typer.Option(help="fakeavceleb (FakeAVCeleb layout) or kodf (KoDF layout, full frames).")] = "fakeavceleb",
    scale: Annotated[int, typer.Option(min=1, help="Size multiplier (1 = a few hundred clips).")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="Generator seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes to generate with.")] = 0,
) -> None:
    """Generate the embedded synthetic benchmark in FakeAVCeleb's (or KoDF's) exact layout."""
    import time

    from avbench.datasets import synthetic

    gens = {"fakeavceleb": synthetic.generate_fakeavceleb, "kodf": synthetic.generate_kodf}
    if kind not in gens:
        raise AvbenchError(f"--kind {kind!r}: use fakeavceleb or kodf")
    if out.exists() and any(out.iterdir()):
        raise AvbenchError(f"{out}: folder exists and is not empty")
    t = time.perf_counter()
    gens[kind](out, scale=scale, seed=seed, workers=workers)
    n = sum(1 for _ in out.rglob("*.mp4"))
    _console().print(f"wrote {n} videos to {out} in {time.perf_counter() - t:.1f} s "
                     f"(read it with --data {kind}={out})")


@data_app.command("check")
def data_check(
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH of the dataset to check (default: those set in AVBENCH_DATA_<NAME> or avbench.toml). Repeatable.")] = None,
    decode: Annotated[bool, typer.Option("--decode/--no-decode", help="Decode every file to find unreadable ones.")] = True,
    workers: Annotated[int, typer.Option(help="Processes for decoding.")] = 0,
) -> None:
    """Report what a dataset holds (counts per type, method, group) and every unreadable file."""
    from avbench.commands.data import check

    code = check(data, decode=decode, workers=workers, plugins=_plugins(), console=_console())
    raise typer.Exit(code)


@data_app.command("prepare")
def data_prepare(
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=PATH of the dataset to prepare (default: those set in AVBENCH_DATA_<NAME> or avbench.toml). Repeatable.")] = None,
    size: Annotated[int, typer.Option(help="Frame size of the prepared frames.")] = 224,
    max_seconds: Annotated[float | None, typer.Option(help="Prepare only the first N seconds of each video.")] = None,
    workers: Annotated[int, typer.Option(help="Processes for decoding: -1 (default) one per core on more than two cores, for 64 files or more; 0 none (this process).")] = -1,
    cache: Annotated[Path | None, typer.Option(help="Cache folder (default: AVBENCH_CACHE or the user cache).")] = None,
    timing: Annotated[bool, typer.Option(help="Afterwards, time segment reads from the cache against decoding the sources.")] = False,
) -> None:
    """Decode, resample (and crop faces where needed) every video once into the cache."""
    from avbench.commands.data import prepare_cmd

    code = prepare_cmd(data, size=size, max_seconds=max_seconds, workers=workers, cache_dir=cache,
                       timing=timing, plugins=_plugins(), console=_console())
    raise typer.Exit(code)


# -- plugin scaffold ---------------------------------------------------------------------------


@plugin_app.command("new")
def plugin_new(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. mydet (the detector's name too).")],
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to create the package (default: ./avbench-NAME).")] = None,
) -> None:
    """Create a working third-party detector plugin package (pyproject, detector, test)."""
    from avbench.scaffold import new_plugin

    path = new_plugin(name, directory, taken=set(_plugins().detectors))
    _console().print(f"created {path}\nnext: pip install -e {path} && avbench plugins")


# -- bench -------------------------------------------------------------------------------------


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer repetitions, a smaller batch and less media: a few minutes on a CPU.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    batch: Annotated[int | None, typer.Option(min=1, help="Segments per training/evaluation batch (default: 32 on CUDA; on a CPU 2, or 1 with --quick).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write every figure to this JSON file.")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these sections (repeatable or comma-separated): decode, cache, loader, model, memory, cli.")] = None,
    peak_tflops: Annotated[float | None, typer.Option("--peak-tflops", help="Peak bf16 TFLOP/s of the GPU, for model FLOPs utilisation (default: a table of known GPUs).")] = None,
    detector: Annotated[str, typer.Option("--detector", "-d", help="The torch detector to time (see `avbench detectors`).")] = "avprompt",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Detector config KEY=VALUE (e.g. backbone=tiny). Repeatable.")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Smallest sizes, to check the bench runs (tests); no target is judged.")] = False,
    reps: Annotated[int | None, typer.Option(min=1, help="Repetitions of each timing (default: 3 with --quick, else 5).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Loader workers to measure (default: what the engine uses on this machine).")] = None,
) -> None:
    """Measure where training time goes: decoding, the cache, the loader, a detector's training step and evaluation against its floor, memory, start-up."""
    from avbench.bench import BenchOptions, run_bench
    from avbench.bench.report import render
    from avbench.config import parse_set_items

    opts = BenchOptions(quick=quick, device=device, batch=batch, only=tuple(only or ()),
                        peak_tflops=peak_tflops, detector=detector, settings=parse_set_items(set_),
                        smoke=smoke, reps=reps, workers=workers)
    doc = run_bench(opts, console=_console(stderr=True))
    render(doc, _console())
    if json_path is not None:
        import json

        from avbench.results import atomic_write_bytes

        atomic_write_bytes(json_path, (json.dumps(doc, indent=1) + "\n").encode())
        _console().print(f"wrote {json_path}")


# -- entry point -------------------------------------------------------------------------------


def make_app(plugins: Any) -> typer.Typer:
    """The Typer app of one invocation: the core commands of ``app`` plus those ``plugins``
    add (their ``avbench_register_commands`` hook); ``app`` itself is never changed."""
    inv = typer.Typer(name=app.info.name, help=app.info.help, no_args_is_help=True,
                      add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode=app.rich_markup_mode)
    inv.registered_callback = app.registered_callback
    inv.registered_commands = list(app.registered_commands)
    inv.registered_groups = list(app.registered_groups)
    plugins.add_commands(inv)
    return inv


def command(inv: typer.Typer) -> Any:
    """The click command tree of ``inv``, its flags shown without a type placeholder: Typer
    (0.29) labels ``--ci`` or ``--help`` ``<bool>`` although they take no value."""
    import typer.main

    def quiet(cmd: Any) -> None:
        for p in [*cmd.params, cmd.get_help_option(cmd.context_class(cmd))]:
            if p is not None and getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        for sub in getattr(cmd, "commands", {}).values():
            quiet(sub)

    cmd = typer.main.get_command(inv)
    quiet(cmd)
    return cmd


def _pre_parse(args: list[str]) -> tuple[str | None, bool]:
    """(--plugins-dir, --debug) among the root options, before the command name.

    Plugins may add commands, so the plugins folder must be known before Typer builds the
    command tree that parses the arguments; Typer parses the root options only as part of
    that tree, hence this small scan of the same options."""
    plugins_dir, debug = None, False
    for i, a in enumerate(args):
        if not a.startswith("-"):
            break
        if a == "--plugins-dir" and i + 1 < len(args):
            plugins_dir = args[i + 1]
        elif a.startswith("--plugins-dir="):
            plugins_dir = a.split("=", 1)[1]
        debug = debug or a == "--debug"
    return plugins_dir, debug


def _typer_click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage-error, exit, abort) classes that Typer's app raises in non-standalone mode.

    They come from the click that ``typer.main`` runs on: Typer >= 0.22 carries its own copy
    (``typer._click``), older versions import ``click``; a separately installed ``click`` that
    is already loaded (a plugin's command may use it) is caught too."""
    import typer.main

    clicks = [getattr(typer.main, "_click", None) or getattr(typer.main, "click", None)]
    if "click" in sys.modules:
        clicks.append(sys.modules["click"])
    usage: list[type] = []
    exits: list[type] = [typer.Exit]
    aborts: list[type] = [typer.Abort]
    for c in clicks:
        exc = getattr(c, "exceptions", None)
        if exc is None:
            continue
        usage.append(exc.ClickException)
        exits.append(getattr(exc, "Exit", typer.Exit))
        aborts.append(getattr(exc, "Abort", typer.Abort))
    return tuple(dict.fromkeys(usage)), tuple(dict.fromkeys(exits)), tuple(dict.fromkeys(aborts))


def _show_usage_error(e: Any) -> None:
    """Print a command-line mistake exactly as Typer's standalone mode does."""
    import typer.core

    if getattr(typer.core, "HAS_RICH", False) and app.rich_markup_mode is not None:
        from typer import rich_utils

        if hasattr(rich_utils, "rich_format_error"):
            rich_utils.rich_format_error(e)
            return
    e.show()


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (errors become one line on stderr)."""
    args = list(sys.argv[1:] if argv is None else argv)
    plugins_dir, debug = _pre_parse(args)
    debug = debug or os.environ.get("AVBENCH_DEBUG") == "1"
    token = _ARGV.set(tuple(args))
    system_box: list[Any] = []
    try:
        return _invoke(args, plugins_dir, system_box.append)
    except Exception as e:
        if debug:
            raise
        return _report(e, system_box[0] if system_box else None)
    finally:
        _ARGV.reset(token)


def _invoke(args: list[str], plugins_dir: str | None, keep: Any) -> int:
    from avbench.plugins import PluginSystem, using

    usage_errors, exits, aborts = _typer_click_exceptions()
    try:
        system = PluginSystem(plugins_dir)
        keep(system)
        with using(system):
            # Typer returns the code of typer.Exit (and 130 for Ctrl-C) in non-standalone mode
            code = command(make_app(system))(args=args, prog_name="avbench",
                                             standalone_mode=False, obj=system)
        if isinstance(code, int) and not isinstance(code, bool):
            if code == 130:
                typer.echo("interrupted", err=True)
            return code
    except exits as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except aborts:
        typer.echo("aborted", err=True)
        return 130
    except usage_errors as e:  # a command-line mistake: Typer's usage message, never a traceback
        _show_usage_error(e)
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return 0


def _report(e: Exception, system: Any) -> int:
    """One line on stderr for an error; returns the exit code."""
    if isinstance(e, AvbenchError):
        typer.echo(f"error: {e}", err=True)
        return e.exit_code
    from avbench.failures import describe_failure

    line, code = describe_failure(e, system)
    typer.echo(f"error: {line} (rerun with --debug for the traceback)", err=True)
    return code


def main() -> NoReturn:
    sys.exit(run_cli())
