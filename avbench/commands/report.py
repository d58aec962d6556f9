"""``avbench report``: one static HTML page about a results folder (see :mod:`avbench.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avbench.errors import AvbenchError, ResultsError


def report_cmd(results: Path, out: Path, plugins: Any) -> Path:
    """Write ``out/index.html`` from the runs below ``results``; returns the file."""
    from avbench.protocols import all_protocols
    from avbench.report import write_report

    if not results.is_dir():
        what = "is not a folder" if results.exists() else "results folder not found"
        raise ResultsError(f"--results {results}: {what}")
    if out.exists() and not out.is_dir():
        raise AvbenchError(f"--out {out}: exists and is not a folder")
    return write_report(results, out, protocols=all_protocols(plugins))
