"""Render a :class:`Table` as rich, markdown, LaTeX or CSV.

Best values are bold and second-best underlined in rich, markdown (``**x**``, ``<u>x</u>``)
and LaTeX (``\\textbf``, ``\\underline``); CSV carries plain full-precision numbers and a
``Source`` column (reported/computed) and no styling.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from avbench.errors import ConfigError
from avbench.tables.model import Cell, Table

FORMATS = ("rich", "markdown", "latex", "csv")
NA = "n/a"
DAGGER = "†"
SIGNIFICANT = "*"
NOTES_COLUMN = "Notes"


def render(table: Table, fmt: str, *, width: int | None = None) -> Any:
    """``rich`` gives a rich renderable (split to fit ``width`` if given, see
    :func:`render_rich`); the other formats give a string."""
    if fmt == "rich":
        return render_rich(table, width)
    if fmt == "markdown":
        return render_markdown(table)
    if fmt == "latex":
        return render_latex(table)
    if fmt == "csv":
        return render_csv(table)
    raise ConfigError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")


def cell_text(table: Table, cell: Cell, *, pm: str = " ± ", dagger: str = DAGGER,
              mark: str = SIGNIFICANT) -> str:
    """The printed text of a cell (no styling): ``97.1``, ``97.1 ± 0.3``,
    ``97.1 [95.0, 98.7]``, ``n/a``, ``-`` (not in the paper) or blank (no run); ``mark``
    follows a value that differs significantly from ``--compare``'s detector."""
    if cell.reported_missing:
        return "-"
    if cell.undefined:
        text = NA
    elif cell.value is None:
        return ""
    else:
        d = table.decimals
        text = f"{cell.value:.{d}f}"
        if cell.std is not None:
            text += f"{pm}{cell.std:.{d}f}"
        if table.ci and cell.lo is not None and cell.hi is not None:
            text += f" [{cell.lo:.{d}f}, {cell.hi:.{d}f}]"
        if cell.significant:
            text += mark
    if cell.incomplete:
        text += dagger
    return text


def _text_value(table: Table, name: str, value: Any, *, check: str = "✓") -> str:
    if name in table.check_columns:
        return check if value else ""
    return str(value)


# --------------------------------------------------------------------------------------------


def render_rich(table: Table, width: int | None = None) -> Any:
    """A ``rich.table.Table`` with the notes as its caption; or, given the terminal's
    ``width``, the table in as few parts as fit that width (whole column groups, each part
    repeating the text columns) followed by the notes as text wrapped to the width."""
    from rich.console import Console, Group
    from rich.text import Text

    notes = Text("\n".join(table.footnotes)) if table.footnotes else None
    if width is None:
        return _rich_table(table, table.columns, Text(table.title), caption=notes)
    groups: list[list[Any]] = []
    for col in table.columns:
        if groups and groups[-1][0].group == col.group and col.group:
            groups[-1].append(col)
        else:
            groups.append([col])
    console = Console(width=10_000)
    parts: list[list[Any]] = []
    for g in groups:
        if parts:
            trial = _rich_table(table, parts[-1] + g, None)
            if console.measure(trial).maximum <= width:
                parts[-1] += g
                continue
        parts.append(list(g))
    shown: list[Any] = []
    for i, cols in enumerate(parts):
        title = table.title if i == 0 else f"{table.title.split(':')[0]} (continued)"
        # the title is wrapped to the terminal, not to the (maybe narrow) table under it
        shown += [Text(title, style="italic"), _rich_table(table, cols, None)]
    if notes is not None:
        shown.append(notes)
    return Group(*shown)


def _rich_table(table: Table, columns: list[Any], title: Any, caption: Any = None) -> Any:
    from rich.table import Table as RichTable
    from rich.text import Text

    # Text objects throughout: names and notes are never parsed as rich markup ("[lo, hi]")
    rt = RichTable(title=title, caption=caption, caption_justify="left", title_justify="left")
    for name in table.text_columns:
        rt.add_column(Text(name), justify="center" if name in table.check_columns else "left")
    previous = None
    for col in columns:
        # the group (e.g. RVFA) heads the first column of its group only, like a multicolumn
        group = col.group if col.group != previous else ""
        previous = col.group
        header = f"{group}\n{col.label}" if any(c.group for c in table.columns) else col.label
        rt.add_column(Text(header), justify="right")
    for row in table.rows:
        cells: list[Any] = [Text(_text_value(table, n, row.text.get(n, "")))
                            for n in table.text_columns]
        for col in columns:
            c = row.cells[col.key]
            style = "bold" if c.rank == 1 else "underline" if c.rank == 2 else ""
            cells.append(Text(cell_text(table, c), style=style))
        rt.add_row(*cells)
    return rt


# --------------------------------------------------------------------------------------------


def _md_escape(s: str) -> str:
    for ch in ("\\", "|", "*", "_", "<", ">"):
        s = s.replace(ch, "\\" + ch)
    return s


def render_markdown(table: Table) -> str:
    head = [_md_escape(n) for n in table.text_columns] + [_md_escape(c.flat)
                                                          for c in table.columns]
    align = [":-:" if n in table.check_columns else ":--" for n in table.text_columns]
    align += ["--:"] * len(table.columns)
    lines = [f"**{_md_escape(table.title)}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(align) + "|"]
    for row in table.rows:
        out = [_md_escape(_text_value(table, n, row.text.get(n, ""))) for n in table.text_columns]
        for col in table.columns:
            c = row.cells[col.key]
            text = cell_text(table, c, mark="\\*")
            if c.rank == 1:
                text = f"**{text}**"
            elif c.rank == 2:
                text = f"<u>{text}</u>"
            out.append(text)
        lines.append("| " + " | ".join(out) + " |")
    if table.footnotes:
        lines.append("")
        lines.extend(f"- {_md_escape(n)}" for n in table.footnotes)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$^\dagger$",
                  "✓": r"\checkmark"}
_LATEX_LABELS = {"Acc._v": r"Acc.$_v$", "AUC_v": r"AUC$_v$", "Acc._a": r"Acc.$_a$",
                 "AUC_a": r"AUC$_a$", "L_CMFM": r"$\mathcal{L}_{CMFM}$"}


def _tex(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def _tex_note(s: str) -> str:
    """A footnote: its `code` spans (commands, file names) as ``\\texttt``."""
    parts = s.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: keep it as text
        return _tex(s)
    return "".join(rf"\texttt{{{_tex(p)}}}" if i % 2 else _tex(p) for i, p in enumerate(parts))


def _tex_label(s: str) -> str:
    return _LATEX_LABELS.get(s, _tex(s))


def _strip_number(title: str) -> str:
    """LaTeX numbers tables itself: drop a leading ``Table N:``."""
    head, sep, rest = title.partition(": ")
    return rest if sep and head.startswith("Table ") else title


def render_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``booktabs`` and ``amssymb``)."""
    nt = len(table.text_columns)
    spec = "".join("c" if n in table.check_columns else "l" for n in table.text_columns)
    spec += "r" * len(table.columns)
    lines = [r"% needs \usepackage{booktabs} and \usepackage{amssymb}",
             r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_tex(_strip_number(table.title))}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    groups: list[tuple[str, int, int]] = []  # (group, first column index 1-based, span)
    for i, col in enumerate(table.columns):
        pos = nt + i + 1
        if groups and groups[-1][0] == col.group:
            g, first, span = groups[-1]
            groups[-1] = (g, first, span + 1)
        else:
            groups.append((col.group, pos, 1))
    if any(g for g, _, _ in groups):
        top = [""] * nt
        rules = []
        for g, first, span in groups:
            top.append(rf"\multicolumn{{{span}}}{{c}}{{{_tex(g)}}}" if span > 1 else _tex(g))
            if g:
                rules.append(rf"\cmidrule(lr){{{first}-{first + span - 1}}}")
        lines.append(" & ".join(top) + r" \\")
        lines.append(" ".join(rules))
    head = [_tex_label(n) for n in table.text_columns] + [_tex_label(c.label)
                                                          for c in table.columns]
    lines.append(" & ".join(head) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        out = [_tex(_text_value(table, n, row.text.get(n, ""))) for n in table.text_columns]
        for col in table.columns:
            c = row.cells[col.key]
            text = _tex(cell_text(table, c))
            if c.rank == 1:
                text = rf"\textbf{{{text}}}"
            elif c.rank == 2:
                text = rf"\underline{{{text}}}"
            out.append(text)
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        lines.append(r"\par\smallskip\footnotesize")
        # one paragraph per note: a line break (\\) before a note that opens with "[lo, hi]"
        # would read it as \\[length]
        lines.append("\\par\n".join(_tex_note(n) for n in table.footnotes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def _plain(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def render_csv(table: Table) -> str:
    """Plain numbers (percentages, full precision), ``n/a`` where undefined, blank where there
    is no number; check-mark columns as true/false; ``Source`` says reported or computed. CSV
    carries no footnotes; where a row has notes of its own (a cell that scored fewer test
    videos than its split) a last column ``Notes`` holds them."""
    header = list(table.text_columns)
    for col in table.columns:
        header.append(col.flat)
        if table.aggregate == "mean":
            header += [f"{col.flat} std", f"{col.flat} runs"]
        if table.ci:
            header += [f"{col.flat} lo", f"{col.flat} hi"]
        if table.compare:
            header.append(f"{col.flat} p")
    notes = any(row.notes for row in table.rows)
    if notes:  # CSV has no footnotes: a row's own notes (cells that scored part of a split)
        header.append(NOTES_COLUMN)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in table.rows:
        out: list[str] = []
        for n in table.text_columns:
            v = row.text.get(n, "")
            out.append(("true" if v else "false") if n in table.check_columns else str(v))
        for col in table.columns:
            c = row.cells[col.key]
            out.append(NA if c.undefined else _plain(c.value))
            if table.aggregate == "mean":
                out += [_plain(c.std), str(c.n_runs) if c.n_runs else ""]
            if table.ci:
                out += [_plain(c.lo), _plain(c.hi)]
            if table.compare:
                out.append(_plain(c.p))
        if notes:
            out.append("; ".join(row.notes))
        w.writerow(out)
    return buf.getvalue()
