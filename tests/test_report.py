"""``avbench report``: the HTML page, on real runs of two detectors over cross-manip (slow) and
on hand-written run folders (fast), and in headless Chromium where one is installed."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from avbench.protocols import split_hash
from avbench.records import VideoRecord
from avbench.report import build_page, write_report
from avbench.results import RunRecord, read_run, run_folder, write_scores
from avbench.significance import delong
from avbench.tables import build_table, cell_text, collect, table_specs
from avbench.tables.build import registered_protocols
from avbench.testing import run_cli

FOLDS = ("RVFA", "FVRA-WL", "FVFA-FS", "FVFA-GAN", "FVFA-WL")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def images(page: str) -> list[bytes]:
    return [base64.b64decode(d) for d in
            re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def section(page: str, anchor: str) -> str:
    """The page from the element with id ``anchor`` to the next h3 or section."""
    start = page.index(f'id="{anchor}"')
    ends = [i for i in (page.find("<h3 id=", start + 10), page.find("<section", start + 10),
                        page.find("</section>", start)) if i > 0]
    return page[start:min(ends)]


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


# --------------------------------------------------------------------------------------------
# Real runs: mfcc-logreg and sync-corr over every cross-manip fold


@pytest.fixture(scope="module")
def real_results(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "results"
    for det in ("mfcc-logreg", "sync-corr"):
        r = run_cli(["run", "-d", det, "-p", "cross-manip", "--data",
                     f"fakeavceleb={synthetic_root}", "--out", str(out), "--quiet"])
        assert r.exit_code == 0, r.output[-3000:]
    return out


@pytest.fixture(scope="module")
def real_page(real_results, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("page")
    r = run_cli(["report", "--results", str(real_results), "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = out / "index.html"
    return page, page.read_text("utf-8")


@pytest.mark.slow
def test_the_page_has_every_table_as_avbench_table_builds_it(real_results, real_page):
    _, page = real_page
    runs = collect(real_results)
    for n in table_specs():
        part = section(page, f"table-{n}")
        t = build_table(n, runs)
        assert html.escape(t.title, quote=True) in part
        body = text_of(part)
        for row in t.rows:
            for col in t.columns:
                want = cell_text(t, row.cells[col.key])
                if want:
                    assert want in body
        for note in t.footnotes:
            assert html.escape(note, quote=True) in part
    # Table 2 has a computed row per detector, with the cells avbench table shows
    t2 = text_of(section(page, "table-2"))
    assert "mfcc-logreg" in t2 and "sync-corr" in t2 and "computed" in t2


@pytest.mark.slow
def test_every_fold_has_roc_curves_histograms_metrics_and_significance(real_results,
                                                                       real_page):
    _, page = real_page
    for fold in FOLDS:
        anchor = "fold-" + re.sub(r"[^a-z0-9]", "-", f"cross-manip / {fold}".lower())
        part = section(page, anchor)
        alts = re.findall(r'<img alt="([^"]*)"', part)
        assert f"ROC curves on cross-manip / {fold}" in alts
        assert f"score histograms per category on cross-manip / {fold}" in alts
        assert f"score_a histograms per category on cross-manip / {fold}" in alts  # mfcc's
        for png in images(part):
            assert png.startswith(PNG_MAGIC)
            assert b"Software" not in png and b"matplotlib" not in png  # no version stamp
        text = text_of(part)
        assert "Acc_a" in text and "AUC_a" in text  # the audio branch's metrics
        assert re.search(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", text)  # bootstrap intervals
        assert "mfcc-logreg − sync-corr" in text and "p (DeLong)" in text

        # the DeLong p shown is the test on the two runs' scores paired by id
        (a,) = real_results.glob(f"cross-manip/{fold}/mfcc-logreg/*/scores.csv")
        (b,) = real_results.glob(f"cross-manip/{fold}/sync-corr/*/scores.csv")
        both = pd.read_csv(a).merge(pd.read_csv(b), on="id").sort_values("id")
        d = delong(both["label_x"], both["score_x"], both["score_y"])
        p = "< 0.0001" if d.p < 1e-4 else f"{d.p:.4f}"
        assert f"{100 * d.diff:+.2f}" in text and p in text


@pytest.mark.slow
def test_every_run_identity_and_provenance_is_on_the_page(real_results, real_page):
    _, page = real_page
    prov = text_of(page[page.index('id="provenance"'):page.index('id="left-out"')])
    folders = sorted(real_results.rglob("run.json"))
    assert len(folders) == 10
    for f in folders:
        rec = read_run(f.parent)
        ident = rec.identity
        assert f.parent.relative_to(real_results).as_posix() in prov
        for value in (ident.config_hash, ident.protocol_file_hash, ident.protocol_version,
                      rec.git_commit or "unknown", rec.created, rec.finished):
            assert value in prov
        for _, fp in ident.datasets:
            assert fp in prov
    assert str(real_results) not in page  # no path of this machine: folders are relative


@pytest.mark.slow
def test_the_same_results_give_the_same_bytes(real_results, real_page, tmp_path):
    """Another process, another hash seed: the same page, byte for byte."""
    first, page = real_page
    env = {"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "MPLCONFIGDIR": str(tmp_path / "mpl")}
    done = subprocess.run([sys.executable, "-m", "avbench", "report", "--results",
                           str(real_results), "--out", str(tmp_path / "again")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "again" / "index.html").read_bytes() == first.read_bytes()
    assert len(images(page)) == 5 * 3


# --------------------------------------------------------------------------------------------
# Hand-written run folders (fast)


def scores_frame(seed: int, ids: list[str], sep: float = 0.4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(ids)
    label = np.arange(n) % 2
    return pd.DataFrame({
        "id": ids, "dataset": "fakeavceleb", "label": label, "label_v": 0, "label_a": label,
        "type": np.where(label == 1, "RealVideo-FakeAudio", "RealVideo-RealAudio"),
        "method": np.where(label == 1, "rtvc", "real"),
        "category": np.where(label == 1, "RVFA", "real"), "group": "",
        "score": np.clip(0.3 + sep * label + rng.normal(0, 0.15, n), 0, 1),
        "n_segments": 2, "padded_frames": 0,
    })


def write_run(root: Path, detector: str, fold: str, scores: pd.DataFrame, *,
              status: str = "complete", finished: str = "2025-01-02T00:00:00Z",
              config: dict | None = None, run_id: str | None = None,
              extra: dict | None = None) -> Path:
    protocol = registered_protocols()["cross-manip"]
    run_id = run_id or f"20250102-{detector}-{fold}"
    path = run_folder(root, "cross-manip", fold, detector, run_id)
    recs = [VideoRecord(id=i, dataset="fakeavceleb", label=0, label_v=0, label_a=0)
            for i in scores["id"]]
    path.mkdir(parents=True, exist_ok=True)
    sha = write_scores(path / "scores.csv", scores)
    RunRecord(
        run_id=run_id, status=status, created=finished,
        finished=finished if status == "complete" else None,
        detector_info={"name": detector, "plugin": "test", "config": config or {"c": 1},
                       "config_hash": f"{abs(len(detector)):016x}"},
        protocol_info={"name": "cross-manip", "version": protocol.version, "fold": fold,
                       "file_hash": protocol.file_hash},
        splits={"test": {"dataset": "fakeavceleb", "n": len(recs), "hash": split_hash(recs)}},
        datasets={"fakeavceleb": {"fingerprint": "f" * 64}},
        seed=3, n_test_videos=len(scores), git_commit="0123abcd", extra=extra or {},
        scores_sha256=sha,
    ).write(path)
    return path


IDS = [f"RealVideo/x/id{i:03d}.mp4" for i in range(24)]


@pytest.fixture
def small_results(tmp_path) -> Path:
    root = tmp_path / "results"
    write_run(root, "alpha", "RVFA", scores_frame(1, IDS))
    write_run(root, "beta", "RVFA", scores_frame(2, IDS, sep=0.1))
    # another test split: not compared with the others
    write_run(root, "gamma", "RVFA", scores_frame(3, IDS[:20]))
    return root


def test_pairs_on_the_same_test_videos_are_tested_others_are_said_not_to_be(small_results):
    page = build_page(collect(small_results), registered_protocols())
    part = text_of(section(page, "fold-cross-manip---rvfa"))
    a, b = scores_frame(1, IDS), scores_frame(2, IDS, sep=0.1)
    d = delong(a["label"], a["score"], b["score"])
    assert "alpha − beta" in part and f"{100 * d.diff:+.2f}" in part
    assert "alpha vs gamma: not compared, different test videos" in part
    assert "beta vs gamma: not compared, different test videos" in part


def test_left_out_runs_are_listed_with_their_reasons_and_text_is_escaped(small_results):
    bad = scores_frame(4, ["<script>alert(1)</script>", *IDS[1:]])
    bad.loc[0, "label"] = 2
    write_run(small_results, "delta", "FVRA-WL", bad)
    write_run(small_results, "eps", "FVRA-WL", scores_frame(5, IDS), status="incomplete")
    write_run(small_results, "zeta", "FVRA-WL", scores_frame(6, IDS),
              config={"note": "<b>bold</b> & \"quoted\""})
    page = build_page(collect(small_results), registered_protocols())
    assert "<script>" not in page and "<b>bold</b>" not in page
    left = page[page.index('id="left-out"'):]
    assert "left out cross-manip/FVRA-WL/delta/20250102-delta-FVRA-WL: scores.csv: label of " \
           "&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27; is &#x27;2&#x27;; labels must " \
           "be 0 or 1" in left
    assert ("left out cross-manip/FVRA-WL/eps/20250102-eps-FVRA-WL: status is "
            "&#x27;incomplete&#x27;, not &#x27;complete&#x27;") in left
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; \\&quot;quoted\\&quot;" in page  # the config, as JSON
    prov = text_of(page[page.index('id="provenance"'):page.index('id="left-out"')])
    assert "zeta" in prov and "delta" not in prov and "eps/" not in prov


def test_an_older_run_of_a_cell_is_listed_but_not_shown(small_results):
    write_run(small_results, "alpha", "RVFA", scores_frame(7, IDS), run_id="20240101-old",
              finished="2024-01-01T00:00:00Z")
    page = build_page(collect(small_results), registered_protocols())
    prov = text_of(page[page.index('id="provenance"'):page.index('id="left-out"')])
    assert "not shown: an older run of alpha on cross-manip / RVFA" in prov
    assert len(re.findall(r"alpha − beta", page)) == 1


def test_an_evaluation_only_run_names_the_run_whose_state_it_scored(small_results):
    write_run(small_results, "alpha", "FVRA-WL", scores_frame(8, IDS),
              extra={"evaluation_only": True,
                     "source_run": {"folder": "intra/all/alpha/r1",
                                    "state": {"file": "state.pt", "sha256": "ab" * 32}}})
    page = build_page(collect(small_results), registered_protocols())
    prov = text_of(page[page.index('id="provenance"'):page.index('id="left-out"')])
    assert (f"evaluation only the saved state of run intra/all/alpha/r1 (state.pt, sha256 "
            f"{'ab' * 32}), not trained on this protocol") in " ".join(prov.split())


def test_the_page_is_the_same_for_the_same_results(small_results, tmp_path):
    f = write_report(small_results, tmp_path / "a")
    assert f.stat().st_mode & 0o777 == 0o644  # a page to share
    a = f.read_bytes()
    b = write_report(small_results, tmp_path / "b").read_bytes()
    assert a == b
    assert b"<script" not in a and b"http://" not in a and b"https://" not in a  # no network
    pngs = images(a.decode("utf-8"))
    assert len(pngs) == 2  # one fold: its ROC curves and its score histograms
    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            im.load()  # decodes every row: a truncated file raises
            assert im.format == "PNG" and im.width > 300 and im.height > 300


def test_bad_results_or_out_is_one_line_exit_2(tmp_path, small_results):
    for args, where in ((["--results", str(tmp_path / "missing")], "missing"),
                        (["--results", str(small_results / "cross-manip" / "RVFA" / "alpha" /
                                            "20250102-alpha-RVFA" / "run.json")], "run.json")):
        r = run_cli(["report", *args, "--out", str(tmp_path / "o")])
        assert r.exit_code == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --results") and where in lines[0]
    (tmp_path / "file").write_text("x")
    r = run_cli(["report", "--results", str(small_results), "--out", str(tmp_path / "file")])
    assert r.exit_code == 2 and r.stderr.strip() == \
        f"error: --out {tmp_path / 'file'}: exists and is not a folder"


def test_help_and_listing_import_neither_matplotlib_nor_torch():
    code = ("import sys; from avbench.cli import run_cli; run_cli(['--help']); "
            "run_cli(['report', '--help']); "
            "print(sorted(m for m in ('matplotlib', 'torch', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------------------
# Headless Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _decoded_in_chromium(page: Path, tmp_path: Path) -> tuple[int, str]:
    """(images on the page, what Chromium titles a probed copy of it: 'decoded K of N')."""
    # after 'load' every inline image has been fetched and decoded or has failed: a broken
    # PNG is complete with naturalWidth 0 (img.decode() could reject on a loaded machine)
    probe = ("<script>window.addEventListener('load', () => {"
             " const imgs = [...document.images];"
             " const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
             " document.title = 'decoded ' + ok + ' of ' + imgs.length; });</script>")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text("utf-8").replace("</body>", probe + "</body>"), "utf-8")
    done = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", done.stdout)
    return len(images(page.read_text("utf-8"))), title.group(1) if title else ""


NO_CHROMIUM = pytest.mark.skipif(_chromium() is None,
                                 reason="no chromium/chromium-browser/google-chrome on PATH")


@NO_CHROMIUM
def test_the_page_renders_in_headless_chromium_with_its_figures(small_results, tmp_path):
    page = write_report(small_results, tmp_path / "page")
    n, title = _decoded_in_chromium(page, tmp_path)
    assert n >= 2 and title == f"decoded {n} of {n}"
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
@NO_CHROMIUM
def test_the_two_detector_page_opens_in_headless_chromium(real_page, tmp_path):
    page, _ = real_page
    n, title = _decoded_in_chromium(page, tmp_path)
    assert n == 15 and title == "decoded 15 of 15"
