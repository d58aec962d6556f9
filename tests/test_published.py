"""The shipped published numbers equal the paper's tables, number for number.

The tables are parsed from the reference text at test time (tab-separated blocks just
before each "Table N:" caption) and compared with ``avbench/data/published.toml``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avbench.tables import build_table, load_published

REFERENCE = (Path(__file__).resolve().parents[1].parent / "shared" / "reference"
             / "paper-avprompt-aaai2025.txt")
NUMBER = re.compile(r"^(\d+(\.\d*)?|-)$")
UNDERLINE = re.compile(r"^<u>(.*)</u>$")
CHECK = "✓"


def _reference_text() -> str:
    if not REFERENCE.is_file():
        pytest.skip(f"reference text not found at ../shared/reference/{REFERENCE.name} "
                    f"(relative to the repository root)")
    return REFERENCE.read_text(encoding="utf-8")


def _parse_table(text: str, number: int) -> tuple[str, list[list[tuple[str, bool]]]]:
    """(caption, data rows); each row is a list of (cell text, underlined)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
    caption = lines[at][len(f"Table {number}: "):]
    i = at - 1
    while not lines[i].strip():
        i -= 1
    block: list[str] = []
    while i >= 0 and lines[i].strip():
        block.insert(0, lines[i])
        i -= 1
    rows = []
    for line in block:
        cells = []
        for raw in line.split("\t"):
            m = UNDERLINE.match(raw.strip())
            cells.append((m.group(1) if m else raw.strip(), bool(m)))
        if any(NUMBER.match(c) and c != "-" for c, _ in cells):
            rows.append(cells)
    return caption, rows


def _number(s: str) -> float | str:
    return "-" if s == "-" else float(s)


@pytest.fixture(scope="module")
def reference() -> str:
    return _reference_text()


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_published_numbers_equal_the_paper(reference: str, number: int) -> None:
    caption, rows = _parse_table(reference, number)
    t = load_published()[f"table{number}"]
    assert t["caption"] == caption
    ncols = len(t["columns"])
    assert len(rows) == len(t["rows"]), f"table {number}: row count"
    for cells, entry in zip(rows, t["rows"], strict=True):
        labels, values = cells[:-ncols], cells[-ncols:]
        assert all(NUMBER.match(c) for c, _ in values), (number, cells)
        assert [_number(c) for c, _ in values] == list(entry["values"]), entry["printed"]
        assert sorted(k for (_, u), k in zip(values, t["columns"], strict=True) if u) == sorted(
            entry["underlined"]), entry["printed"]
        assert entry["status"] == "reported"
        label_text = [c for c, _ in labels]
        if number == 4:
            assert label_text == [CHECK if entry[k] else "" for k in ("audio", "visual", "cmfm")]
        else:
            assert label_text[0] == entry["printed"]
        if number == 3:
            assert label_text[1] == entry["modality"]
        if number == 5:
            assert entry["label"] == entry["printed"]


def test_every_number_is_covered(reference: str) -> None:
    """Count the numbers in the text's tables and in the TOML: nothing is left out."""
    data = load_published()
    for n in range(1, 6):
        _, rows = _parse_table(reference, n)
        in_text = sum(1 for cells in rows for c, _ in cells if NUMBER.match(c))
        in_toml = sum(len(e["values"]) for e in data[f"table{n}"]["rows"])
        assert in_text == in_toml, n


def test_names_notes_and_columns() -> None:
    data = load_published()
    assert "AVGraph" in data["table1"]["note"]
    assert "AVFF" in data["table2"]["note"] and "AVFF" in data["table3"]["note"]
    starred = [e for e in data["table1"]["rows"] if e["printed"].endswith("*")]
    assert len(starred) == 3 and all("AVGraph" in e["origin"] for e in starred)
    for n in range(1, 6):
        t = data[f"table{n}"]
        assert t["columns"] == [c.key for c in build_table(n, [], published=False).columns]
        for e in t["rows"]:
            if e["printed"] == "Ours" and n != 5:
                assert e["method"] == "avprompt (paper)"
            assert e["method"] == "avprompt (paper)" or "avprompt" not in e["method"]
    assert [e["label"] for e in data["table5"]["rows"]] == [
        "Ours", "w/o L_a", "w/o L_v", "VPT-replacing", "segment-level loss"]
    assert [(e["audio"], e["visual"], e["cmfm"]) for e in data["table4"]["rows"]] == [
        (True, False, False), (False, True, False), (True, True, False), (True, True, True)]


def test_the_dash_is_explained_where_the_paper_leaves_a_number_out() -> None:
    """Table 1 has paper cells printed '-' and says what '-' means; Table 2 has none and
    does not."""
    from avbench.tables.build import build_table

    def dashes(n: int) -> tuple[bool, bool]:
        t = build_table(n, [])
        shown = any(c.reported_missing for r in t.rows for c in r.cells.values())
        return shown, "'-': not given in the paper." in t.footnotes

    assert dashes(1) == (True, True)
    assert dashes(2) == (False, False)
