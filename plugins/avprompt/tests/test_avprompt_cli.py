"""Every variant runs under `avbench run` on the synthetic benchmark, and Tables 4 and 5
show them (tiny backbones, one epoch: this checks the plumbing, not the scores)."""

from __future__ import annotations

import json

import pytest

from avbench.testing import run_cli

VARIANTS = ["avprompt", "avprompt-audio-only", "avprompt-visual-only", "avprompt-no-cmfm",
            "avprompt-no-la", "avprompt-no-lv", "avprompt-vpt-replace", "avprompt-segment-loss"]


@pytest.fixture(scope="module")
def results(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    for name in VARIANTS:
        r = run_cli(["run", "-d", name, "-p", "intra", "--data", f"fakeavceleb={synthetic_root}",
                     "--out", str(out), "--quiet", "--set", "backbone=tiny",
                     "--set", "epochs=1"])
        assert r.exit_code == 0, f"{name}: {r.output[-2000:]}"
    return out


@pytest.mark.slow
def test_every_variant_writes_a_complete_run(results):
    for name in VARIANTS:
        (run_json,) = (results / "intra" / "all" / name).rglob("run.json")
        info = json.loads(run_json.read_text())
        assert info["status"] == "complete"
        prov = info["describe"]["provenance"]
        assert prov["clip" if name != "avprompt-audio-only" else "whisper"]["preset"] == "tiny"


@pytest.mark.slow
@pytest.mark.parametrize(("table", "rows"), [
    (4, ["avprompt-audio-only", "avprompt-visual-only", "avprompt-no-cmfm", "avprompt"]),
    (5, ["avprompt-no-la", "avprompt-no-lv", "avprompt-vpt-replace", "avprompt-segment-loss"]),
])
def test_ablation_tables_show_the_variants(results, table, rows):
    r = run_cli(["table", "--table", str(table), "--results", str(results), "--format",
                 "csv", "--no-published"])
    assert r.exit_code == 0, r.output
    for name in rows:
        assert name in r.stdout
    if table == 5:
        for label in ("w/o L_a", "w/o L_v", "VPT-replacing", "segment-level loss"):
            assert label in r.stdout
