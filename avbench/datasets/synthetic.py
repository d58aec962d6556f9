"""The embedded synthetic benchmark (see docs and ``datasets.md``).

``generate_fakeavceleb`` writes a small audio-visual dataset in FakeAVCeleb v1.2's exact
layout and metadata form; ``generate_kodf`` writes a KoDF-shaped one with full frames that need
face cropping. Both are deterministic functions of ``(scale, seed)`` and of
``GENERATOR_VERSION`` (bumped whenever the output changes, so caches keyed by it stay valid).
They are read by the ordinary ``fakeavceleb`` and ``kodf`` adapters, exactly like the real data.

The drawn faces, speech-like voices and the traces each manipulation leaves are described in
:mod:`avbench.datasets.synth.avceleb` and :mod:`avbench.datasets.synth.kodf_set`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

GENERATOR_VERSION = "2"

#: ``progress(done, total)``, called as the generator's units of work finish
Progress = Callable[[int, int], None]


def content_digest(root: Path | str) -> str:
    """SHA-256 over every file below ``root`` (relative path and bytes, in sorted order) but
    the generation marker, which records the wall time the generation took. Two generated sets
    are byte-identical exactly when their digests are equal (docs/determinism.md gives the
    digest of the default set)."""
    import hashlib

    from avbench.datasets.resolve import MARKER

    root = Path(root)
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER):
        rel = f.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


def _prepare(out: Path | str, scale: int, seed: int) -> Path:
    from avbench.errors import ConfigError, DataError

    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ConfigError(f"synthetic benchmark: scale must be a positive integer, not {scale!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"synthetic benchmark: seed must be an integer >= 0, not {seed!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"cannot generate into {out}: it exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def generate_fakeavceleb(out: Path | str, *, scale: int = 1, seed: int = 0,
                         workers: int = 0, progress: Progress | None = None) -> Path:
    """Write the FakeAVCeleb-shaped synthetic set into ``out`` (empty or absent); return it.

    Scale 1: 40 identities (8 per group, half men, half women), each with one real clip and
    seven fakes (one file is listed twice, like FakeAVCeleb's 22), 112x112 face crops of
    2-3 s. ``workers``: processes to render with (0 = one per CPU, 1 = this process only).
    ``progress(done, total)`` is told each identity rendered.
    """
    from avbench.datasets.synth import avceleb
    from avbench.datasets.synth.common import rng_for, run_tasks

    out = _prepare(out, scale, seed)
    people, clips = avceleb.plan(scale, seed)
    looks = {p.id: p.look for p in people}
    voices = {p.id: p.voice for p in people}
    tasks = []
    for p in people:
        needed = sorted({c.face for c in clips[p.id] if c.face}
                        | {c.voice for c in clips[p.id] if c.voice})
        tasks.append(avceleb.Task(str(out), seed, p, tuple(clips[p.id]),
                                  {k: looks[k] for k in needed}, {k: voices[k] for k in needed}))
    run_tasks(avceleb.render_person, tasks, workers, progress)
    (out / "meta_data.csv").write_bytes(avceleb.metadata_csv(people, clips))
    # the real folders of FakeAVCeleb also hold a few .txt files (VoxCeleb2 face tracks)
    seen = set()
    for p in people:
        if p.group in seen:
            continue
        seen.add(p.group)
        txt = out / avceleb.REAL / p.group / p.gender / p.id / f"{p.clip}.txt"
        txt.write_text(avceleb.voxceleb_txt(p, rng_for(seed, "txt", p.id)), encoding="utf-8")
    return out


def generate_kodf(out: Path | str, *, scale: int = 1, seed: int = 0, workers: int = 0,
                  progress: Progress | None = None) -> Path:
    """Write the KoDF-shaped synthetic set into ``out`` (empty or absent); return it.

    Scale 1: 6 speakers, each with two original full-frame (320x180, 30 fps) clips, one
    audio-driven fake per original (the mouth re-rendered to another real utterance of the
    same speaker, whose audio it carries) and face swaps in ``fsgan`` and ``dfl``; plus the
    Korean metadata CSVs of the validation split. ``progress(done, total)`` is told each
    speaker rendered.
    """
    from avbench.datasets.synth import kodf_set
    from avbench.datasets.synth.common import run_tasks

    out = _prepare(out, scale, seed)
    people, clips = kodf_set.plan(scale, seed)
    looks = {p.uuid: p.look for p in people}
    tasks = [kodf_set.Task(str(out), seed, p, tuple(clips[p.uuid]),
                           {c.donor: looks[c.donor] for c in clips[p.uuid] if c.donor})
             for p in people]
    run_tasks(kodf_set.render_person, tasks, workers, progress)
    for name, data in kodf_set.metadata_csvs(people, clips).items():
        (out / name).write_bytes(data)
    return out
