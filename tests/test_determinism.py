"""Same input, same output: the synthetic sets' documented digests, and byte-identical scores
from two runs in fresh processes, caches and result folders (docs/determinism.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avbench.datasets.synthetic import content_digest
from avbench.media.cache import CACHE_FORMAT

DOC = Path(__file__).resolve().parents[1] / "docs" / "determinism.md"


def _documented_digests() -> dict[str, str]:
    rows = re.findall(r"^\| (FakeAVCeleb|KoDF)-shaped, scale 1, seed 0 \| `([0-9a-f]{64})` \|$",
                      DOC.read_text(encoding="utf-8"), flags=re.M)
    return dict(rows)


def _has_avx512() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("AVX512_SKX"))


def test_the_digest_sees_every_byte_but_the_marker(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"one")
    (tmp_path / ".avbench-generated.json").write_text('{"seconds": 1.0}')
    first = content_digest(tmp_path)
    (tmp_path / ".avbench-generated.json").write_text('{"seconds": 2.0}')
    assert content_digest(tmp_path) == first
    (tmp_path / "a" / "x.mp4").write_bytes(b"onE")
    assert content_digest(tmp_path) != first
    (tmp_path / "a" / "x.mp4").write_bytes(b"one")
    (tmp_path / "a" / "x.mp4").rename(tmp_path / "a" / "y.mp4")
    assert content_digest(tmp_path) != first


@pytest.mark.skipif(not _has_avx512(), reason="the documented digests were made on an AVX-512 "
                    "CPU; NumPy, OpenCV and FFmpeg may round differently elsewhere")
@pytest.mark.slow
def test_the_synthetic_sets_have_the_documented_digests(synthetic_root, synthetic_kodf_root):
    want = _documented_digests()
    assert set(want) == {"FakeAVCeleb", "KoDF"}
    assert content_digest(synthetic_root) == want["FakeAVCeleb"]
    assert content_digest(synthetic_kodf_root) == want["KoDF"]


def _run(root: Path, tmp: Path, hashseed: str, loader_workers: int) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hashseed, "AVBENCH_CACHE": str(tmp / "cache"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    out = tmp / "results"
    cmd = [sys.executable, "-m", "avbench", "run", "-d", "avprompt", "-p", "cross-manip",
           "--fold", "RVFA", "--data", f"fakeavceleb={root}", "--set", "backbone=tiny",
           "--set", "epochs=2", "--set", f"num_workers={loader_workers}", "--out", str(out),
           "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (scores,) = out.glob("cross-manip/RVFA/avprompt/*/scores.csv")
    record = json.loads((scores.parent / "run.json").read_text())
    # what decides the last bits is recorded: torch's thread count, the cache's format
    assert record["torch_threads"] == 2
    assert record["media"]["cache"]["format"] == CACHE_FORMAT
    return scores.read_bytes()


@pytest.mark.slow
def test_the_same_run_twice_gives_byte_identical_scores(synthetic_root, tmp_path):
    """Fresh processes, caches and result folders, other PYTHONHASHSEEDs and data-loader
    worker counts: the same scores.csv, byte for byte."""
    pytest.importorskip("avbench_avprompt")
    a = _run(synthetic_root, tmp_path / "a", "1", 0)
    b = _run(synthetic_root, tmp_path / "b", "2", 2)
    assert a.count(b"\n") > 10
    assert a == b
