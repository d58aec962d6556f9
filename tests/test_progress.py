"""Progress bars: drawn on a terminal; on a pipe, plain lines only."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from avbench.engine.progress import Progress


def _ctx(terminal: bool) -> tuple[SimpleNamespace, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=100)
    return SimpleNamespace(quiet=False, rank=0, console=console), out


def _epoch(ctx: SimpleNamespace, *, transient: bool) -> None:
    with Progress(ctx, total=4, desc="epoch 1", unit="seg", transient=transient) as bar:
        for _ in range(4):
            bar.advance(1, loss=0.5)


def test_piped_output_is_plain_lines_without_blanks():
    ctx, out = _ctx(terminal=False)
    _epoch(ctx, transient=True)
    ctx.console.print("epoch 1 | loss 0.5000")
    _epoch(ctx, transient=False)
    lines = out.getvalue().splitlines()
    assert lines[0] == "epoch 1 | loss 0.5000"
    assert lines[1].startswith("epoch 1: 4/4 seg in ")
    assert len(lines) == 2
    assert "\x1b" not in out.getvalue() and "━" not in out.getvalue()


def test_a_terminal_gets_a_bar():
    ctx, out = _ctx(terminal=True)
    _epoch(ctx, transient=False)
    assert "4/4" in out.getvalue() and "\x1b" in out.getvalue()


def test_quiet_prints_nothing():
    ctx, out = _ctx(terminal=False)
    ctx.quiet = True
    _epoch(ctx, transient=False)
    assert out.getvalue() == ""
