"""HTML pieces of a report: one static page, its styles inline, its figures inline as
base64 PNG (``<img src="data:image/png;base64,...">``), no script and nothing fetched.

Every text that comes from a results folder (names, notes, config values, reasons) goes
through :func:`esc`; nothing else builds markup.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from avbench.tables.model import Table
from avbench.tables.render import cell_text

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 78em; padding: 0 1em; color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums;
                                      white-space: nowrap; }
tr.reported td { color: #555; } .best { font-weight: bold; } .second { text-decoration: underline; }
.significant { font-weight: bold; }
.scroll { overflow-x: auto; } ul.notes { font-size: 0.82em; color: #444; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #444; } code { font-size: 0.92em; overflow-wrap: anywhere; }
.muted { color: #666; } details { margin: 0.3em 0; }
"""


def esc(value: Any) -> str:
    """Text of a value, HTML-escaped (quotes too)."""
    return html.escape(str(value), quote=True)


def page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def image(png: bytes, alt: str, caption: str | None = None) -> str:
    """A figure with its PNG inline."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (f"<figure><img alt=\"{esc(alt)}\" src=\"data:image/png;base64,{data}\">"
            f"{cap}</figure>")


def notes(lines: Iterable[str]) -> str:
    items = "".join(f"<li>{esc(n)}</li>" for n in lines)
    return f"<ul class=\"notes\">{items}</ul>" if items else ""


def simple_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *,
                 numeric: Sequence[bool] | None = None, raw: bool = False) -> str:
    """A plain table; cells are escaped unless ``raw`` (cells already markup)."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v, num in zip(row, numeric, strict=True):
            cls = " class=\"num\"" if num else ""
            cells.append(f"<td{cls}>{v if raw else esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def label(text: str) -> str:
    """A column label as markup: ``Acc._v`` as Acc.<sub>v</sub>, ``L_CMFM`` as
    L<sub>CMFM</sub> (the paper's subscripts); escaped."""
    base, sep, sub = str(text).rpartition("_")
    if sep and base and sub.isalpha():
        return f"{esc(base)}<sub>{esc(sub)}</sub>"
    return esc(text)


def results_table(table: Table, anchor: str) -> str:
    """A :class:`~avbench.tables.Table` as ``avbench table`` builds it: the same cells
    (:func:`~avbench.tables.render.cell_text`), best in bold and second best underlined, the
    ``Source`` column, the footnotes."""
    grouped = any(c.group for c in table.columns)
    rows = []
    if grouped:
        top = [f"<th rowspan=\"2\">{label(n)}</th>" for n in table.text_columns]
        spans: list[list[Any]] = []
        for col in table.columns:
            if spans and spans[-1][0] == col.group:
                spans[-1][1] += 1
            else:
                spans.append([col.group, 1])
        top += [f"<th colspan=\"{n}\">{esc(g)}</th>" for g, n in spans]
        rows.append("<tr>" + "".join(top) + "</tr>")
        rows.append("<tr>" + "".join(f"<th>{label(c.label)}</th>" for c in table.columns)
                    + "</tr>")
    else:
        rows.append("<tr>" + "".join(f"<th>{label(n)}</th>" for n in table.text_columns)
                    + "".join(f"<th>{label(c.label)}</th>" for c in table.columns) + "</tr>")
    body = []
    for row in table.rows:
        cells = []
        for name in table.text_columns:
            v = row.text.get(name, "")
            if name in table.check_columns:
                v = "✓" if v else ""
            cells.append(f"<td>{esc(v)}</td>")
        for col in table.columns:
            c = row.cells[col.key]
            cls = "num" + (" best" if c.rank == 1 else " second" if c.rank == 2 else "")
            cells.append(f"<td class=\"{cls}\">{esc(cell_text(table, c))}</td>")
        body.append(f"<tr class=\"{esc(row.source.split()[0])}\">" + "".join(cells) + "</tr>")
    return (f"<h3 id=\"{esc(anchor)}\">{esc(table.title)}</h3>\n<div class=\"scroll\"><table>"
            f"<thead>{''.join(rows)}</thead><tbody>{''.join(body)}</tbody></table></div>"
            + notes(table.footnotes))


def fmt_pct(v: float | None, d: int = 1) -> str:
    return "" if v is None else f"{100 * v:.{d}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def details(summary: str, obj: Any) -> str:
    """A collapsed block with ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    return (f"<details><summary>{esc(summary)}</summary><pre><code>{esc(text)}</code></pre>"
            "</details>")
