"""Progress display: rich bars on a terminal; on a pipe or file, one plain line when a
lasting bar ends (none for transient ones); nothing when quiet or on ranks other than 0."""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """A bar with a rate (items/s) and free-form fields (loss ...)."""

    def __init__(self, ctx: Any, *, total: int, desc: str, unit: str = "it",
                 transient: bool = True) -> None:
        self.enabled = not ctx.quiet and ctx.rank == 0 and ctx.console is not None
        self.console = ctx.console
        self.total = total
        self.desc = desc
        self.unit = unit
        self.transient = transient
        self.done = 0
        self.fields: dict[str, str] = {}
        self._t0 = time.perf_counter()
        self._p: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._p = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=self.transient,
            )
            self._p.__enter__()
            self._task = self._p.add_task(self.desc, total=self.total, rate="", info="")
        return self

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self._t0
        return self.done / dt if dt > 0 else 0.0

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        for k, v in fields.items():
            self.fields[k] = f"{v:.4f}" if isinstance(v, float) else str(v)
        if self._p is not None:
            info = " ".join(f"{k}={v}" for k, v in self.fields.items())
            self._p.update(self._task, advance=n, rate=f"{self.rate:.1f} {self.unit}/s", info=info)

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
        elif self.enabled and not self.transient and exc[0] is None:
            seconds = time.perf_counter() - self._t0
            self.console.print(f"{self.desc}: {self.done}/{self.total} {self.unit} in "
                               f"{seconds:.1f} s", markup=False, highlight=False)
