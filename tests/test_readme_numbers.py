"""The numbers the READMEs state are what their commands print: the README's main job is run
here as written (but its install), and its Table 2 compared with the README's table."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLUGIN_README = ROOT / "plugins" / "avprompt" / "README.md"


def _main_job() -> str:
    """The README's first command, without its `pip install ... &&`."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    first = blocks[0].strip()
    assert first.startswith("pip install"), first
    return first.split("&&", 1)[1].strip()


def _readme_row(with_method: bool = False) -> dict[str, str]:
    lines = [line for line in README.read_text(encoding="utf-8").splitlines()
             if line.startswith(("| computed row |", "| avprompt"))]
    header, row = ([c.strip() for c in line.strip("|").split("|")] for line in lines[:2])
    start = 0 if with_method else 1
    return dict(zip(["Method", *header[1:]][start:], row[start:], strict=True))


def _env(avbench_cache: Path) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "AVBENCH_CACHE": str(avbench_cache), "HF_HUB_OFFLINE": "1",
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "200"}


def test_the_readme_states_the_tables_columns():
    row = _readme_row()
    assert len(row) == 12 and all(re.fullmatch(r"\d+\.\d", v) for v in row.values()), row


@pytest.mark.slow
def test_the_main_job_prints_the_readmes_numbers(synthetic_root, avbench_cache, tmp_path):
    pytest.importorskip("avbench_avprompt")
    env = _env(avbench_cache)  # the session's cache already holds the synthetic set
    done = subprocess.run(["bash", "-c", _main_job()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Table 2" in done.stdout
    table = subprocess.run([sys.executable, "-m", "avbench", "table", "--table", "2",
                            "--format", "csv"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout
    (computed,) = [r for r in csv.DictReader(io.StringIO(table)) if r["Source"] == "computed"]
    got = {k: f"{float(v):.1f}" for k, v in computed.items() if k not in ("Method", "Source")}
    assert got == _readme_row()
    assert computed["Method"] == _readme_row(with_method=True)["Method"]  # its row's label


@pytest.mark.slow
def test_the_parameter_count_the_readmes_state(avbench_cache):
    pytest.importorskip("avbench_avprompt")
    shown = subprocess.run([sys.executable, "-m", "avbench", "detectors", "show", "avprompt"],
                           env=_env(avbench_cache), capture_output=True, text=True,
                           check=True).stdout
    count = re.search(r"trainable: ([\d,]+)", shown)
    assert count, shown
    for doc in (README, PLUGIN_README):
        stated = set(re.findall(r"([\d,]{7,}) trainable param", doc.read_text(encoding="utf-8")))
        assert stated == {count.group(1)}, doc.name
