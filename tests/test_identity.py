"""Run identity: the config hash, run.json as one typed record, --resume, the run lock, and
tables that never mix identities in one cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avbench import hookimpl
from avbench.config import config_hash, config_to_dict
from avbench.detector import Detector, DetectorConfig, FitInfo
from avbench.engine.run import find_resumable, portable
from avbench.errors import CheckpointError, ResultsError
from avbench.results import (
    SCHEMA_VERSION,
    RunLock,
    RunLockedError,
    RunRecord,
    read_run,
    run_folder,
    write_scores,
)
from avbench.testing import run_cli, temporary_plugin

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# The config hash


@dataclass
class Cfg(DetectorConfig):
    width: int = 8
    lr: float = 1e-3
    tags: frozenset = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})
    sizes: tuple = (1, 2)
    extra: dict = field(default_factory=lambda: {"b": 1, "a": [1, 2]})


def test_config_hash_is_of_the_resolved_config_as_the_engine_hands_it():
    # the engine hashes the portable dict, not the dataclass: that is what must not be {}
    as_run = [config_hash(portable(config_to_dict(c))) for c in (Cfg(), Cfg(width=16))]
    assert as_run[0] != as_run[1]
    assert config_hash({}) not in as_run
    assert as_run[0] == config_hash(Cfg()) == config_hash(portable(config_to_dict(Cfg())))
    assert config_hash(Cfg(lr=1e-3)) != config_hash(Cfg(lr=1e-4))
    assert config_hash(Cfg(sizes=(1, 2))) == config_hash(Cfg(sizes=[1, 2]))


def test_config_hash_is_the_same_in_every_process():
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_identity import Cfg
        from avbench.config import config_hash
        print(config_hash(Cfg()), config_hash(Cfg(width=16)))
    """)
    outs = set()
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)],
                           capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        outs.add(r.stdout.strip())
    assert len(outs) == 1, outs
    a, b = outs.pop().split()
    assert a == config_hash(Cfg()) and a != b


# --------------------------------------------------------------------------------------------
# The record


def make_record(**kw) -> RunRecord:
    base = dict(
        run_id="r1", status="complete", created="2025-01-01T00:00:00Z",
        finished="2025-01-01T00:10:00Z",
        detector_info={"name": "alpha", "plugin": "p", "config": {"width": 8},
                       "config_hash": config_hash({"width": 8}), "modality": "AV"},
        protocol_info={"name": "intra", "version": "1", "fold": None, "file_hash": "f" * 16},
        splits={"test": {"n": 40, "hash": "abc"}},
        datasets={"fakeavceleb": {"fingerprint": "fp1", "n_videos": 319}},
        seed=0, versions={"avbench": "0.1.0", "plugin": {"name": "p", "version": "1.0"}},
        n_test_videos=40,
    )
    base.update(kw)
    return RunRecord(**base)


def test_record_round_trips_through_one_code_path(tmp_path):
    rec = make_record(extra={"note_from_a_newer_writer": [1, 2]})
    rec.write(tmp_path)
    d = json.loads((tmp_path / "run.json").read_text())
    # the key names other code reads are those of run.json before the record was typed
    assert d["schema"] == SCHEMA_VERSION >= 2
    assert d["protocol"]["name"] == "intra" and d["protocol"]["file_hash"] == "f" * 16
    assert d["detector"]["config_hash"] == rec.config_hash and d["seed"] == 0
    assert d["datasets"]["fakeavceleb"]["fingerprint"] == "fp1"
    assert d["splits"]["test"]["hash"] == "abc" and d["n_test_videos"] == 40
    assert d["identity"] == {
        "detector": "alpha", "config_hash": rec.config_hash, "protocol": "intra",
        "protocol_version": "1", "protocol_file_hash": "f" * 16, "fold": "all", "seed": 0,
        "datasets": {"fakeavceleb": "fp1"}, "avbench": "0.1.0", "plugin": "p",
        "plugin_version": "1.0", "trained_on": ""}
    back = read_run(tmp_path)
    assert back == rec and back.path == tmp_path
    assert back.to_dict() == d and back.to_json() == (tmp_path / "run.json").read_text()
    assert back.identity == rec.identity


def test_an_evaluation_is_its_own_experiment_up_to_the_source_runs_seed(tmp_path):
    """Scores of a model trained under intra, scored on cross-dataset by avbench eval, never
    share a cell's identity with a run trained under cross-dataset; two evaluations share
    one up to the seed when the runs they scored did."""

    def source(seed, protocol="intra"):
        return {"identity": {"detector": "alpha", "protocol": protocol, "fold": "all",
                             "seed": seed, "config_hash": "c" * 16}}

    def record(src):
        rec = RunRecord(detector_info={"name": "alpha", "config_hash": "c" * 16},
                        protocol_info={"name": "cross-dataset", "version": "1"}, seed=0)
        if src is not None:
            rec.extra.update(evaluation_only=True, source_run=src)
        return rec

    trained = record(None).identity
    ev0, ev1 = record(source(0)).identity, record(source(1)).identity
    other = record(source(0, protocol="cross-manip")).identity
    assert trained.trained_on == "" and ev0.trained_on.startswith("intra/all ")
    assert ev0 != trained and ev0.without_seed() != trained.without_seed()
    assert ev0.without_seed().trained_on == ev1.without_seed().trained_on
    assert other.trained_on != ev0.trained_on
    assert "trained under intra/all" in ev0.label()
    # the identity block of an older record, without the field, still reads
    d = ev0.to_dict()
    d.pop("trained_on")
    assert type(ev0).from_dict(d).trained_on == ""


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("schema"), "no schema version"),
    (lambda d: d.update(schema=1), "schema 1 is older"),
    (lambda d: d.update(schema=SCHEMA_VERSION + 1), "newer than this avbench"),
    (lambda d: d.update(seed="3"), "'seed' is str, expected int"),
    (lambda d: d.update(seed=True), "'seed' is bool"),
    (lambda d: d.update(status="done"), "status 'done' is not one of"),
    (lambda d: d["detector"].pop("name"), "no detector name"),
    (lambda d: d.pop("identity"), "no identity block"),
    (lambda d: d["identity"].update(config_hash="0" * 16), "disagrees with the record in "
                                                             "config_hash"),
    (lambda d: d["datasets"]["fakeavceleb"].update(fingerprint="other"),
     "disagrees with the record in datasets.fakeavceleb"),
])
def test_old_unknown_or_malformed_records_are_errors_naming_the_file(tmp_path, change, message):
    d = make_record().to_dict()
    change(d)
    (tmp_path / "run.json").write_text(json.dumps(d))
    with pytest.raises(ResultsError, match=message) as e:
        read_run(tmp_path)
    assert str(tmp_path / "run.json") in str(e.value) and "\n" not in str(e.value)


def test_not_json_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON") as e:
        read_run(tmp_path)
    assert str(tmp_path / "run.json") in str(e.value)


# --------------------------------------------------------------------------------------------
# find_resumable, on written records


def _write(out, rec: RunRecord) -> Path:
    d = run_folder(out, rec.protocol, rec.protocol_info.get("fold"), rec.detector, rec.run_id)
    rec.write(d)
    return d


def test_resume_takes_only_a_run_of_the_same_identity(tmp_path):
    want = make_record(status="incomplete").identity
    done = _write(tmp_path, make_record(run_id="20250103-a"))  # complete: never resumed
    other = _write(tmp_path, make_record(
        run_id="20250102-b", status="failed",
        detector_info={**make_record().detector_info, "config_hash": "cd34" * 4}))
    choice = find_resumable(tmp_path, "intra", None, "alpha", want)
    assert choice.run_dir is None
    assert choice.message == (f"--resume: run {other.name} differs in config_hash "
                              f"({'cd34cd34'} -> {want.config_hash[:8]}), starting a new run")
    fp = _write(tmp_path, make_record(
        run_id="20250104-c", status="incomplete",
        datasets={"fakeavceleb": {"fingerprint": "fp2"}}))
    assert "differs in datasets.fakeavceleb (fp2 -> fp1)" in find_resumable(
        tmp_path, "intra", None, "alpha", want).message
    same = _write(tmp_path, make_record(run_id="20250101-d", status="failed"))
    assert find_resumable(tmp_path, "intra", None, "alpha", want).run_dir == same
    assert done != same and fp != same


def test_resume_skips_a_run_failed_on_its_checkpoint(tmp_path):
    want = make_record(status="incomplete").identity
    _write(tmp_path, make_record(run_id="20250101-a", status="failed", error_kind="checkpoint",
                                 error="CheckpointError: checkpoint last.pt: truncated"))
    choice = find_resumable(tmp_path, "intra", None, "alpha", want)
    assert choice.run_dir is None
    assert "run 20250101-a failed on a checkpoint that cannot be read" in choice.message
    assert "last.pt: truncated" in choice.message
    older = _write(tmp_path, make_record(run_id="20241231-z", status="failed",
                                         error_kind="RuntimeError"))
    assert find_resumable(tmp_path, "intra", None, "alpha", want).run_dir == older


# --------------------------------------------------------------------------------------------
# The lock

_HOLD = textwrap.dedent("""
    import sys
    from avbench.results import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    sys.stdin.read()
    lock.release()
""")


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of a run folder, until the test ends."""
    procs = []

    def start(run_dir: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        p.stdin.close()
        p.wait(timeout=30)


def test_a_live_holder_keeps_others_out(tmp_path, holder):
    run_dir = tmp_path / "run"
    p = holder(run_dir)
    with pytest.raises(RunLockedError) as e:
        RunLock(run_dir).acquire()
    assert f"in use by another avbench process (pid {p.pid})" in str(e.value)
    assert "\n" not in str(e.value)
    p.stdin.close()
    p.wait(timeout=30)
    with RunLock(run_dir) as lock:  # released by its holder: free again
        assert (run_dir / "run.lock").read_text().strip() == str(os.getpid())
        assert lock.file.exists()
    assert not (run_dir / "run.lock").exists()


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.lock").write_text(dead.stdout)  # a holder that died without releasing
    with RunLock(run_dir):
        assert (run_dir / "run.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(run_dir).acquire()  # the same process twice is kept out too


# --------------------------------------------------------------------------------------------
# avbench run: identity, --resume and the lock end to end

FAIL: dict[str, BaseException | None] = {"error": None}


@dataclass
class IdentCfg(DetectorConfig):
    width: int = 8


class Ident(Detector):
    Config = IdentCfg
    trainable = False

    def fit(self, train, val, ctx):
        if FAIL["error"] is not None:
            raise FAIL["error"]
        return FitInfo(checkpoint="none")

    def predict(self, batch, ctx):
        return {"score": np.full(len(batch), 0.5)}


@pytest.fixture
def ident_cli(synthetic_root, tmp_path):
    plugin = types.SimpleNamespace()

    @hookimpl
    def avbench_register_detectors(register):
        register("ident", Ident)

    plugin.avbench_register_detectors = avbench_register_detectors
    out = tmp_path / "res"

    def run(*extra: str, error: BaseException | None = None):
        FAIL["error"] = error
        try:
            with temporary_plugin(plugin, "ident-plugin"):
                return run_cli(["run", "-d", "ident", "-p", "cross-manip", "--fold", "RVFA",
                                "--data", f"fakeavceleb={synthetic_root}", "--out", str(out),
                                "--quiet", *extra])
        finally:
            FAIL["error"] = None

    run.out = out
    run.base = run_folder(out, "cross-manip", "RVFA", "ident", "x").parent
    return run


def _runs(base: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "run.json").read_text())
            for d in sorted(base.iterdir()) if (d / "run.json").exists()}


@pytest.mark.slow
def test_run_identity_and_resume_end_to_end(ident_cli):
    r = ident_cli("--set", "width=8", error=RuntimeError("boom"))
    assert r.exit_code != 0
    (failed,) = _runs(ident_cli.base)
    first = _runs(ident_cli.base)[failed]
    assert first["status"] == "failed" and first["error_kind"] == "RuntimeError"
    assert first["identity"]["config_hash"] == first["detector"]["config_hash"]
    assert first["detector"]["config_hash"] == config_hash({"width": 8})
    assert first["identity"]["plugin"] == "ident-plugin"
    assert not (ident_cli.base / failed / "run.lock").exists()  # released on failure

    # another config: not this run; one line says what differed
    r = ident_cli("--set", "width=16", "--resume")
    assert r.exit_code == 0, r.output
    want = f"--resume: run {failed} differs in config_hash ({config_hash({'width': 8})[:8]} -> " \
           f"{config_hash({'width': 16})[:8]}), starting a new run"
    assert want in r.stdout
    runs = _runs(ident_cli.base)
    assert len(runs) == 2 and runs[failed]["status"] == "failed"
    (new,) = set(runs) - {failed}
    assert runs[new]["detector"]["config_hash"] == config_hash({"width": 16})
    assert runs[new]["resumed"] is False

    # the same identity: continued in its own folder
    r = ident_cli("--set", "width=8", "--resume")
    assert r.exit_code == 0, r.output
    assert "--resume:" not in r.stdout
    runs = _runs(ident_cli.base)
    assert len(runs) == 2
    assert runs[failed]["status"] == "complete" and runs[failed]["resumed"] is True
    assert runs[failed]["created"] == first["created"]
    assert runs[failed]["identity"] == first["identity"]


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_not_resumed_again(ident_cli):
    err = CheckpointError("checkpoints/last.pt", "truncated (1024 of 4096 bytes)")
    r = ident_cli(error=err)
    assert r.exit_code != 0
    assert "last.pt" in r.stderr
    (failed,) = _runs(ident_cli.base)
    rec = read_run(ident_cli.base / failed)
    assert rec.status == "failed" and rec.error_kind == "checkpoint" and not rec.resumable
    assert "last.pt" in rec.error
    r = ident_cli("--resume")
    assert r.exit_code == 0, r.output
    assert f"--resume: run {failed} failed on a checkpoint that cannot be read" in r.stdout
    runs = _runs(ident_cli.base)
    assert len(runs) == 2 and runs[failed]["status"] == "failed"


@pytest.mark.slow
def test_a_second_process_is_kept_out_of_a_run_folder(ident_cli, holder):
    r = ident_cli(error=RuntimeError("boom"))
    (failed,) = _runs(ident_cli.base)
    p = holder(ident_cli.base / failed)
    r = ident_cli("--resume")
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert f"in use by another avbench process (pid {p.pid})" in lines[0]
    assert failed in lines[0]
    # the holder's run was left as it was
    assert _runs(ident_cli.base)[failed]["status"] == "failed"
    assert len(_runs(ident_cli.base)) == 1


# --------------------------------------------------------------------------------------------
# Tables: one identity per cell


def _scores(seed: int, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    return pd.DataFrame({
        "id": [f"v/{i:03d}.mp4" for i in range(n)], "dataset": "synthetic", "label": label,
        "label_v": label, "label_a": label, "type": "", "method": "", "category": "",
        "group": "", "score": np.clip(0.3 + 0.4 * label + rng.normal(0, 0.25, n), 0, 1),
        "score_v": np.nan, "score_a": np.nan, "n_segments": 1, "padded_frames": 0,
    })


def _table_run(root, run_id, *, width, seed, finished, scores_seed, fingerprint="fp1"):
    det = {"name": "alpha", "plugin": "p", "modality": "AV", "tables": {},
           "config": {"width": width}, "config_hash": config_hash({"width": width})}
    rec = make_record(run_id=run_id, detector_info=det, seed=seed, finished=finished,
                      datasets={"fakeavceleb": {"fingerprint": fingerprint, "n_videos": 319}})
    d = _write(root, rec)
    rec = read_run(d)
    rec.scores_sha256 = write_scores(d / "scores.csv", _scores(scores_seed))
    rec.write(d)
    return read_run(d)


def _auc(seed):
    from sklearn.metrics import roc_auc_score

    df = _scores(seed)
    return 100 * roc_auc_score(df["label"], df["score"])


def test_mean_never_mixes_identities_and_footnotes_name_the_identity(tmp_path):
    """Two configs of one detector are two rows (alpha is not installed, so each is labelled
    with its config hash); within a row a cell shows one identity, the newest."""
    from avbench.tables import build_table
    from avbench.tables.build import Runs

    runs = [
        _table_run(tmp_path, "a0", width=8, seed=0, finished="2025-01-01T00:00:00Z",
                   scores_seed=1),
        _table_run(tmp_path, "a1", width=8, seed=1, finished="2025-01-02T00:00:00Z",
                   scores_seed=2),
        _table_run(tmp_path, "b0", width=16, seed=0, finished="2025-02-01T00:00:00Z",
                   scores_seed=3),
        _table_run(tmp_path, "b1", width=16, seed=1, finished="2025-02-02T00:00:00Z",
                   scores_seed=4),
        _table_run(tmp_path, "b1-again", width=16, seed=1, finished="2025-02-03T00:00:00Z",
                   scores_seed=5),
        # same config, other dataset fingerprint, older: another identity of the width-16 row
        _table_run(tmp_path, "c0", width=16, seed=2, finished="2025-01-15T00:00:00Z",
                   scores_seed=6, fingerprint="fp0"),
    ]
    h8, h16 = config_hash({"width": 8})[:8], config_hash({"width": 16})[:8]
    t = build_table(1, Runs(runs, root=tmp_path), published=False, aggregate="mean")
    rows = {r.text["Method"]: r for r in t.rows}
    assert [r.text["Method"] for r in t.rows] == sorted([f"alpha [{h8}]", f"alpha [{h16}]"])
    cell = rows[f"alpha [{h16}]"].cells["auc"]
    # the newest identity (width 16, fp1), the newest run of each of its seeds: b0, b1-again
    assert cell.n_runs == 2
    assert cell.value == pytest.approx(np.mean([_auc(3), _auc(5)]), abs=1e-7)
    # the width-8 runs are a row of their own, never averaged with the width-16 ones
    assert rows[f"alpha [{h8}]"].cells["auc"].value == pytest.approx(
        np.mean([_auc(1), _auc(2)]), abs=1e-7)
    notes = "\n".join(t.footnotes)
    assert f"alpha [{h16}] on intra: mean ± std over 2 runs (seeds 0, 1)." in notes
    assert (f"alpha [{h16}] on intra: 1 run(s) of another identity (config, datasets or "
            f"versions) left out; the newest identity is shown (config {h16}, protocol intra "
            f"v1)") in notes
    assert "1 older run(s) repeating a seed left out" in notes
    assert f"alpha [{h16}]: config {h16}; protocol intra v1." in notes
    assert f"alpha [{h8}]: config {h8}; protocol intra v1." in notes

    # one config alone: the row keeps the detector's name
    t = build_table(1, Runs(runs[:2], root=tmp_path), published=False, aggregate="mean")
    assert [r.text["Method"] for r in t.rows] == ["alpha"]
    assert t.rows[0].cells["auc"].value == pytest.approx(np.mean([_auc(1), _auc(2)]), abs=1e-7)
    assert f"alpha: config {h8}; protocol intra v1." in "\n".join(t.footnotes)

    # latest: the newest run of each row; its identity named
    t = build_table(1, Runs(runs, root=tmp_path), published=False)
    rows = {r.text["Method"]: r for r in t.rows}
    assert rows[f"alpha [{h16}]"].cells["auc"].value == pytest.approx(_auc(5), abs=1e-7)
    assert rows[f"alpha [{h8}]"].cells["auc"].value == pytest.approx(_auc(2), abs=1e-7)
    assert f"alpha [{h16}]: config {h16}; protocol intra v1." in "\n".join(t.footnotes)
