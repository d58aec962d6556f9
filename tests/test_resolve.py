"""Where datasets come from: --data, AVBENCH_DATA_*, avbench.toml, and generated datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avbench.datasets.resolve import (
    MARKER,
    cache_root,
    ensure_generated,
    env_var,
    find_dataset_sources,
    missing_dataset_message,
    parse_data_items,
    resolve_dataset,
)
from avbench.errors import ConfigError, DataError, PluginError
from avbench.registry import DatasetInfo

LOG_ENV = "AVBENCH_TEST_GENERATOR_LOG"

ROWS = [
    ("id00001", "-", "-", "real", "A", "RealVideo-RealAudio", "African", "men", "00001.mp4"),
    ("id00001", "fake.mp4", "-", "rtvc", "B", "RealVideo-FakeAudio", "African", "men",
     "00001_fake.mp4"),
]


def write_tiny_fakeavceleb(out: Path, seed: int = 0) -> None:
    """Two tiny real videos and their meta_data.csv in FakeAVCeleb's official form."""
    lines = ["source,target1,target2,method,category,type,race,gender,path,"]
    rng = np.random.default_rng(seed)
    for row in ROWS:
        directory = f"FakeAVCeleb/{row[5]}/{row[6]}/{row[7]}/{row[0]}"
        lines.append(",".join((*row, directory)))
        from avbench.datasets.synth.writer import write_av

        write_av(out / directory.split("/", 1)[1] / row[8],
                 rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8),
                 np.zeros(4000, np.float32), fps=25, sample_rate=16000)
    (out / "meta_data.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())


def tiny_generator(out, *, scale=1, seed=0, workers=0):
    """A generated dataset for these tests: logs each call, and takes a moment."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {scale} {seed}\n")
    out = Path(out)
    if any(out.iterdir()):
        raise FileExistsError(out)
    time.sleep(float(os.environ.get("AVBENCH_TEST_GENERATOR_SLEEP", "0")))
    write_tiny_fakeavceleb(out, seed)
    return out


tiny_generator.version = "t1"


def failing_generator(out, *, scale=1, seed=0, workers=0):
    (Path(out) / "half.mp4").write_bytes(b"x")
    raise RuntimeError("generator broke")


DATASETS = {
    "fakeavceleb": DatasetInfo("fakeavceleb", "avbench.datasets.fakeavceleb:FakeAVCelebAdapter"),
    "kodf": DatasetInfo("kodf", "avbench.datasets.kodf:KoDFAdapter"),
    "tiny": DatasetInfo("tiny", generator=tiny_generator, reads_as="fakeavceleb"),
    "broken": DatasetInfo("broken", generator=failing_generator, reads_as="fakeavceleb"),
}


@pytest.fixture
def gen_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "generator.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# -- sources -----------------------------------------------------------------------------


def test_parse_data_items():
    assert parse_data_items(None) == {}
    assert parse_data_items(["fakeavceleb=/data/FakeAVCeleb_v1.2", "kodf = rel/kodf",
                             "fakeavceleb=synthetic?scale=2&seed=1"]) == {
        "fakeavceleb": "synthetic?scale=2&seed=1", "kodf": "rel/kodf"}


@pytest.mark.parametrize("item", ["fakeavceleb", "=path", "fakeavceleb=", "  =  "])
def test_parse_data_items_rejects(item):
    with pytest.raises(ConfigError, match=f"bad --data {item!r}".replace("?", r"\?")):
        parse_data_items([item])


def test_precedence_cli_env_toml(tmp_path, monkeypatch):
    (tmp_path / "avbench.toml").write_text(
        '[data]\nfakeavceleb = "from-toml"\nkodf = "kodf-from-toml"\n'
        '"synthetic-kodf" = "sk-from-toml"\n')
    env = {"AVBENCH_DATA_FAKEAVCELEB": "from-env", "AVBENCH_DATA_SYNTHETIC_KODF": "sk-env",
           "AVBENCH_DATA_OTHER_SET": "other", "AVBENCH_DATA_KODF": "", "UNRELATED": "x"}
    monkeypatch.chdir(tmp_path)  # the default settings file is ./avbench.toml
    got = find_dataset_sources({"fakeavceleb": "from-cli"}, env=env)
    assert got == {"fakeavceleb": "from-cli", "kodf": "kodf-from-toml",
                   "synthetic-kodf": "sk-env", "other-set": "other"}
    got = find_dataset_sources({}, env=env)
    assert got["fakeavceleb"] == "from-env"
    assert find_dataset_sources(None, env={})["fakeavceleb"] == "from-toml"
    # no settings file at all
    assert find_dataset_sources({"kodf": "k"}, settings=None, env={}) == {"kodf": "k"}
    assert find_dataset_sources({}, settings=tmp_path / "absent.toml", env={}) == {}


def test_env_names_of_registered_datasets():
    assert env_var("synthetic-kodf") == "AVBENCH_DATA_SYNTHETIC_KODF"
    env = {"AVBENCH_DATA_MY_SET": "p"}
    assert find_dataset_sources({}, settings=None, env=env, names=["my_set"]) == {"my_set": "p"}
    assert find_dataset_sources({}, settings=None, env=env) == {"my-set": "p"}


@pytest.mark.parametrize(("text", "match"), [
    ("[data\nfakeavceleb = 1", "not valid TOML"),
    ("data = 3\n", r"\[data\] must be a table"),
    ("[data]\nfakeavceleb = 3\n", "must be a non-empty string"),
    ("[data]\nfakeavceleb = ''\n", "must be a non-empty string"),
])
def test_bad_settings_file(tmp_path, text, match):
    settings = tmp_path / "avbench.toml"
    settings.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        find_dataset_sources({}, settings=settings, env={})
    assert "avbench.toml" in str(e.value)


def test_missing_dataset_message():
    msg = missing_dataset_message("fakeavceleb", DATASETS)
    assert "--data fakeavceleb=PATH" in msg
    assert "AVBENCH_DATA_FAKEAVCELEB=PATH" in msg
    assert "avbench.toml" in msg and "[data]" in msg
    assert "--data fakeavceleb=tiny" in msg and "\n" not in msg
    assert "generated" not in missing_dataset_message("kodf", DATASETS)


# -- folders -----------------------------------------------------------------------------


def test_resolve_a_folder(tmp_path, monkeypatch):
    root = tmp_path / "data" / "FakeAVCeleb_v1.2"
    root.mkdir(parents=True)
    write_tiny_fakeavceleb(root)
    idx = resolve_dataset("fakeavceleb", str(root), DATASETS)
    assert idx.name == "fakeavceleb" and len(idx.records) == 2
    monkeypatch.chdir(tmp_path / "data")  # relative to the current folder
    assert resolve_dataset("fakeavceleb", "FakeAVCeleb_v1.2", DATASETS).records == idx.records
    monkeypatch.setenv("HOME", str(tmp_path))  # ~ is expanded
    assert resolve_dataset("fakeavceleb", "~/data/FakeAVCeleb_v1.2", DATASETS).fingerprint == \
        idx.fingerprint


def test_missing_root_names_dataset_and_path(tmp_path):
    with pytest.raises(DataError, match=r"dataset 'kodf': root .*nowhere.* does not exist"):
        resolve_dataset("kodf", str(tmp_path / "nowhere"), DATASETS)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        resolve_dataset("kodf", str(f), DATASETS)


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(PluginError, match="unknown dataset 'nope'"):
        resolve_dataset("nope", str(tmp_path), DATASETS)


# -- generated datasets ------------------------------------------------------------------


def test_generated_once_then_reused(tmp_path, gen_log):
    cache = tmp_path / "cache"
    a = resolve_dataset("fakeavceleb", "tiny", DATASETS, cache=cache)
    b = resolve_dataset("fakeavceleb", "tiny", DATASETS, cache=cache)
    assert len(calls(gen_log)) == 1
    assert a.root == b.root == cache / "datasets" / "tiny-scale1-seed0-vt1"
    assert a.name == "fakeavceleb" and len(a.records) == 2 and a.fingerprint == b.fingerprint
    marker = json.loads((a.root / MARKER).read_text())
    assert marker["name"] == "tiny" and marker["reads_as"] == "fakeavceleb"
    assert not [p for p in (cache / "datasets").iterdir() if p.name.startswith(".tmp-")]
    # under its own name it reads the same
    assert resolve_dataset("tiny", "tiny", DATASETS, cache=cache).records == a.records
    # another seed is another dataset
    c = resolve_dataset("fakeavceleb", "tiny?seed=2&scale=1", DATASETS, cache=cache)
    assert c.root.name == "tiny-scale1-seed2-vt1" and len(calls(gen_log)) == 2
    assert c.fingerprint != a.fingerprint


@pytest.mark.parametrize(("value", "match"), [
    ("tiny?size=2", "unknown parameter 'size'"),
    ("tiny?scale=two", "scale must be an integer"),
    ("tiny?scale=0", "scale >= 1"),
    ("tiny?scale", "write tiny"),
])
def test_bad_generated_parameters(tmp_path, value, match):
    with pytest.raises(ConfigError, match=match):
        resolve_dataset("fakeavceleb", value, DATASETS, cache=tmp_path)


def test_generated_for_the_wrong_adapter(tmp_path):
    with pytest.raises(ConfigError, match="read as 'fakeavceleb'"):
        resolve_dataset("kodf", "tiny", DATASETS, cache=tmp_path)


def test_cache_location(monkeypatch, tmp_path):
    assert cache_root({"AVBENCH_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    default = cache_root({})
    assert default.name.lower() == "avbench" or "avbench" in str(default).lower()
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "envcache"))
    root = ensure_generated(DATASETS["tiny"])
    assert root.parent == tmp_path / "envcache" / "datasets"


def test_leftovers_of_a_crash_are_cleaned(tmp_path, gen_log):
    base = tmp_path / "datasets"
    stale = base / ".tmp-tiny-scale1-seed0-vt1-abc"
    stale.mkdir(parents=True)
    (base / "tiny-scale1-seed0-vt1").mkdir()  # no marker: never completed
    root = ensure_generated(DATASETS["tiny"], cache=tmp_path)
    assert not stale.exists() and (root / MARKER).is_file() and len(calls(gen_log)) == 1


def test_failing_generator_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="generator broke"):
        resolve_dataset("fakeavceleb", "broken", DATASETS, cache=tmp_path)
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == [
        "broken-scale1-seed0-v0.lock"]


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import test_resolve as t
from avbench.datasets.resolve import resolve_dataset
idx = resolve_dataset("fakeavceleb", "tiny", t.DATASETS, cache=Path(sys.argv[1]))
print(json.dumps({"fingerprint": idx.fingerprint, "n": len(idx.records),
                  "root": idx.root.name}))
"""


def test_two_processes_at_once(tmp_path, gen_log):
    cache = tmp_path / "cache"
    env = dict(os.environ, AVBENCH_TEST_GENERATOR_SLEEP="1.0")
    args = [sys.executable, "-c", CHILD, str(cache), str(Path(__file__).parent)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
    assert outs[0]["n"] == 2 and outs[0]["root"] == "tiny-scale1-seed0-vt1"
    assert len(calls(gen_log)) == 1  # generated once, the other process waited and reused it
    entries = sorted(p.name for p in (cache / "datasets").iterdir())
    assert entries == ["tiny-scale1-seed0-vt1", "tiny-scale1-seed0-vt1.lock"]
    idx = resolve_dataset("fakeavceleb", "tiny", DATASETS, cache=cache)
    assert idx.fingerprint == outs[0]["fingerprint"] and idx.problems == []


def test_generation_is_announced_and_shows_progress(tmp_path, capsys, monkeypatch):
    """A first run waits for the generator: stderr says so (on a pipe: a line before and
    after); on a terminal a generator that reports progress gets a bar."""
    ensure_generated(DATASETS["tiny"], cache=tmp_path / "a")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "generating dataset tiny (scale 1, seed 0) into the cache, once ..."
    assert err[1].startswith("generated dataset tiny in ") and len(err) == 2
    ensure_generated(DATASETS["tiny"], cache=tmp_path / "a")  # reused: nothing said
    assert capsys.readouterr().err == ""

    seen = []

    def reporting(out, *, scale=1, seed=0, workers=0, progress=None):
        for i in range(3):
            progress(i + 1, 3)
            seen.append(i)
        return write_tiny_fakeavceleb(Path(out), seed)

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    ensure_generated(DatasetInfo("rep", generator=reporting, reads_as="fakeavceleb"),
                     cache=tmp_path / "b")
    assert seen == [0, 1, 2] and "3/3" in capsys.readouterr().err


def test_the_synthetic_generator_reports_each_identity(tmp_path):
    from avbench.datasets.synth.common import run_tasks

    told = []
    assert run_tasks(abs, [-1, -2, -3], 1, lambda d, t: told.append((d, t))) == [1, 2, 3]
    assert told == [(1, 3), (2, 3), (3, 3)]
